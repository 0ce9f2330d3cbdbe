"""Gradual unfreezing (ULMFiT): one more block trains every K epochs or steps."""

import math
import warnings

import keras

from keras_transfer import freezing
from keras_transfer.callbacks.backup import publish_progress, resumed_progress
from keras_transfer.optimizers import add_variables, inner_optimizer
from keras_transfer.wording import counted

_UNITS = ("epoch", "step")


class GradualUnfreezing(keras.callbacks.Callback):
    """Unfreezes one more transformer block from the top every `every` units.

    Howard & Ruder's gradual unfreezing: train the head on the frozen
    backbone first, then let the top block train too, then the one below,
    and so on, so that the fresh head does not wreck the pretrained blocks
    while it is still random. Stage `s` (`s = epochs or steps done in this
    fit // every`) trains the top `initial + s` blocks, where `initial` is
    what trained when `fit` began (0 for a frozen backbone), up to
    `max_blocks`. With `embeddings=True` one last stage unfreezes the
    embeddings as well. It never freezes what trains.

    With `kt.callbacks.BackupAndRestore`, a resumed `fit` goes on with the
    stages of the run it resumes: the backup holds which blocks trained and
    where the count of epochs or steps began.

    The optimizer keeps its state: when blocks start to train, it is
    rebuilt on the new set of trainable weights with the momentums and
    velocities of the weights that already trained copied over
    (`kt.optimizers.add_variables`); the new weights start from zero state,
    as in a fresh optimizer. The iteration count and the learning-rate
    schedule go on unchanged, so compile with a rate suited to fine-tuning
    (for example `model.compile(learning_rate=1e-4, layer_decay=0.8)`);
    a `UserWarning` says so when `compile()` chose its rate for a frozen
    backbone (3e-3, for the head alone) and blocks start to train at it.

    Each epoch's log (and so `history.history`) gets `unfrozen_blocks`:
    how many blocks trained at the end of that epoch. A task model's `fit`
    does not cache features while this callback runs (the backbone must
    run each step).

    Args:
        every: number of units between two unfreezing steps. Defaults to
            `1`.
        unit: `"epoch"` or `"step"` (batches). Defaults to `"epoch"`.
        max_blocks: most blocks to unfreeze, counted from the top. Fewer
            than already train when `fit` begins is an error. Defaults to
            `None` (all of them).
        embeddings: unfreeze the embeddings one stage after the last block.
            Defaults to `False`.
        verbose: print a line each time more of the backbone trains.
            Defaults to `1`.

    Example:
    ```python
    model = kt.TextClassifier.from_preset(preset, num_classes=2, freeze=True)
    model.compile(learning_rate=1e-4)
    model.fit(train, epochs=4, callbacks=[kt.callbacks.GradualUnfreezing(every=1)])
    # epoch 1: head only; epoch 2: + top block; epoch 3: + the next; …
    ```
    """

    def __init__(self, every=1, unit="epoch", max_blocks=None, embeddings=False, verbose=1):
        super().__init__()
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise ValueError(
                "Expected `every` to be a positive integer (epochs or steps "
                f"between two unfreezing steps). Received: every={every!r}"
            )
        if unit not in _UNITS:
            raise ValueError(f"Expected `unit` to be one of {_UNITS}. Received: unit={unit!r}")
        if max_blocks is not None and (
            isinstance(max_blocks, bool) or not isinstance(max_blocks, int) or max_blocks < 1
        ):
            raise ValueError(
                "Expected `max_blocks` to be a positive integer or None (all "
                f"blocks). Received: max_blocks={max_blocks!r}"
            )
        freezing.check_embeddings_flag(embeddings)
        self.every = every
        self.unit = unit
        self.max_blocks = max_blocks
        self.embeddings = bool(embeddings)
        self.verbose = verbose

    def _trainable_top(self, backbone):
        """How many blocks, counted from the top down to the lowest block
        that trains, train now (blocks in between would train with them)."""
        if not backbone.trainable:
            return 0
        stack = freezing.blocks(backbone)
        training = [index for index, block in enumerate(stack) if block.trainable]
        return len(stack) - training[0] if training else 0

    def _embeddings_train(self, backbone):
        below, _, _ = freezing._regions(backbone)
        return backbone.trainable and any(layer.trainable for layer in below)

    def on_train_begin(self, logs=None):
        backbone = freezing._backbone_of(self.model)
        if backbone is self.model:
            raise ValueError(
                "GradualUnfreezing needs a model with one KerasHub backbone (a "
                f"keras_transfer task, or a model built over a backbone); "
                f"{self.model.name} has none."
            )
        self._backbone = backbone
        self._num_blocks = len(freezing.blocks(backbone))
        self._initial = self._trainable_top(backbone)
        self._limit = min(self.max_blocks or self._num_blocks, self._num_blocks)
        if self._initial > self._limit:
            raise ValueError(
                f"GradualUnfreezing(max_blocks={self.max_blocks}) trains at most the "
                f"top {counted(self._limit, 'block')}, but the top {self._initial} of "
                f"{self._num_blocks} already train as `fit` begins, and it never "
                f"freezes what trains. Pass `max_blocks={self._initial}` or more (or "
                "None), or freeze the backbone first (`kt.freeze(model)`, or "
                "`freeze=True` in `from_preset`) and compile again."
            )
        self._start = None  # the position (in units) the stages count from
        self._steps_begun = 0
        self._stage = None
        self._warned = False

    def _position(self, epoch, batch=0):
        """Units done before this one: epochs, or steps since epoch 0 (Keras
        numbers the epochs of a resumed run on from those of the first)."""
        if self.unit == "epoch":
            return epoch
        steps = (self.params or {}).get("steps")
        # Data of unknown length: the steps begun in this `fit`.
        return epoch * steps + batch if steps else self._steps_begun

    def _count_from(self, epoch):
        """Where the stages count from: this fit's first unit, or, in a run
        resumed from a backup, where the run it resumes began (and what
        trained then)."""
        resumed = resumed_progress(self, "gradual_unfreezing")
        if resumed is not None:
            self._initial, self._start = resumed["initial"], resumed["start"]
        else:
            self._start = self._position(epoch)
        publish_progress(self, "gradual_unfreezing", {"initial": self._initial, "start": self._start})

    def _apply(self, stage):
        if stage == self._stage:
            return
        self._stage = stage
        top = min(self._initial + stage, self._limit)
        embeddings = (
            self.embeddings
            and self._limit == self._num_blocks
            and self._initial + stage > self._num_blocks
        )
        # Never freeze what trains: a resumed run restores the backup's
        # blocks and replays the steps before it, at earlier stages.
        top_now, embeddings_now = self._trainable_top(self._backbone), self._embeddings_train(self._backbone)
        top, embeddings = max(top, top_now), embeddings or embeddings_now
        if (top, embeddings) == (top_now, embeddings_now):
            return
        freezing.unfreeze(self.model, top=top, embeddings=embeddings)
        optimizer = getattr(self.model, "optimizer", None)
        new = add_variables(optimizer, self.model.trainable_variables) if optimizer else []
        if getattr(self.model, "jit_compile", False):
            # A compiled step was traced for the old set of trainable weights.
            self.model.make_train_function(force=True)
        if new and not self._warned and self.model.__dict__.get("_rate_chosen_for_frozen"):
            # `Task.fit` refuses this outside the callback (unfrozen after compile()).
            self._warned = True
            warnings.warn(
                "GradualUnfreezing: pretrained blocks now train at the learning rate "
                f"`compile()` chose for a frozen backbone{_peak_rate(optimizer)}, too large "
                "for them. Compile with a rate for fine-tuning before `fit`, for example "
                "`model.compile(learning_rate=1e-4, layer_decay=0.8)`.",
                UserWarning,
                stacklevel=2,
            )
        if self.verbose and new:
            what = f"the top {top} of {self._num_blocks} blocks" + (" and the embeddings" if embeddings else "")
            count = sum(math.prod(variable.shape) for variable in new)
            print(f"\nGradualUnfreezing: {what} now train ({count:,} more parameters).")

    # Stages change before a unit begins, so none is applied after the last.
    def on_epoch_begin(self, epoch, logs=None):
        if self._start is None:
            self._count_from(epoch)
        self._epoch = epoch
        if self.unit == "epoch":
            self._apply((self._position(epoch) - self._start) // self.every)

    def on_train_batch_begin(self, batch, logs=None):
        if self.unit == "step":
            self._apply((self._position(self._epoch, batch) - self._start) // self.every)
            self._steps_begun += 1

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["unfrozen_blocks"] = self._trainable_top(self._backbone)

    def get_config(self):
        return {
            "every": self.every,
            "unit": self.unit,
            "max_blocks": self.max_blocks,
            "embeddings": self.embeddings,
            "verbose": self.verbose,
        }


def _peak_rate(optimizer):
    """` (3e-3, for the head alone)`: the peak of `compile()`'s schedule."""
    optimizer = inner_optimizer(optimizer)  # under "mixed_float16"
    peak = getattr(getattr(optimizer, "_learning_rate", None), "peak_learning_rate", None)
    return "" if peak is None else f" ({float(peak):g}, for the head alone)"
