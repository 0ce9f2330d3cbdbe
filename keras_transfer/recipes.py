"""The two-stage fine-tuning recipe: the head first, then the backbone.

A random head on a pretrained backbone sends large, noisy gradients into
the backbone; training the head alone first (on the frozen backbone's
features, computed once) and only then unfreezing at a small rate is the
usual remedy (ULMFiT, Keras' transfer-learning guide, ktrain).
"""

import math

import keras
import numpy as np

from keras_transfer import distributed, freezing
from keras_transfer.batching import TextBatches
from keras_transfer.optimizers import _check_rate, inner_optimizer
from keras_transfer.schedules import _is_number
from keras_transfer.callbacks.learning_rate import LearningRateLogger


def _check_epochs(name, value, minimum):
    if isinstance(value, np.integer):
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"Expected `{name}` to be an integer >= {minimum}. Received: {name}={value!r}")


def _merge(histories, model):
    """One History over the stages, with a `stage` log (1, 2) per epoch."""
    keys = []
    for _, history in histories:
        keys += [key for key in history.history if key not in keys]
    merged = keras.callbacks.History()
    merged.history = {key: [] for key in keys}
    merged.history["stage"] = []
    merged.epoch = []
    for stage, history in histories:
        length = len(history.epoch)
        for key in keys:
            merged.history[key] += list(history.history.get(key, [math.nan] * length))
        merged.history["stage"] += [stage] * length
        merged.epoch += list(range(len(merged.epoch), len(merged.epoch) + length))
    merged.set_model(model)
    merged.set_params(histories[-1][1].params if histories else {})
    return merged


def _kept_compile(model):
    """The `compile()` arguments of the user's that both stages keep.

    Each stage compiles again for its own rate and schedule; the loss,
    the metrics and the other arguments of Keras' `compile` (a loss with
    `ignore_class` or label smoothing, `weighted_metrics`, `jit_compile`)
    are the user's, and so are `weight_decay`, `warmup` and
    `gradient_accumulation_steps` of the default optimizer. With their own
    optimizer (or one restored by `kt.load_model`) the stages still use
    the default AdamW, with the weight decay and gradient accumulation of
    theirs when it is an AdamW. Nothing is kept from a model never
    compiled: `compile()`'s defaults, as before.
    """
    given = model.__dict__.get("_compile_arguments")
    if given is None:
        return {}
    kept = dict(given["kwargs"], loss=given["loss"], metrics=given["metrics"])
    if given["auto_optimizer"]:
        kept.update(
            weight_decay=given["weight_decay"],
            warmup=given["warmup"],
            gradient_accumulation_steps=given["gradient_accumulation_steps"],
        )
    else:
        optimizer = inner_optimizer(model.optimizer)
        if isinstance(optimizer, keras.optimizers.AdamW):
            kept.update(
                weight_decay=optimizer.weight_decay,
                gradient_accumulation_steps=optimizer.gradient_accumulation_steps,
            )
    return kept


