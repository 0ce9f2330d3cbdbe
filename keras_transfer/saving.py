"""Loading saved models with their frozen state intact."""

import os
import pathlib
import zipfile

import keras

from keras_transfer.freezing import restore_frozen_state


def load_model(filepath, custom_objects=None, compile=True):
    """Loads a `.keras` model saved with `model.save`, frozen state included.

    Keras' own `load_model` brings layers saved with `trainable=False` back
    with trainable weights, so a later `fit` would train a backbone that
    was frozen. This loads the model with Keras (in safe mode: no code from
    the file is run) and applies every frozen flag again. Task models also
    restore which of the backbone's blocks were frozen.

    Args:
        filepath: path of a `.keras` file.
        custom_objects: extra classes the model needs, as for Keras.
        compile: restore the optimizer, loss and metrics. Defaults to
            `True`.
    """
    path = pathlib.Path(os.fspath(filepath)).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"No saved model at {str(path)!r}. Check the path.")
    if path.suffix != ".keras":
        raise ValueError(
            f"kt.load_model reads `.keras` files (written by `model.save(\"name.keras\")`). "
            f"Received: {str(path)!r}. For a preset directory use "
            "`kt.load_backbone(path)`."
        )
    if not zipfile.is_zipfile(path):
        raise ValueError(
            f"{str(path)!r} is not a valid `.keras` file (not a zip archive): "
            "it may be truncated or corrupted. Save the model again."
        )
    model = keras.saving.load_model(
        path, custom_objects=custom_objects, compile=compile, safe_mode=True
    )
    return restore_frozen_state(model) if not hasattr(model, "backbone") else model
