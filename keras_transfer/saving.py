"""Loading saved models with their frozen state intact."""

import json
import os
import pathlib
import zipfile

import keras

from keras_transfer.freezing import restore_frozen_layers, restore_frozen_state


def check_output_path(path, what="the file"):
    """`path` as a string, once its folder is known to exist and it is not a
    folder itself; else a clear error (checked before the work that writes
    it, not after)."""
    if not isinstance(path, (str, os.PathLike)):
        raise ValueError(
            f"Expected a file path (a string or a pathlib.Path) for {what}. Received: {path!r}"
        )
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise FileNotFoundError(
            f"Cannot save {what} to {path!r}: the folder {folder!r} does not exist. "
            "Create it first (`os.makedirs(folder, exist_ok=True)`) or choose another path."
        )
    if os.path.isdir(path):
        raise ValueError(f"Cannot save {what} to {path!r}: it is a folder. Give a file path.")
    return path


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
            `True`. With `False` (or a model saved uncompiled) the model
            comes back uncompiled: `predict` works as it is, and a task
            model's `fit` and `evaluate` compile it with `compile()`'s
            defaults.
    """
    from keras_transfer.tasks.base import check_flag  # the tasks import this module

    check_flag("compile", compile)
    if not isinstance(filepath, (str, os.PathLike)):
        raise ValueError(
            "Expected `filepath` to be the path of a `.keras` file (a string or a "
            f"pathlib.Path). Received: {filepath!r}"
        )
    if custom_objects is not None and not isinstance(custom_objects, dict):
        raise ValueError(
            "Expected `custom_objects` to be a dict from class name to class, e.g. "
            f"{{'MyLayer': MyLayer}}. Received: {custom_objects!r}"
        )
    path = pathlib.Path(os.fspath(filepath)).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"No saved model at {str(path)!r}. Check the path.")
    if path.suffix != ".keras":
        raise ValueError(
            f"kt.load_model reads `.keras` files (written by `model.save(\"name.keras\")`). "
            f"Received: {str(path)!r}. For a preset directory use "
            "`kt.load_backbone(path)`"
            + (
                "; a weights file (`save_weights`) goes into the same model, built "
                "again: `model.load_weights(path)`."
                if path.name.lower().endswith(".h5")
                else "."
            )
        )
    if not zipfile.is_zipfile(path):
        raise ValueError(
            f"{str(path)!r} is not a valid `.keras` file (not a zip archive): "
            "it may be truncated or corrupted. Save the model again."
        )
    try:
        with zipfile.ZipFile(path) as archive:
            config = json.loads(archive.read("config.json"))
    except (KeyError, ValueError, zipfile.BadZipFile) as error:
        # A zip archive, but not one `model.save` wrote (or a damaged one):
        # no config.json in it, or one that is not JSON.
        raise ValueError(
            f"{str(path)!r} is not a valid `.keras` file: it is a zip archive, but "
            f"its config.json is missing or unreadable ({error}). Give a file written "
            "by `model.save(\"name.keras\")`, or save the model again."
        ) from None
    if not isinstance(config, dict):
        raise ValueError(
            f"{str(path)!r} is not a valid `.keras` file: its config.json holds no model "
            "config. Give a file written by `model.save(\"name.keras\")`, or save the model again."
        )
    if hasattr(_registered_class(config), "backbone"):
        # keras_transfer tasks restore their frozen state while they are
        # built, before Keras compiles them and loads the optimizer.
        return keras.saving.load_model(
            path, custom_objects=custom_objects, compile=compile, safe_mode=True
        )
    # A plain model: load it uncompiled, fix its frozen flags, then compile
    # it and load the optimizer's state, so that the optimizer tracks the
    # same variables as when it was saved.
    model = keras.saving.load_model(
        path, custom_objects=custom_objects, compile=False, safe_mode=True
    )
    restore_frozen_state(model)
    restore_frozen_layers(model, config)  # a partly frozen backbone's blocks
    if compile and config.get("compile_config"):
        _compile_and_load_optimizer(model, path, config["compile_config"])
    return model


def _registered_class(config):
    """The class of a saved model's config, if Keras knows it."""
    try:
        return keras.saving.get_registered_object(config.get("registered_name") or "")
    except (TypeError, ValueError):
        return None


def _compile_and_load_optimizer(model, path, compile_config):
    from keras.src.saving import saving_lib  # the loader of Keras' own format

    model.compile_from_config(compile_config)
    if getattr(model, "optimizer", None) is None:
        return
    with zipfile.ZipFile(path) as archive:
        store = saving_lib.H5IOStore(saving_lib._VARS_FNAME_H5, archive, mode="r")
        try:
            saving_lib._load_state(
                model.optimizer,
                weights_store=store,
                assets_store=None,
                inner_path="optimizer",
                visited_saveables=set(),
            )
        finally:
            store.close()