def fine_tune(
    model,
    x,
    y=None,
    validation_data=None,
    head_epochs=3,
    epochs=2,
    unfreeze="all",
    learning_rate=None,
    head_learning_rate=None,
    layer_decay=None,
    early_stopping=True,
    patience=2,
    checkpoint=None,
    batch_size=None,
    seed=None,
    callbacks=None,
    verbose="auto",
    cache_memory_limit=None,
    cache_dir=None,
):
    """Trains the head on the frozen backbone, then unfreezes and goes on.

    Stage 1 freezes the backbone, compiles with `head_learning_rate` and
    trains the head for `head_epochs` (on cached features: the backbone
    runs once). Stage 2 unfreezes the backbone (or its top `unfreeze`
    blocks), compiles again with `learning_rate` (and `layer_decay`) and
    trains for `epochs`. Each stage has its own warmup and decay.

    Both compiles keep what you compiled the model with, except the rates:
    your loss (say one with `ignore_class`), metrics and the other
    arguments of Keras' `compile`, and the `weight_decay`, `warmup` and
    `gradient_accumulation_steps` of `compile()`'s default optimizer. The
    stages always train with that default AdamW, at their own rates; your
    own optimizer gives them its weight decay and gradient accumulation
    when it is an AdamW (as a model reloaded by `kt.load_model` has). A
    model compiled with the defaults trains with the defaults.

    With `validation_data`, each stage stops early when `val_loss` has
    not improved for `patience` epochs and ends with its best weights
    (`early_stopping=True`); `checkpoint="best.keras"` also saves the best
    model of stage 2 to that file. Without validation data both are off.

    Args:
        model: a `kt.Task`, such as a `kt.TextClassifier`.
        x: training data, as for `fit` (raw texts, a `TextData`, …).
        y: labels when `x` holds texts only. Defaults to `None`.
        validation_data: as for `fit`. Defaults to `None`.
        head_epochs: epochs of stage 1; `0` skips it. Defaults to `3`.
        epochs: epochs of stage 2. Defaults to `2`.
        unfreeze: `"all"` or the number of top blocks to train in stage 2.
            Defaults to `"all"`.
        learning_rate: peak rate of stage 2. Defaults to `None` (the
            fine-tuning default of `compile()`, 5e-5).
        head_learning_rate: peak rate of stage 1. Defaults to `None` (the
            frozen-backbone default of `compile()`, 3e-3).
        layer_decay: layer-wise decay of stage 2's rates (see
            `Task.compile`). Defaults to `None`.
        early_stopping: stop each stage early and keep its best weights
            when `validation_data` is given. Defaults to `True`.
        patience: epochs without improvement before stopping. Defaults to
            `2`.
        checkpoint: path of a `.keras` file for stage 2's best model.
            Defaults to `None` (no file).
        batch_size: as for `fit`. Defaults to `None` (32).
        seed: as for `fit`. Defaults to `None`.
        callbacks: more callbacks for both stages. Defaults to `None`.
        verbose: as for `fit`. Defaults to `"auto"`.
        cache_memory_limit: bytes of stage 1's cached features kept in
            memory, the rest in a file, as for `fit`. Defaults to `None`
            (2 GiB).
        cache_dir: where that file goes, as for `fit`. Defaults to `None`
            (the system's temporary directory).

    Returns:
        A `keras.callbacks.History` over both stages: epoch `i` of
        `history.history` is stage `history.history["stage"][i]` (1 or 2),
        the learning rate at each epoch's end is `learning_rate`.

    Example:
    ```python
    history = model.fine_tune(train, validation_data=test, head_epochs=3, epochs=2, unfreeze=2)
    kt.plot_history(history, path="curves.png")
    ```
    """
    from keras_transfer.tasks.base import _check_cache_storage, callback_list, check_verbose, no_labels_error

    freezing._check_layer(model, "recipes.fine_tune")
    _check_cache_storage(cache_memory_limit, cache_dir)  # before anything changes the model
    # A list, a `keras.callbacks.CallbackList` or one callback, as `fit`
    # takes them; checked before anything changes the model.
    callbacks = callback_list(callbacks)
    check_verbose(verbose)
    _check_epochs("head_epochs", head_epochs, 0)
    _check_epochs("epochs", epochs, 1)
    _check_epochs("patience", patience, 0)
    # Checked here, not by the compile() of a stage, which runs after
    # the model has been frozen (and for stage 2, trained).
    learning_rate = _check_rate("learning_rate", learning_rate)
    head_learning_rate = _check_rate("head_learning_rate", head_learning_rate)
    if layer_decay is not None and (not _is_number(layer_decay) or not 0 < layer_decay <= 1):
        raise ValueError(
            f"Expected `layer_decay` to be a number in (0, 1] or None. Received: layer_decay={layer_decay!r}"
        )
    backbone = freezing._backbone_of(model)
    if backbone is model:
        raise ValueError(
            f"fine_tune needs a model with a KerasHub backbone; {model.name} has none."
        )
    freezing._check_no_lora(backbone, "unfreeze")  # stage 2 unfreezes: refuse before stage 1
    if unfreeze != "all":
        blocks = len(freezing.blocks(backbone))
        if isinstance(unfreeze, np.integer):
            unfreeze = int(unfreeze)
        if isinstance(unfreeze, bool) or not isinstance(unfreeze, int) or not 1 <= unfreeze <= blocks:
            raise ValueError(
                f"Expected `unfreeze` to be 'all' or a number of top blocks from 1 to "
                f"{blocks}. Received: unfreeze={unfreeze!r}"
            )
    if head_epochs:
        backbone_weights = {id(weight) for weight in backbone.weights}
        if not any(id(weight) not in backbone_weights for weight in model.weights):
            raise ValueError(
                f"head_epochs={head_epochs}, but {model.name} has no weights outside its "
                "backbone, so with the backbone frozen stage 1 would train nothing. "
                "Pass head_epochs=0."
            )
    if checkpoint is not None and not str(checkpoint).endswith(".keras"):
        raise ValueError(
            f"Expected `checkpoint` to be the path of a `.keras` file. Received: checkpoint={checkpoint!r}"
        )
    if hasattr(model, "_as_batches"):
        # Tokenize and check the data once, before anything changes the
        # model (a bad label must not leave it frozen and recompiled), and
        # give both stages the same batches.
        if distributed.initialize():
            seed = distributed.broadcast_seed(seed)  # one batch order on every process
        x, y = model._as_batches(x, y, batch_size, shuffle=True, seed=seed)
        if isinstance(x, TextBatches) and x.labels is None:
            raise no_labels_error("fine_tune")
        validation_data = model._validation_batches(validation_data, batch_size)
    watch = early_stopping and validation_data is not None

    def stage_callbacks(with_checkpoint):
        extra = [LearningRateLogger()] + callbacks
        if watch:
            extra.append(
                keras.callbacks.EarlyStopping(
                    monitor="val_loss", patience=patience, restore_best_weights=True, verbose=0
                )
            )
        if with_checkpoint and checkpoint is not None:
            extra.append(keras.callbacks.ModelCheckpoint(str(checkpoint), save_best_only=validation_data is not None))
        return extra

    common = dict(validation_data=validation_data, batch_size=batch_size, seed=seed, verbose=verbose)
    kept = _kept_compile(model)  # read before a stage's compile replaces the optimizer
    histories = []
    if head_epochs:
        freezing.freeze(model)
        model.compile(learning_rate=head_learning_rate, **kept)
        history = model.fit(
            x, y, epochs=head_epochs, callbacks=stage_callbacks(False),
            cache_memory_limit=cache_memory_limit, cache_dir=cache_dir, **common,
        )
        histories.append((1, history))
    freezing.unfreeze(model, top=None if unfreeze == "all" else unfreeze)
    model.compile(learning_rate=learning_rate, layer_decay=layer_decay, **kept)
    history = model.fit(x, y, epochs=epochs, callbacks=stage_callbacks(True), **common)
    histories.append((2, history))
    merged = _merge(histories, model)
    model.history = merged
    return merged
