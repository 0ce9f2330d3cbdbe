"""The base of every task model: raw text in, Keras training out.

A `Task` is a functional Keras model over a KerasHub backbone, with the
backbone's preprocessor attached. It adds to `keras.Model`:

- `fit`, `evaluate` and `predict` that take raw strings (a list, a
  `kt.datasets.TextData`, or `(texts, labels)`) and batch them with
  `TextBatches` (tokenized once, padded per batch, length-bucketed), while
  still accepting anything Keras accepts (token-id dictionaries,
  `PyDataset`s, `DataLoader`s);
- `compile()` with task defaults: AdamW with linear warmup and decay sized
  from the data at `fit` time, the task's loss and metrics;
- a `summary()` that shows what is frozen and what trains;
- a config that keeps the frozen state, so `kt.load_model` restores it.
"""

import collections
import contextlib
import difflib
import inspect
import math
import os
import tempfile
import types

import keras
import numpy as np
import torch
from keras.src.backend.common.stateless_scope import in_stateless_scope
from keras.src.backend.torch.core import get_device

from keras_transfer import distributed, freezing, fused, layer_walk
from keras_transfer import lora as lora_lib
from keras_transfer.batching import TextBatches, padding_share
from keras_transfer import lr_finder
from keras_transfer.callbacks.learning_rate import LearningRateLogger
from keras_transfer.callbacks.backup import BackupAndRestore
from keras_transfer.callbacks.numerics import StopOnNaN
from keras_transfer.datasets.readers import TextData, _describe
from keras_transfer.preprocessing import check_texts, columns_as_pairs
from keras_transfer.saving import check_output_path
from keras_transfer.optimizers import default_optimizer, inner_optimizer as _inner_optimizer
from keras_transfer.schedules import WarmupLinearDecay
from keras_transfer.wording import counted

DEFAULT_BATCH_SIZE = 32
# Usual rates for transfer learning: a fresh head on frozen features learns
# fast; pretrained weights being fine-tuned need a small step.
HEAD_LEARNING_RATE = 3e-3
FINE_TUNING_LEARNING_RATE = 5e-5
#: Cached features of a frozen backbone (training and validation together)
#: stay in memory up to this many bytes; beyond it they go to a
#: memory-mapped file (`Task.fit`'s `cache_memory_limit` and `cache_dir`).
FEATURE_CACHE_MEMORY_LIMIT = 2 * 1024**3
#: Token positions per batch of a frozen backbone's feature pass, by the
#: type of Keras' device; other devices use `fit`'s batch size. On an H100,
#: BERT-base inference ran 3.4x faster at 128 x 128 than at 32 x 128 and
#: 3.8x at 64 x 512 than at 16 x 512 (`benchmarks/results/
#: gpu_throughput*_h100_2026-11-27.md`); on a CPU larger batches were
#: slower (MiniLM at 128 tokens: 9.0-10.1 s at 32 texts a batch, 11.2 s
#: at 256). A batch that runs out of device memory is split in two.
FEATURE_PASS_TOKENS = {"cuda": 32768}


def _is_raw_text(x):
    if isinstance(x, np.ndarray):
        return x.dtype.kind in "USO"
    if isinstance(x, (list, tuple)) and len(x) > 0:
        first = x[0]
        return isinstance(first, str) or (
            isinstance(first, (tuple, list)) and len(first) > 0 and isinstance(first[0], str)
        )
    return False


def _loss_scaled(policy):
    """Whether `policy` is Keras' `"mixed_float16"`, the one under which
    `Model.compile` adds loss scaling."""
    return isinstance(policy, keras.DTypePolicy) and policy.name == "mixed_float16"


def _refuse_raw_text(call, args, kwargs):
    """Raises for raw texts given to an on-batch call, which runs one batch
    of token ids as Keras' does (Keras would say the model "received 10
    input tensors", one per text)."""
    x = args[0] if args else kwargs.get("x")
    if _is_raw_text(x) or isinstance(x, str):
        raise ValueError(
            f"`{call}` takes one batch of token ids, as Keras' does, not raw texts. "
            f"Pass `model.preprocessor(texts)`: `model.{call}(model.preprocessor(texts)"
            + (")`" if call == "predict_on_batch" else ", labels)`")
            + ", or give the texts to `fit`, `evaluate` or `predict`, which batch them for you."
        )


def _is_text_data(x):
    return hasattr(x, "texts") and hasattr(x, "labels")


def _plain_loss_layers(model):
    """`model` and every layer under it, if none overrides `_clear_losses`; else ()."""
    layers = model._flatten_layers(include_self=False)
    if any(type(layer)._clear_losses is not keras.layers.Layer._clear_losses for layer in layers):
        return ()
    return (model, *layers)


class Task(distributed.DataParallel, keras.Model):
    """Base class of keras_transfer task models.

    Subclasses build their functional graph, call `super().__init__(inputs=…,
    outputs=…)`, and define `_check_labels`, `default_loss` and
    `default_metrics`.
    """

    # `fit` gives every process rank 0's weights itself (after LoRA's
    # reseeding, before any features are cached): no second broadcast.
    syncs_weights_in_fit = False

    def __init__(self, *args, backbone=None, preprocessor=None, frozen_state=None, lora=None, **kwargs):
        _check_keyword_arguments(type(self), kwargs)
        # Keras' functional `Model` drops `dtype` and takes the global policy.
        dtype = kwargs.pop("dtype", None)
        super().__init__(*args, **kwargs)
        if dtype is None and _loss_scaled(getattr(backbone, "dtype_policy", None)):
            # A float16 backbone (`from_preset(dtype="mixed_float16")`): the
            # task takes its policy, so that `compile` wraps the optimizer in
            # Keras' LossScaleOptimizer, as it does for a float16 model;
            # without it small float16 gradients underflow to zero.
            dtype = backbone.dtype_policy.name
        if dtype is not None:
            self.dtype_policy = dtype
        self._initialized = True
        self.backbone = backbone
        self.preprocessor = preprocessor
        if frozen_state is not None:
            freezing.restore_frozen_state(self, frozen_state)
        if lora:  # a saved LoRA model: its adapters come back before its weights
            lora_lib.enable_lora(self, **lora)
        # torch's fused linear and attention kernels, for the head too.
        fused.fuse(self)

    # Attributes are stored outside Keras' and torch's trackers, as KerasHub
    # tasks do: the backbone is already tracked through the graph, and a
    # preprocessor has no weights (its vocabulary is saved as an asset).
    def __setattr__(self, name, value):
        if keras.config.backend() == "torch" and (
            isinstance(getattr(type(self), name, None), property)
            or not hasattr(self, "_initialized")
        ):
            return object.__setattr__(self, name, value)
        return super().__setattr__(name, value)

    # Keras' train step reads `trainable_weights` and `metrics` several times,
    # and each read walks every layer of the model (183 for a BERT-base
    # classifier): 2-3 ms of host time per step there. Nothing in a step can
    # change either, so within one `train_step` (and `test_step`) they are
    # read once; the cache is gone when the step returns.
    def train_step(self, data):
        with self._step_cache():
            return super().train_step(data)

    def test_step(self, data):
        with self._step_cache():
            return super().test_step(data)

    # The on-batch calls read `metrics` around their step as well (resetting
    # and reporting them): one walk for the whole call instead of three.
    def train_on_batch(self, *args, **kwargs):
        _refuse_raw_text("train_on_batch", args, kwargs)
        with self._step_cache():
            return super().train_on_batch(*args, **kwargs)

    def test_on_batch(self, *args, **kwargs):
        _refuse_raw_text("test_on_batch", args, kwargs)
        with self._step_cache():
            return super().test_on_batch(*args, **kwargs)

    def predict_on_batch(self, *args, **kwargs):
        _refuse_raw_text("predict_on_batch", args, kwargs)
        return super().predict_on_batch(*args, **kwargs)

    def _clear_losses(self):
        """Keras' `_clear_losses` (run before each outermost call), without its recursion.

        Keras clears each layer's losses by recursing through `_layers`, a
        Python call per layer (0.25 ms per call of a BERT-base classifier).
        Once every layer is built, the task model clears the same lists
        from a flat list of its layers, made once; inside a stateless scope,
        or when a layer has its own `_clear_losses`, Keras' method runs.
        """
        held = self.__dict__.get("_kt_loss_layers")
        if held is None and self._all_layers_built():
            # Held in a plain object, not a list: Keras' saving walks list
            # attributes for layers, and this one holds the model itself.
            held = self.__dict__["_kt_loss_layers"] = types.SimpleNamespace(layers=_plain_loss_layers(self))
        layers = held.layers if held is not None else ()
        if not layers or in_stateless_scope():
            return super()._clear_losses()
        for layer in layers:
            if layer._losses:  # Keras' tracked lists cost 0.3 µs a `clear()` even when empty
                layer._losses.clear()
            if layer._loss_ids:
                layer._loss_ids.clear()

    @contextlib.contextmanager
    def _step_cache(self):
        outer = self.__dict__.get("_kt_step_cache")
        if outer is None:
            self.__dict__["_kt_step_cache"] = {}
        try:
            yield
        finally:
            if outer is None:
                self.__dict__.pop("_kt_step_cache", None)

    def _cached(self, name, read):
        cache = self.__dict__.get("_kt_step_cache")
        if cache is None:
            return read()
        if name not in cache:
            cache[name] = read()
        return list(cache[name])  # a fresh list each time, as Keras returns

    def _walk(self):
        """`layer_walk.walk(self)`, once per step: every layer, in the order
        of Keras' recursive properties, and what a step asks of them (None:
        ask Keras)."""
        cache = self.__dict__.get("_kt_step_cache")
        if cache is None:
            return layer_walk.walk(self)
        if "walk" not in cache:
            cache["walk"] = layer_walk.walk(self)
        return cache["walk"]

    @property
    def trainable_weights(self):
        return self._cached("trainable_weights", self._read_trainable_weights)

    @property
    def trainable_variables(self):
        """Keras' `trainable_variables`: the same list as `trainable_weights`
        (the variables Keras' `variables` adds, seed states, never train)."""
        walk = self._walk()
        if walk is None:
            return keras.Model.trainable_variables.fget(self)
        return self._cached("trainable_weights", lambda: walk.trainable_weights)

    def _read_trainable_weights(self):
        walk = self._walk()
        if walk is None:
            return keras.Model.trainable_weights.fget(self)
        return walk.trainable_weights

    @property
    def metrics(self):
        return self._cached("metrics", self._read_metrics)

    def _read_metrics(self):
        """`Trainer.metrics`: when no layer has metrics of its own, its
        compiled ones and the model's, without the walk through every layer."""
        walk = self._walk()
        if walk is None or not walk.layer_metrics_are_empty:
            return keras.Model.metrics.fget(self)
        metrics = []
        if self.compiled:  # as `Trainer.metrics` lists them
            if self._loss_tracker is not None:
                metrics.append(self._loss_tracker)
            if self._compile_metrics is not None:
                metrics.append(self._compile_metrics)
            if self._compile_loss is not None:
                metrics.extend(self._compile_loss.metrics)
        metrics.extend(self._metrics)
        return metrics

    @property
    def losses(self):
        """Keras' `losses`: with no `add_loss` losses anywhere, the weight
        regularization losses alone, without Keras' walk through every layer."""
        walk = None if self._losses_override or in_stateless_scope() else self._walk()
        if walk is None or not walk.losses_are_empty:
            return keras.Model.losses.fget(self)
        return self._get_regularization_losses()

    def zero_grad(self, set_to_none=True):
        """torch's `zero_grad`, without walking every submodule for its parameters.

        Keras calls it in each train step; torch's walk through the
        model's modules takes 0.3-0.7 ms for a BERT-base classifier. The
        tensors that can hold a gradient are the trainable weights' (the
        ones this step differentiates) and the ones in the model's own
        parameter dict (every variable, as of the last `_track_variables`:
        a weight that trained before a freeze). Models holding torch
        modules of their own (`TorchModuleWrapper`), or a call with
        `set_to_none=False`, take torch's walk.
        """
        tracked = self.__dict__.get("_kt_tracked_tensors")
        walk = self._walk() if set_to_none and tracked is not None else None
        if walk is None or walk.holds_torch_modules:
            return super().zero_grad(set_to_none=set_to_none)
        for variable in self.trainable_weights:
            tensor = variable._value
            if tensor is not None and tensor.grad is not None:
                tensor.grad = None
        for tensor in tracked:
            if tensor is not None and tensor.grad is not None:
                tensor.grad = None

    def _all_layers_built(self):
        """Whether every layer is built; once they all are, remembered (they stay built)."""
        if not self.__dict__.get("_kt_layers_built"):
            self.__dict__["_kt_layers_built"] = all(layer.built for layer in self._flatten_layers())
        return self.__dict__["_kt_layers_built"]

    def _symbolic_build(self, iterator=None, data_batch=None):
        """Keras' check that model, metrics, loss and optimizer are built.

        `train_on_batch`, `test_on_batch` and `predict_on_batch` call it on
        every batch, and its first question, whether every layer is built,
        walks all of them (1.5 ms per call for a BERT-base classifier). A
        task model's graph is fixed when it is made and built layers stay
        built, so once all were, only the other questions are asked again.
        """
        if not self.__dict__.get("_kt_layers_built"):
            super()._symbolic_build(iterator=iterator, data_batch=data_batch)
            self._all_layers_built()
            return
        unbuilt = (
            (self._compile_metrics is not None and not self._compile_metrics.built)
            or (self._compile_loss is not None and not self._compile_loss.built)
            or (self.optimizer is not None and not self.optimizer.built)
        )
        if unbuilt:
            return super()._symbolic_build(iterator=iterator, data_batch=data_batch)
        self._post_build()

    def _track_variables(self):
        """Keras' `TorchLayer._track_variables`, skipped when nothing changed.

        Keras rebuilds torch's `ParameterDict` of every variable at the end
        of each `train_on_batch` and `test_on_batch` (`_symbolic_build`
        calls `_post_build`): 1.6 ms for a BERT-base-sized model, each step.
        The dict holds the variables' torch tensors, so the same tensors in
        the same order mean the same dict; LoRA adapters, new variables or
        a replaced tensor rebuild it. The tensors come from one flat walk
        (`layer_walk`) where it applies, else from Keras' `variables`.
        """
        walk = self._walk()
        tensors = [variable._value for variable in self.variables] if walk is None else walk.variable_tensors
        key = tuple(map(id, tensors))
        if self.__dict__.get("_kt_tracked_variables") == key and "_torch_params" in self._modules:
            return
        super()._track_variables()
        # An uninitialized variable (no tensor yet) gets its dict rebuilt next time.
        initialized = all(tensor is not None for tensor in tensors)
        object.__setattr__(self, "_kt_tracked_variables", key if initialized else None)
        object.__setattr__(self, "_kt_tracked_tensors", tensors if initialized else None)

    @property
    def backbone(self):
        """The KerasHub backbone under the head."""
        return getattr(self, "_backbone", None)

    @backbone.setter
    def backbone(self, value):
        self._backbone = value

    @property
    def _compiled_with(self):
        """The loss and metrics `compile` was given (kept out of Keras' tracker).

        Tracked, the metric objects in it would be reported a second time,
        on their own, by `evaluate` and in the history.
        """
        return self.__dict__.get("_compiled_with_value")

    @_compiled_with.setter
    def _compiled_with(self, value):
        self.__dict__["_compiled_with_value"] = value

    @property
    def preprocessor(self):
        """The `kt.TextPreprocessor` that turns raw text into backbone inputs."""
        return getattr(self, "_preprocessor", None)

    @preprocessor.setter
    def preprocessor(self, value):
        self._preprocessor = value
        _mark_weightless_layers_built(value)

    def freeze(self):
        """Freezes the backbone (`kt.freeze(model)`); compile again after."""
        freezing.freeze(self)

    def unfreeze(self, top=None, embeddings=False):
        """Unfreezes the backbone or its top blocks (`kt.unfreeze`).

        Call `compile()` again afterwards, usually with a smaller learning
        rate: `model.unfreeze(top=2); model.compile(learning_rate=2e-5)`.
        """
        freezing.unfreeze(self, top=top, embeddings=embeddings)

    def enable_lora(self, rank=8, target_layer_names=None):
        """Trains low-rank adapters instead of the backbone (`kt.lora`).

        KerasHub's `backbone.enable_lora`: the backbone's weights freeze,
        its attention query and value projections get trainable rank-`rank`
        adapters, the head keeps training. `summary()` shows the counts;
        `save` / `kt.load_model` keep it a LoRA model. Call `compile()`
        again afterwards, for example `model.compile(learning_rate=1e-3)`.

        Args:
            rank: rank of the adapters. Defaults to `8`.
            target_layer_names: layers to adapt. Defaults to `None` (the
                backbone's `default_lora_layer_names()`).
        """
        lora_lib.enable_lora(self, rank=rank, target_layer_names=target_layer_names)

    def find_learning_rate(self, x, y=None, min_lr=1e-7, max_lr=1.0, steps=100, **kwargs):
        """The learning-rate range test (`kt.lr_finder.find_learning_rate`).

        Sweeps the rate exponentially from `min_lr` to `max_lr` over
        `steps` training steps and returns an `LRFinderResult`
        (`.learning_rates`, smoothed `.losses`, `.suggestion` at the
        steepest descent, `.plot(path)`). Weights, the optimizer's
        state and the random state are as before afterwards. Example:
        `model.compile(learning_rate=model.find_learning_rate(texts, labels).suggestion)`.
        """
        return lr_finder.find_learning_rate(
            self, x, y, min_lr=min_lr, max_lr=max_lr, steps=steps, **kwargs
        )

    def fine_tune(self, x, y=None, validation_data=None, head_epochs=3, epochs=2, unfreeze="all", **kwargs):
        """Head first on the frozen backbone, then unfrozen (`kt.recipes.fine_tune`).

        Returns one `History` whose `stage` log says which stage (1: head,
        2: unfrozen) each epoch belongs to. Each stage compiles again with
        its own rate, keeping the loss, metrics and weight decay you
        compiled with. Example:
        `model.fine_tune(train, validation_data=test, head_epochs=3, epochs=2, unfreeze=2)`.
        """
        from keras_transfer import recipes

        return recipes.fine_tune(
            self, x, y, validation_data=validation_data, head_epochs=head_epochs,
            epochs=epochs, unfreeze=unfreeze, **kwargs,
        )

    # Labels and data --------------------------------------------------------

    def _check_labels(self, y, name="y"):
        """Validates and converts labels; subclasses override."""
        return np.asarray(y)

    def _as_batches(self, x, y, batch_size, shuffle, name="x", seed=None):
        """Turns raw text into `TextBatches`; passes anything else through."""
        if (
            y is None
            and isinstance(x, tuple)
            and len(x) == 2
            and _is_raw_text(x[0])
            and isinstance(x[0], (list, np.ndarray))
            and not _is_raw_text(x[1])
            and hasattr(x[1], "__len__")
            and len(x[1]) == len(x[0])
        ):
            raise ValueError(
                f"`{name}` is a tuple `(texts, labels)`. Give the texts and the labels as "
                "two arguments: `fit(texts, labels)`."
            )
        if _is_text_data(x):
            if y is not None:
                raise ValueError(
                    f"`{name}` is a TextData that already holds its labels; "
                    "do not pass `y` as well."
                )
            y = x.labels
            y = self._map_label_names(y, getattr(x, "label_names", None))
            x = x.texts
        elif not _is_raw_text(x):
            if isinstance(x, (str, list, tuple)):
                # Raises for a single string or a non-string item.
                if not check_texts(x, name):
                    raise ValueError(f"`{name}` is empty: there is nothing to train or predict on.")
            return x, y
        if self.preprocessor is None:
            raise ValueError(
                "This model has no preprocessor, so it cannot read raw text. "
                "Pass token-id dictionaries, or attach one: "
                "`model.preprocessor = preprocessor`."
            )
        x = columns_as_pairs(x, name)  # (texts_a, texts_b): pairs, as the pair task reads them
        if y is not None:
            check_one_label_per_text(y, "y" if name == "x" else f"{name} labels")
            y = self._check_labels(y, name="y" if name == "x" else f"{name} labels")
            if len(y) != len(x):
                raise ValueError(
                    f"Got {counted(len(x), 'text')} but {counted(len(y), 'label')} in `{name}`. Give "
                    "exactly one label per text."
                )
        return (
            TextBatches(
                self.preprocessor,
                list(x),
                y,
                batch_size=DEFAULT_BATCH_SIZE if batch_size is None else batch_size,
                shuffle=shuffle,
                bucketing=True,
                seed=seed,
            ),
            None,
        )

    def _map_label_names(self, y, names):
        return y

    def _check_array_labels(self, y):
        """Checks (or maps) labels that go with token-id arrays; subclasses override."""
        return y

    def _class_weight_by_id(self, class_weight):
        """`class_weight` with class names (of `label_names`) turned into ids."""
        if not isinstance(class_weight, dict):
            raise ValueError(
                "Expected `class_weight` to be a dict from class (id or name) to weight, "
                f"e.g. {{0: 1.0, 1: 5.0}}. Received: {_describe(class_weight, 80)}"
            )
        names = getattr(self, "label_names", None)
        count = getattr(self, "num_classes", None)
        by_id = {}
        for key, weight in class_weight.items():
            if isinstance(key, str):
                if not names or key not in names:
                    known = f"the classes are {names}" if names else "this model has no `label_names`"
                    raise ValueError(
                        f"`class_weight` names the class {key!r}, but {known}. "
                        "Key it by class id (0, 1, …) or by a name in `label_names`."
                    )
                key = names.index(key)
            elif isinstance(key, (float, np.floating)) and float(key).is_integer():
                key = int(key)  # Keras takes 1.0 for class 1
            if isinstance(key, bool) or not isinstance(key, (int, np.integer)) or (
                count is not None and not 0 <= key < count
            ):
                raise ValueError(
                    f"`class_weight` has the key {key!r}; expected a class id in "
                    f"0..{(count or 1) - 1}{' or a name in `label_names`' if names else ''}."
                )
            if int(key) in by_id:
                raise ValueError(f"`class_weight` gives class {int(key)} two weights (by id and by name).")
            if (
                isinstance(weight, bool)
                or not isinstance(weight, (int, float, np.integer, np.floating))
                or not math.isfinite(weight)
                or weight < 0
            ):
                # Keras takes any value and trains on it: a negative weight
                # climbs that class's loss, a NaN one makes every loss NaN.
                raise ValueError(
                    f"`class_weight` gives class {key!r} the weight {weight!r}: weights must be "
                    "finite numbers, 0 or more (as `sample_weight`'s), e.g. {0: 1.0, 1: 5.0}."
                )
            by_id[int(key)] = weight
        return by_id

    # Compile ----------------------------------------------------------------

    def compile(
        self,
        optimizer="auto",
        loss="auto",
        metrics="auto",
        learning_rate=None,
        weight_decay=0.01,
        warmup=0.1,
        backbone_learning_rate=None,
        layer_decay=None,
        gradient_accumulation_steps=None,
        **kwargs,
    ):
        """Configures training, with defaults suited to the task.

        Args:
            optimizer: `"auto"` for AdamW with linear warmup and linear
                decay to zero, stretched over the steps of each `fit` call;
                or any Keras optimizer. Defaults to `"auto"`.
            loss: `"auto"` for the task's loss, or any Keras loss.
            metrics: `"auto"` for the task's metrics, or a list of metrics.
            learning_rate: peak learning rate of the `"auto"` optimizer.
                Defaults to `3e-3` when the backbone is frozen (only the head
                trains) and `5e-5` when any backbone weight trains.
            weight_decay: AdamW weight decay; biases and norms are excluded.
                Defaults to `0.01`.
            warmup: share of the steps spent warming up. Defaults to `0.1`.
            backbone_learning_rate: discriminative fine-tuning: the peak
                rate of the top of the backbone, while the head keeps
                `learning_rate` (`kt.optimizers.LayerwiseAdamW`). Defaults
                to `None` (one rate for all, or `learning_rate *
                layer_decay` when `layer_decay` is given).
            layer_decay: layer-wise decay in (0, 1]: each transformer block
                learns at `layer_decay` times the rate of the block above,
                the embeddings lowest (see
                `kt.optimizers.layerwise_multipliers`). Defaults to `None`.
            gradient_accumulation_steps: update the weights every `k`
                batches with their averaged gradients (Keras' optimizer
                option): a batch `k` times larger in memory of one.
                Defaults to `None`.
            **kwargs: passed to `keras.Model.compile` (for example
                `jit_compile`, `steps_per_execution`).
        """
        # What the user chose besides the rate, before "auto" is resolved:
        # `fine_tune` compiles each of its stages with it (`recipes._kept_compile`).
        given = {
            "loss": loss,
            "metrics": metrics,
            "auto_optimizer": isinstance(optimizer, str) and optimizer == "auto",
            "weight_decay": weight_decay,
            "warmup": warmup,
            "gradient_accumulation_steps": gradient_accumulation_steps,
            "kwargs": dict(kwargs),
        }
        # Whether compile picked the head's rate for a frozen backbone: a
        # backbone unfrozen before the first fit must not train at it.
        self.__dict__["_rate_chosen_for_frozen"] = False
        if isinstance(optimizer, str) and optimizer == "auto":
            if learning_rate is None:
                backbone_trains = self.backbone is not None and any(
                    True for _ in self.backbone.trainable_weights
                )
                learning_rate = FINE_TUNING_LEARNING_RATE if backbone_trains else HEAD_LEARNING_RATE
                self.__dict__["_rate_chosen_for_frozen"] = not backbone_trains
            if not 0 <= warmup < 1:
                raise ValueError(
                    f"Expected `warmup` to be a share of the steps in [0, 1). Received: warmup={warmup!r}"
                )
            schedule = WarmupLinearDecay(
                learning_rate,
                total_steps=1000,
                warmup_steps=int(warmup * 1000),
                sized_by_fit=True,
            )
            optimizer = default_optimizer(
                self,
                schedule,
                weight_decay=weight_decay,
                backbone_learning_rate=backbone_learning_rate,
                layer_decay=layer_decay,
                gradient_accumulation_steps=gradient_accumulation_steps,
            )
            optimizer.exclude_from_weight_decay(var_names=["bias", "gamma", "beta"])
        elif learning_rate is not None:
            raise ValueError(
                "`learning_rate` sets the rate of the default optimizer; with "
                "your own optimizer, give the rate to the optimizer instead."
            )
        elif (backbone_learning_rate, layer_decay, gradient_accumulation_steps) != (None, None, None):
            raise ValueError(
                "`backbone_learning_rate`, `layer_decay` and "
                "`gradient_accumulation_steps` configure the default optimizer; "
                "with your own optimizer, use `kt.optimizers.LayerwiseAdamW` or "
                "the optimizer's own `gradient_accumulation_steps`."
            )
        if isinstance(loss, str) and loss == "auto":
            loss = self.default_loss()
        if isinstance(metrics, str) and metrics == "auto":
            metrics = self.default_metrics()
        super().compile(optimizer=optimizer, loss=loss, metrics=metrics, **kwargs)
        if fused.is_fused(self):
            # Adam/AdamW: torch's fused kernel, the same update.
            fused.fuse_optimizer(self.optimizer)
        self._compiled_with = {
            "loss": loss,
            "metrics": metrics,
            "weighted_metrics": kwargs.get("weighted_metrics"),
            "loss_weights": kwargs.get("loss_weights"),
        }
        self.__dict__["_compile_arguments"] = given
        self.__dict__["_compiled_for_evaluate"] = False
        self._prepare_for_jit_compile()

    def get_compile_config(self):
        """Keras' compile config, plus the names excluded from weight decay
        (Keras' optimizers do not save them: biases and norms would be
        decayed after a reload).

        The names go in the optimizer's entry, beside its class and config,
        where Keras' deserialization does not look: the plain Functional
        copy that `keras.models.clone_model` makes of a task is compiled
        from this config by Keras' own `compile_from_config`, which passes
        every top-level key to `compile()` (it would fail on an unknown
        one); the copy gets the optimizer without them, as Keras' clone of
        any model does. A top-level key is kept only for an optimizer given
        by name (no entry to hold them).

        An optimizer not built yet (compiled, never trained) is marked so
        in its entry, with whether `compile` chose the head's rate for a
        frozen backbone: its saved state is only a step count, so loading
        must not build it first (Keras would skip the load and warn that
        the variable counts differ), and the guard against unfreezing
        before the first fit comes back with it.
        """
        config = super().get_compile_config()
        optimizer = getattr(self, "optimizer", None)
        pattern = getattr(optimizer, "_exclude_from_weight_decay_pattern", None)
        if config and pattern is not None:
            names = sorted(pattern.pattern.split("|"))
            if isinstance(config.get("optimizer"), dict):
                config["optimizer"] = {**config["optimizer"], "exclude_from_weight_decay": names}
            else:
                config["exclude_from_weight_decay"] = names
        if config and isinstance(config.get("optimizer"), dict) and not getattr(optimizer, "built", True):
            config["optimizer"] = {
                **config["optimizer"],
                "built": False,
                "rate_chosen_for_frozen": bool(self.__dict__.get("_rate_chosen_for_frozen")),
            }
        return config

    def compile_from_config(self, config):
        """Restores the compiled state of a saved model (used by loading).

        Reads the names excluded from weight decay from the optimizer's
        entry, or from the top level, where files saved by earlier versions
        hold them. An optimizer saved before it was built stays unbuilt
        (see `get_compile_config`), as it was when saved."""
        config = dict(config)
        excluded = config.pop("exclude_from_weight_decay", None)
        built, rate_chosen_for_frozen = True, False
        if isinstance(config.get("optimizer"), dict):
            optimizer = dict(config["optimizer"])
            excluded = optimizer.pop("exclude_from_weight_decay", excluded)
            built = optimizer.pop("built", True)
            rate_chosen_for_frozen = optimizer.pop("rate_chosen_for_frozen", False)
            config["optimizer"] = optimizer
        config = keras.saving.deserialize_keras_object(config)
        self.compile(**config)
        if excluded:
            self.optimizer.exclude_from_weight_decay(var_names=excluded)
        if not built:
            self.__dict__["_rate_chosen_for_frozen"] = bool(rate_chosen_for_frozen)
        elif self.built:
            # Create the optimizer's variables so that saved state loads in.
            self.optimizer.build(self.trainable_variables)

    def _compile_if_uncompiled(self, for_fit):
        """`compile()` with the task's defaults when the model has never
        been compiled (built with `compile=False`, or loaded from a file
        saved uncompiled or with `kt.load_model(..., compile=False)`):
        `fit` and `evaluate` promise those defaults, where Keras would
        stop with "You must call compile()".

        A compile made for `evaluate` alone is made again by `fit` while
        its optimizer has not taken a step (evaluating builds it for the
        weights that train then): the default rate and the variables it
        updates depend on what is frozen when training starts, and the
        user never chose them.
        """
        optimizer = getattr(self, "optimizer", None)
        if optimizer is None or (
            for_fit
            and self.__dict__.get("_compiled_for_evaluate")
            and int(keras.ops.convert_to_numpy(optimizer.iterations)) == 0
        ):
            self.compile()
            self.__dict__["_compiled_for_evaluate"] = not for_fit

    def _check_optimizer_knows_variables(self):
        optimizer = getattr(self, "optimizer", None)
        if (
            not getattr(optimizer, "built", False)
            and self.__dict__.get("_rate_chosen_for_frozen")
            and self.backbone is not None
            and self.backbone.trainable_weights
        ):
            raise ValueError(
                "The backbone was unfrozen after `compile()`, which chose the "
                f"learning rate for a frozen backbone ({HEAD_LEARNING_RATE:g}, "
                "too large for pretrained weights). Call `model.compile()` "
                f"again after `kt.unfreeze` (it then picks {FINE_TUNING_LEARNING_RATE:g}), "
                "or pass `learning_rate=...`."
            )
        known = getattr(optimizer, "_trainable_variables_indices", None)
        if not getattr(optimizer, "built", False) or known is None:
            return
        unknown = [v.path for v in self.trainable_variables if optimizer._var_key(v) not in known]
        if unknown:
            raise ValueError(
                f"{counted(len(unknown), 'weight')} "
                f"became trainable after `compile()` "
                f"(for example {unknown[0]!r}), so the optimizer cannot update "
                f"{'them' if len(unknown) != 1 else 'it'}. Call `model.compile(...)` again after `kt.unfreeze`."
            )

    def _prepare_for_jit_compile(self):
        """Decides weight decay per variable before `torch.compile` traces.

        Keras' optimizer matches variable names against a regular
        expression the first time it applies weight decay, which
        `torch.compile` cannot trace; the answers are cached, so asking once
        eagerly keeps the regex out of the compiled step.
        """
        optimizer = getattr(self, "optimizer", None)
        if getattr(self, "jit_compile", False) and hasattr(optimizer, "_use_weight_decay"):
            for variable in self.trainable_variables:
                optimizer._use_weight_decay(variable)

    def _size_schedule(self, steps):
        # Under "mixed_float16" Keras wraps the optimizer in a
        # LossScaleOptimizer: the schedule, its step count and the gradient
        # accumulation are those of the optimizer inside.
        optimizer = _inner_optimizer(getattr(self, "optimizer", None))
        schedule = getattr(optimizer, "_learning_rate", None)
        if isinstance(schedule, WarmupLinearDecay) and schedule.sized_by_fit and steps:
            # With gradient accumulation the optimizer updates once per k
            # batches, and Keras evaluates the schedule at the batch count.
            accumulation = getattr(optimizer, "gradient_accumulation_steps", None) or 1
            schedule.resize(
                -(-steps // accumulation),
                start_step=int(keras.ops.convert_to_numpy(optimizer._iterations)),
                steps_per_update=accumulation,
            )

    # Training and inference -------------------------------------------------

    def fit(
        self,
        x=None,
        y=None,
        batch_size=None,
        epochs=1,
        validation_data=None,
        shuffle=True,
        seed=None,
        cache_features="auto",
        stop_on_nan=True,
        cache_memory_limit=None,
        cache_dir=None,
        **kwargs,
    ):
        """Trains the model; `x` may be raw texts, a `TextData` or a dataset.

        Raw text is tokenized once and batched by length; `batch_size`
        defaults to 32. `validation_data` may be a `TextData` or a
        `(texts, labels)` tuple. `seed` fixes the order of the batches:
        epoch `e` gets an order that depends only on `(seed, e)`, so a run
        resumed by `kt.callbacks.BackupAndRestore` sees the same batches.
        For a run that repeats exactly (order, initial head weights,
        dropout, metrics), call `keras.utils.set_random_seed(s)` before
        building the model and pass `seed=s`.

        `stop_on_nan=True` (the default) adds `kt.callbacks.StopOnNaN`:
        a NaN or infinite loss stops training with a warning naming the
        step, and the weights from before that step are put back. `False`
        leaves it out (as does passing your own `StopOnNaN`).

        Feature caching: when the backbone is frozen, its output for a text
        never changes, so it is computed once and the head trains on the
        cached features for every epoch. This is the same training (the
        frozen backbone runs in inference mode either way; the head's
        dropout still applies) at a fraction of the cost. `"auto"` caches
        when the backbone is frozen, the data is raw text, and every callback
        only needs the head's weights (callbacks that save the model, such
        as `ModelCheckpoint`, turn it off). `True` insists, `False` never
        caches. The features are written batch by batch into their storage:
        memory up to `cache_memory_limit` bytes (training and validation
        features together; default `FEATURE_CACHE_MEMORY_LIMIT`, 2 GiB),
        beyond it a memory-mapped file in `cache_dir` (default: the system's
        temporary directory) that batches read back from and that is deleted
        when `fit` returns. `cache_memory_limit=0` always uses the file.
        (Under torchrun the processes' features are gathered in memory.)

        Under torchrun (`torchrun --nproc_per_node=N script.py`) the same
        call trains data-parallel: `batch_size` is the global batch, each
        process takes its rows of every batch, and gradients and metrics
        are averaged over processes (see `kt.distributed`).

        Everything else is `keras.Model.fit`.
        """
        check_fit_arguments(
            cache_features, stop_on_nan, cache_memory_limit, cache_dir, shuffle, kwargs.get("verbose", "auto")
        )
        check_epochs(epochs)
        check_data_given(x, "fit")
        if "callbacks" in kwargs:
            kwargs["callbacks"] = callback_list(kwargs["callbacks"])
        validation_weights = None
        if kwargs.get("validation_split") and (_is_raw_text(x) or isinstance(x, TextData)):
            if validation_data is not None:
                raise ValueError(
                    "Got both `validation_data` and `validation_split`. Give one: "
                    "`validation_split` holds out the last texts of `x`."
                )
            x = columns_as_pairs(x)  # (texts_a, texts_b): count pairs, not columns
            x, y, validation_data, kwargs["sample_weight"], validation_weights = _split_off_validation(
                x, y, kwargs.pop("validation_split"), kwargs.get("sample_weight")
            )
        if distributed.initialize():
            seed = distributed.broadcast_seed(seed)  # one batch order on every process
        self._compile_if_uncompiled(for_fit=True)
        self._check_optimizer_knows_variables()
        check_rate_callbacks(self.optimizer, kwargs.get("callbacks"))
        lora_lib.reseed_adapters(self)
        distributed.sync_model(self)
        if stop_on_nan and not any(isinstance(c, StopOnNaN) for c in kwargs.get("callbacks") or []):
            kwargs["callbacks"] = _add_callbacks(kwargs.get("callbacks"), StopOnNaN())
        validated = ValidationEpochs()
        kwargs["callbacks"] = _add_callbacks(kwargs.get("callbacks"), validated)
        data, y = self._as_batches(x, y, batch_size, shuffle=shuffle, seed=seed)
        if _attach_sample_weight(data, kwargs.get("sample_weight")):
            del kwargs["sample_weight"]
        if y is not None and not isinstance(data, keras.utils.PyDataset):
            y = self._check_array_labels(y)
        if kwargs.get("class_weight") is not None:
            kwargs["class_weight"] = self._class_weight_by_id(kwargs["class_weight"])
        if kwargs.get("validation_split") and isinstance(data, keras.utils.PyDataset):
            raise ValueError(
                f"`validation_split` cannot split this {type(x).__name__}: it splits raw "
                "texts (a list, an array or a TextData) and arrays. Pass "
                "`validation_data=` instead (the `take` and `split` of kt.datasets' "
                "data objects make one)."
            )
        if isinstance(data, TextBatches):
            if data.labels is None:
                raise no_labels_error("fit")
            batch_size = None
            distributed.check_batch_size(data.batch_size)
        validation_data = self._validation_batches(validation_data, batch_size)
        if validation_weights is not None:
            _attach_sample_weight(validation_data, validation_weights)
        steps = kwargs.get("steps_per_epoch") or _length(data, batch_size)
        _check_accumulation(self.optimizer, steps, _epochs_to_run(epochs, kwargs))
        cache = self._should_cache(cache_features, data, validation_data, kwargs)
        # Under torchrun only rank 0 shows progress and runs writer callbacks.
        kwargs = distributed.main_process_kwargs(kwargs)
        if isinstance(data, TextBatches) and kwargs.get("verbose", "auto"):
            print(_describe_batches(data))
        if cache:
            limit = FEATURE_CACHE_MEMORY_LIMIT if cache_memory_limit is None else cache_memory_limit
            with _FeatureStorage(limit, cache_dir) as storage:
                history = self._fit_on_cached_features(data, epochs, validation_data, steps, kwargs, storage)
                return validated.note(history)
        self._size_schedule(steps * _epochs_to_run(epochs, kwargs) if steps else None)
        if isinstance(data, TextBatches):
            # TextBatches shuffles itself, as a pure function of (seed,
            # epoch); Keras' own shuffle would add Python's global RNG.
            kwargs["callbacks"] = _add_callbacks(kwargs.get("callbacks"), _EpochOrder(data))
            shuffle = False
            # Under torchrun each process takes its rows of every batch.
            data = distributed.shard(data)
        if isinstance(validation_data, TextBatches):
            validation_data = distributed.shard(validation_data)
        with _explaining_text_in_batches():
            history = super().fit(
                data,
                y,
                batch_size=batch_size,
                epochs=epochs,
                validation_data=validation_data,
                shuffle=shuffle,
                **kwargs,
            )
        return validated.note(history)

    # Feature caching ----------------------------------------------------------

    #: Name of the layer whose output is cached; the layers after it form a
    #: plain chain (the head). Subclasses that support caching set it.
    feature_layer = None

    def _head_layers(self):
        """The layers after `feature_layer`, in order."""
        names = [layer.name for layer in self.layers]
        return self.layers[names.index(self.feature_layer) + 1 :]

    def _should_cache(self, cache_features, data, validation_data, kwargs):
        reasons = []
        if self.feature_layer is None:
            reasons.append(f"{type(self).__name__} has no cacheable feature layer")
        if self.backbone is None or self.backbone.trainable_weights:
            reasons.append("the backbone is not frozen")
        if not isinstance(data, TextBatches):
            reasons.append("the training data is not raw text")
        if validation_data is not None and not isinstance(validation_data, TextBatches):
            reasons.append("the validation data is not raw text")
        if kwargs.get("steps_per_epoch") or kwargs.get("validation_split"):
            reasons.append("steps_per_epoch/validation_split are set")
        savers = [
            type(c).__name__
            for c in kwargs.get("callbacks") or []
            if not isinstance(c, _HEAD_ONLY_CALLBACKS)
        ]
        if savers:
            reasons.append(f"callbacks {savers} need the whole model")
        if cache_features is True and reasons:
            raise ValueError(
                "cache_features=True, but features cannot be cached: "
                + "; ".join(reasons)
                + ". Use cache_features='auto' or False."
            )
        return cache_features is not False and not reasons

    def _features(self, batches, verbose, storage):
        """The feature layer's output for every example, in input order, in `storage`."""
        trunk = keras.Model(self.inputs, self.get_layer(self.feature_layer).output)
        # Under torchrun each process computes 1/N of them; all get all.
        return distributed.sharded_features(lambda part: _features_in_order(trunk, part, verbose, storage), batches)

    def _fit_on_cached_features(self, data, epochs, validation_data, steps, kwargs, storage):
        verbose = kwargs.get("verbose", "auto")
        if verbose:
            plan = _feature_plan(data)
            # The validation texts get a second progress bar: say what it is.
            then = ""
            if validation_data is not None:
                count = len(validation_data.packed)
                then = f", then for the {counted(count, 'validation text')}"
            print(
                f"Frozen backbone: computing its features once for {counted(len(data.packed), 'text')}, "
                f"in {counted(len(plan), 'batch', 'batches')} sorted by length "
                f"({padding_share(data.lengths, plan):.1%} padding){then}."
            )
        x = self._features(data, verbose, storage)
        validation = None
        if validation_data is not None:
            # Batches that read the cached rows (Keras would copy arrays whole).
            features = self._features(validation_data, verbose, storage)
            validation = distributed.shard(_FeatureBatches(features, validation_data))
        # The head: the same layer objects (so the same weights) on a new input.
        features_in = keras.Input(shape=x.shape[1:], name="features")
        out = features_in
        for layer in self._head_layers():
            out = layer(out)
        head = distributed.DataParallelModel(features_in, out, name=f"{self.name}_head")
        compiled = self._compiled_with
        head.compile(
            optimizer=self.optimizer,
            loss=compiled["loss"],
            metrics=_fresh_metrics(compiled["metrics"]),
            weighted_metrics=_fresh_metrics(compiled.get("weighted_metrics")),
            loss_weights=compiled.get("loss_weights"),
        )
        self._size_schedule(steps * _epochs_to_run(epochs, kwargs) if steps else None)
        # The same batches, in the same order, as training on the texts.
        batches = distributed.shard(_FeatureBatches(x, data))
        # `model.stop_training = True` (from a callback holding the model)
        # stops the head's fit, as it stops Keras' on the model itself.
        self.stop_training = False
        kwargs["callbacks"] = _add_callbacks(kwargs.get("callbacks"), _EpochOrder(data), _StopWith(self))
        history = head.fit(
            batches,
            epochs=epochs,
            validation_data=validation,
            shuffle=False,
            **kwargs,
        )
        # As after Keras' fit, `stop_training` says whether a callback stopped it.
        self.stop_training = head.stop_training
        self.history = history
        return history

    def _validation_batches(self, validation_data, batch_size):
        if validation_data is None or isinstance(validation_data, keras.utils.PyDataset):
            return validation_data
        weights = None
        if _is_text_data(validation_data):
            batches = self._as_batches(validation_data, None, batch_size, False, "validation_data")[0]
        elif _is_texts_and_labels(validation_data):
            texts, labels, *weights = validation_data
            batches = self._as_batches(texts, labels, batch_size, False, "validation_data")[0]
        elif _is_raw_text(validation_data) or (
            isinstance(validation_data, tuple) and len(validation_data) == 1 and _is_raw_text(validation_data[0])
        ):
            raise _validation_without_labels()
        else:
            return validation_data
        if isinstance(batches, TextBatches):
            if batches.labels is None:
                raise _validation_without_labels()
            if weights:
                _attach_sample_weight(batches, weights[0])
        return batches

    def evaluate(self, x=None, y=None, batch_size=None, **kwargs):
        """Evaluates on raw texts, a `TextData` or anything Keras accepts.

        Returns what `keras.Model.evaluate` returns; pass
        `return_dict=True` for a `{"loss": …, "accuracy": …}` dictionary.
        A model never compiled is compiled with `compile()`'s defaults
        first, as `fit` does.
        """
        distributed.initialize()
        check_data_given(x, "evaluate")
        data, y = self._as_batches(x, y, batch_size, shuffle=False)
        if _attach_sample_weight(data, kwargs.get("sample_weight")):
            del kwargs["sample_weight"]
        if y is not None and not isinstance(data, keras.utils.PyDataset):
            y = self._check_array_labels(y)
        if isinstance(data, TextBatches):
            if data.labels is None:
                raise ValueError(
                    "`evaluate` got texts but no labels. Pass them as `y`, or give a "
                    "TextData with labels. (`predict` takes texts alone.)"
                )
            batch_size = None
            # Under torchrun each process evaluates its rows; metrics are summed.
            data = distributed.shard(data)
        kwargs = distributed.main_process_kwargs(kwargs)
        self._compile_if_uncompiled(for_fit=False)
        with _explaining_text_in_batches():
            return super().evaluate(data, y, batch_size=batch_size, **kwargs)

    def predict(self, x, batch_size=None, **kwargs):
        """Predicts on raw texts (in their order) or anything Keras accepts.

        Outputs a bfloat16 model computes come back as float32 arrays (the
        same values): NumPy has no bfloat16 of its own, and torch, pandas
        and scikit-learn do not read `ml_dtypes.bfloat16` arrays.
        """
        check_data_given(x, "predict")
        if _is_text_data(x):
            x = x.texts
        data, _ = self._as_batches(x, None, batch_size, shuffle=False)
        kwargs = distributed.main_process_kwargs(kwargs)
        if not isinstance(data, TextBatches):
            with _explaining_text_in_batches():
                outputs = super().predict(data, batch_size=batch_size, **kwargs)
        else:
            outputs = _predict_in_order(super(), data, **kwargs)
        return keras.tree.map_structure(_as_standard_float, outputs)

    # Display and saving -----------------------------------------------------

    def summary(self, *args, show_trainable=True, print_fn=None, **kwargs):
        """Keras' summary with a trainable column, then what is frozen."""
        super().summary(*args, show_trainable=show_trainable, print_fn=print_fn, **kwargs)
        print_fn = print_fn or print
        for line in self.describe_freezing():
            print_fn(line)

    def describe_freezing(self):
        """Lines saying which parts of the model train and which are frozen."""
        lines = []
        trainable, frozen = freezing.count_params(self)
        lines.append(f"Trains: {trainable:,} parameters · Frozen: {frozen:,} parameters")
        if self.backbone is not None:
            lines.append(f"Backbone {type(self.backbone).__name__}: {freezing.describe(self.backbone)}")
            if lora_lib.describe(self.backbone):
                lines.append(lora_lib.describe(self.backbone))
        if self.preprocessor is not None:
            p = self.preprocessor
            lines.append(
                f"Preprocessor: {type(p.tokenizer).__name__}, vocabulary "
                f"{p.tokenizer.vocabulary_size():,}, sequence_length "
                f"{p.sequence_length}, truncation {p.truncation!r}"
            )
        return lines

    def save(self, filepath, overwrite=True, **kwargs):
        """Saves to a `.keras` file, atomically.

        The model is written to a temporary file beside `filepath` and
        renamed over it only once complete, so a save killed half-way never
        replaces a good file with a broken one. Under torchrun only rank 0
        writes; on the other processes `save` returns at once.
        """
        return distributed.save_on_main_process(lambda: self._save_here(filepath, overwrite, **kwargs))

    def _save_here(self, filepath, overwrite=True, **kwargs):
        if not isinstance(filepath, (str, os.PathLike)):
            check_output_path(filepath, "the model")  # raises: not a path
        path = os.fspath(filepath)
        if not path.endswith(".keras"):
            if path.endswith((".h5", ".hdf5")):
                raise ValueError(
                    f"Cannot save to {path!r}: a keras_transfer model saves to a `.keras` file, "
                    "which `kt.load_model` reads back with its tokenizer, label names and frozen "
                    "state (legacy HDF5 keeps none of them). Use a `.keras` path, or "
                    "`save_weights('….weights.h5')` for the weights alone."
                )
            return super().save(filepath, overwrite=overwrite, **kwargs)
        if os.path.exists(path) and not overwrite:
            raise FileExistsError(f"{path!r} exists; pass overwrite=True to replace it.")
        check_output_path(path, "the model")
        folder, name = os.path.split(os.path.abspath(path))
        partial = os.path.join(folder, f".{name}.partial-{os.getpid()}.keras")
        try:
            super().save(partial, overwrite=True, **kwargs)
            os.replace(partial, path)
        finally:
            if os.path.exists(partial):
                os.remove(partial)

    def get_config(self):
        return {
            "name": self.name,
            "trainable": self.trainable,
            # The model's own policy, so that Keras' global one at load time
            # does not replace it: under "mixed_float16" Keras would wrap the
            # reloaded optimizer in a LossScaleOptimizer and drop its state.
            "dtype": keras.dtype_policies.serialize(self.dtype_policy),
            "backbone": keras.layers.serialize(self.backbone),
            "preprocessor": keras.layers.serialize(self.preprocessor) if self.preprocessor else None,
            "frozen_state": freezing.frozen_state(self),
            **({"lora": lora_lib.lora_config(self)} if lora_lib.lora_config(self) else {}),
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        for key in ("backbone", "preprocessor"):
            if isinstance(config.get(key), dict):
                config[key] = keras.layers.deserialize(config[key])
        # Built uncompiled: Keras' loading then compiles it from the saved
        # compile config when there is one and `compile=True`. Compiling
        # here with the defaults would make `load_model(..., compile=False)`
        # and a model saved uncompiled come back compiled, with an
        # optimizer the saved state does not match.
        return cls(**config, compile=False)


# A task model nested in another model reports `Trainer.metrics` too.
layer_walk.allow_metrics(Task.__dict__["metrics"])

class ValidationEpochs(keras.callbacks.Callback):
    """Records which epochs were validated, for `kt.plot_history`.

    With `validation_freq`, Keras validates some epochs only, and its
    History lists their `val_` values without saying which epochs they
    belong to. `fit` adds this callback and `note` sets the record on the
    History it returns as `validation_epochs`: the 1-based numbers of the
    epochs whose logs hold validation results (`history.history` itself
    stays as Keras makes it).
    """

    def __init__(self):
        super().__init__()
        self.epochs = []

    def on_train_begin(self, logs=None):
        self.epochs = []

    def on_epoch_end(self, epoch, logs=None):
        if any(key.startswith("val_") for key in logs or {}):
            self.epochs.append(epoch + 1)

    def note(self, history):
        """`history`, with `validation_epochs` set; returned for `return`."""
        if isinstance(history, keras.callbacks.History):
            history.validation_epochs = list(self.epochs)
        return history


_HEAD_ONLY_CALLBACKS = (
    ValidationEpochs,
    keras.callbacks.EarlyStopping,
    keras.callbacks.History,
    keras.callbacks.ProgbarLogger,
    keras.callbacks.CSVLogger,
    keras.callbacks.TerminateOnNaN,
    keras.callbacks.ReduceLROnPlateau,
    keras.callbacks.LearningRateScheduler,
    keras.callbacks.LambdaCallback,
    StopOnNaN,
    BackupAndRestore,  # backs up the head and its optimizer: resumes the same
    LearningRateLogger,
    lr_finder._Sweep,
)


class _StopWith(keras.callbacks.Callback):
    """Stops the head's fit on cached features when the task model's
    `stop_training` is set (callbacks see the head as `self.model`, but a
    `LambdaCallback` or closure may hold the task model itself)."""

    def __init__(self, task):
        super().__init__()
        self.task = task

    def _copy(self):
        if self.task.stop_training:
            self.model.stop_training = True

    def on_train_batch_end(self, batch, logs=None):
        self._copy()

    def on_epoch_end(self, epoch, logs=None):
        self._copy()


class _EpochOrder(keras.callbacks.Callback):
    """Serves epoch `e` the batch order of `(seed, e)`, resumed runs included."""

    def __init__(self, batches):
        super().__init__()
        self.batches = batches

    def on_epoch_begin(self, epoch, logs=None):
        self.batches.set_epoch(epoch)


class _FeatureBatches(keras.utils.PyDataset):
    """Cached features in the batches (and order) of a `TextBatches`."""

    def __init__(self, features, text_batches):
        super().__init__()
        self.features = features
        self.text_batches = text_batches

    def __len__(self):
        return len(self.text_batches)

    def __getitem__(self, index):
        rows = self.text_batches._batches[index]
        weights = self.text_batches.sample_weight
        if weights is not None:
            return self.features[rows], self.text_batches.labels[rows], weights[rows]
        return self.features[rows], self.text_batches.labels[rows]


def _mark_weightless_layers_built(layer):
    """Marks a preprocessor and its tokenizer built: they have no weights.

    Keras traces the whole model symbolically again at every
    `train_on_batch`, `test_on_batch` and `evaluate` call while any layer it
    tracks is unbuilt, which cost about 150 ms per call with MiniLM.
    """
    if not isinstance(layer, keras.layers.Layer):
        return
    for sub in layer._flatten_layers(include_self=True, recursive=True):
        if not sub.built and not sub.weights:
            sub.built = True


#: What `keras.Model`'s functional constructor takes, beside a task's own
#: arguments (it silently drops anything else).
_MODEL_ARGUMENTS = {"inputs", "outputs", "name", "trainable", "dtype"}


def _check_keyword_arguments(cls, kwargs, from_preset=False):
    """Raises a `TypeError` naming an argument `cls` does not take (Keras'
    functional `Model` would ignore it: a misspelt `droput=0.5` would leave
    the dropout at its default)."""
    def parameters(method_name):
        names = set()
        for klass in cls.__mro__:
            if klass is Task:
                break
            method = klass.__dict__.get(method_name)
            method = getattr(method, "__func__", method)
            if method is not None:
                names |= set(inspect.signature(method).parameters) - {"self", "cls", "kwargs"}
        return names

    constructor = parameters("__init__") | {"name"}
    preset_only = parameters("from_preset") - constructor - {"preset"}
    # From `from_preset` every argument is known; built from a backbone,
    # `from_preset`'s own (freeze, sequence_length, …) are not.
    known = constructor | preset_only if from_preset else constructor
    unknown = sorted(set(kwargs) - _MODEL_ARGUMENTS - known)
    if not unknown:
        return
    hints = []
    for name in unknown:
        if name in preset_only:
            hints.append(
                f"{name!r} (an argument of `{cls.__name__}.from_preset`; built from a "
                f"backbone, {_PRESET_ONLY_ADVICE.get(name, 'set it on the backbone or preprocessor')})"
            )
            continue
        close = difflib.get_close_matches(name, sorted(known), n=1)
        hints.append(f"{name!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
    raise TypeError(
        f"{cls.__name__} got unexpected keyword argument{'s' if len(unknown) > 1 else ''} "
        f"{', '.join(hints)}. It takes: {', '.join(sorted(known))}."
    )


#: What to do instead of a `from_preset` argument given to a constructor.
_PRESET_ONLY_ADVICE = {
    "freeze": "call `kt.freeze(model)` or `kt.unfreeze(model, top=N)` after building it",
    "sequence_length": "pass it to `kt.load_backbone(preset, sequence_length=...)`",
    "truncation": "pass it to `kt.load_backbone(preset, truncation=...)`",
    "load_weights": "pass it to `kt.load_backbone(preset, load_weights=...)`",
}


@contextlib.contextmanager
def _explaining_text_in_batches():
    """Turns Keras' `Invalid dtype: str…` (a dataset or generator that
    yields raw text, which Keras cannot make tensors of) into advice."""
    try:
        yield
    except ValueError as error:
        if not str(error).startswith(("Invalid dtype: str", "Invalid dtype: <U", "Invalid dtype: object")):
            raise
        raise ValueError(
            "A batch of your data holds text (or other Python objects) where the model "
            "takes numbers: token ids as inputs, class ids as labels. Give raw texts and "
            "labels to `fit`, `evaluate` and `predict` directly (lists, arrays or a "
            "TextData: they are tokenized, checked and batched for you), or have your "
            "dataset yield `model.preprocessor(texts)` and numeric labels."
        ) from error


def _attach_sample_weight(data, weights):
    """Gives the `TextBatches` `data` one weight per text, served with its
    batches (Keras takes no `sample_weight` beside a dataset); returns
    whether it did. Arrays and `None` weights are left to Keras."""
    if weights is None or not isinstance(data, keras.utils.PyDataset):
        return False
    if not isinstance(data, TextBatches) or type(data).__getitem__ is not TextBatches.__getitem__:
        raise ValueError(
            f"`sample_weight` cannot go with this {type(data).__name__}: give it with raw "
            "texts of a sentence-level task (one weight per text), or make a dataset that "
            "returns `(inputs, labels, weights)` batches."
        )
    try:
        weights = np.asarray(weights, dtype="float32")
    except (TypeError, ValueError):
        raise ValueError(
            f"Expected `sample_weight` to be one number per text. Received: {_describe(weights, 80)}"
        ) from None
    if weights.ndim != 1 or len(weights) != len(data.packed):
        raise ValueError(
            f"Expected `sample_weight` to hold one number per text ({len(data.packed)}). "
            f"Received shape {weights.shape}."
        )
    if not np.all(np.isfinite(weights)) or np.any(weights < 0):
        index = int(np.flatnonzero(~np.isfinite(weights) | (weights < 0))[0])
        raise ValueError(
            f"`sample_weight[{index}]` is {weights[index]}: weights must be finite and 0 or more."
        )
    data.sample_weight = weights
    return True


def validation_cut(n, split):
    """Where `validation_split` cuts `n` examples: the first `cut` train,
    the rest validate (Keras' rule for arrays)."""
    if isinstance(split, bool) or not isinstance(split, (int, float, np.floating)) or not 0 < split < 1:
        raise ValueError(
            "Expected `validation_split` to be a share of the texts, a float between 0 and 1 "
            f"(exclusive), e.g. 0.2. Received: validation_split={split!r}"
        )
    return int(math.floor(n * (1.0 - split)))


def _validation_without_labels():
    return ValueError(
        "`validation_data` holds texts but no labels. Give `(texts, labels)` "
        "or a TextData with labels."
    )


def check_data_given(x, call):
    """Refuses `x=None` where the user passed it (Keras would fail inside
    its data adapter with "pop from an empty set", or the model on a
    missing input), with what to give instead."""
    if x is None:
        labels = "" if call == "predict" else ", with their labels as `y`"
        raise ValueError(
            f"`{call}` got no data: `x` is None. Give the texts as `x` (a list of "
            f"strings, or a kt.datasets data object){labels}."
        )


def check_epochs(epochs):
    """Refuses a number of epochs Keras would not train on as asked: a
    negative count trains nothing without a word, a float fails deep in
    Keras' loop. `0` stays allowed (Keras' no-op, e.g. for a resumed run
    that has nothing left)."""
    if isinstance(epochs, bool) or not isinstance(epochs, (int, np.integer)) or epochs < 0:
        raise ValueError(
            "Expected `epochs` to be the number of passes over the data: a whole number "
            f"(0 or more; 1 trains once). Received: epochs={epochs!r}"
        )


def check_one_label_per_text(y, name):
    """Refuses one value (`fit(texts, 1)`, `fit(texts, "pos")`) given for a
    list of labels: a string would be split into its characters, a number
    fails with "object is not iterable"."""
    if isinstance(y, (str, bytes, int, float, np.generic)) or (isinstance(y, np.ndarray) and y.ndim == 0):
        raise ValueError(
            f"Expected one label per text in `{name}`. Received a single value: {y!r}. "
            "Give a list with one label per text (`[label] * len(texts)` if they all share it)."
        )


def no_labels_error(call):
    """The error for texts given to `call` (`fit`, `fine_tune`) without labels."""
    return ValueError(
        f"`{call}` got texts but no labels. Pass them as `y`, or give "
        "a TextData with labels (for example from kt.datasets)."
    )


def _split_off_validation(x, y, split, sample_weight=None):
    """`(x, y, sample_weight)` without their last `split` share, that share
    as validation data, and its weights, cut where Keras'
    `validation_split` cuts arrays (weights go with their texts)."""
    n = len(x)
    at = validation_cut(n, split)
    if at in (0, n):
        raise ValueError(
            f"`validation_split={split}` of {counted(n, 'text')} leaves "
            f"{'no texts to train on' if at == 0 else 'no texts to validate on'}. "
            "Use a share that keeps both parts non-empty, or pass `validation_data`."
        )
    weights = None
    if sample_weight is not None:
        weights = np.asarray(sample_weight)
        if weights.ndim != 1 or len(weights) != n:
            raise ValueError(
                f"Expected `sample_weight` to hold one number per text ({n}). Received shape {weights.shape}."
            )
    train_weights = None if weights is None else weights[:at]
    if isinstance(x, TextData):
        if y is not None:
            raise ValueError("`x` is a TextData that already holds its labels; do not pass `y` as well.")
        return x[:at], None, x[at:], train_weights, None if weights is None else weights[at:]
    if y is None:
        raise no_labels_error("fit")
    if len(y) != n:
        raise ValueError(f"Got {counted(n, 'text')} but {counted(len(y), 'label')}. Give exactly one label per text.")
    return x[:at], y[:at], (x[at:], y[at:]), train_weights, None if weights is None else weights[at:]


def _fresh_metrics(spec):
    """A `metrics` argument like `spec` for the head on cached features: new
    metric objects (the head keeps its own state) and names such as
    `"accuracy"` or `"mae"` left for `compile` to resolve, from the loss
    and the outputs, and name, as it did for the whole model."""
    if spec is None:
        return None

    def fresh(metric):
        if isinstance(metric, keras.metrics.Metric):
            return type(metric).from_config(metric.get_config())
        return metric

    return keras.tree.map_structure(fresh, spec)


#: Callbacks that set the optimizer's learning rate.
_RATE_SETTING_CALLBACKS = (keras.callbacks.ReduceLROnPlateau, keras.callbacks.LearningRateScheduler)


def check_rate_callbacks(optimizer, callbacks):
    """Refuses, before any training, a callback (in `callbacks`, a list as
    `callback_list` makes it) that sets the learning rate of an optimizer
    that follows a schedule (`compile()`'s default: linear warmup and
    decay). Keras raises only when the callback first sets it:
    `LearningRateScheduler` at the first epoch, after the features are
    computed; `ReduceLROnPlateau` after `patience` epochs without progress,
    losing the rest of the run."""
    schedule = getattr(_inner_optimizer(optimizer), "_learning_rate", None)
    if not isinstance(schedule, keras.optimizers.schedules.LearningRateSchedule):
        return
    setters = [
        type(c).__name__ for c in callbacks or []
        if isinstance(c, _RATE_SETTING_CALLBACKS)
    ]
    if not setters:
        return
    default = getattr(schedule, "sized_by_fit", False)
    raise ValueError(
        f"`{setters[0]}` sets the optimizer's learning rate, but this optimizer follows "
        f"a schedule ({type(schedule).__name__}"
        + (", `compile()`'s default: linear warmup, then linear decay to zero over each fit" if default else "")
        + "), whose rate cannot be set: Keras would raise a TypeError when the callback "
        "first changes it, part-way through training. Either leave the callback out (the "
        "schedule already lowers the rate), or compile with a fixed rate for it to adjust: "
        "`model.compile(optimizer=keras.optimizers.AdamW(learning_rate=1e-3, weight_decay=0.01))`."
    )


def _is_texts_and_labels(data):
    """Whether `validation_data` is `(texts, labels[, weights])`: a tuple, or
    a list as Keras also takes (`[x_val, y_val]`), whose first item holds
    texts (a list of two texts or of one pair is not taken for one)."""
    if not isinstance(data, (tuple, list)) or len(data) not in (2, 3) or not _is_raw_text(data[0]):
        return False
    first = data[0]
    return isinstance(data, tuple) or not (
        isinstance(first, str) or (isinstance(first, tuple) and all(isinstance(t, str) for t in first))
    )


def callback_list(callbacks):
    """`fit`'s `callbacks` as a new list: a `keras.callbacks.CallbackList`
    (which Keras' `fit` takes too) gives its callbacks, so that the ones
    `fit` adds neither fail (it has no `append`) nor stay in the user's
    object for the next `fit`."""
    if isinstance(callbacks, keras.callbacks.CallbackList):
        return list(callbacks.callbacks)
    if isinstance(callbacks, keras.callbacks.Callback):
        return [callbacks]  # one callback alone, as Keras' `fit` takes it
    if callbacks is not None and not isinstance(callbacks, (list, tuple)):
        raise ValueError(
            "Expected `callbacks` to be a list of Keras callbacks. "
            f"Received: callbacks={_describe(callbacks, 80)}"
        )
    for index, callback in enumerate(callbacks or []):
        # Checked here: Keras would fail at the first batch, deep in its
        # CallbackList, after the features are computed.
        if not isinstance(callback, keras.callbacks.Callback):
            hint = f" (a class: make one with `{callback.__name__}()`)" if isinstance(callback, type) else ""
            raise ValueError(
                f"`callbacks[{index}]` is {_describe(callback, 80)}{hint}, not a Keras callback. "
                "Give instances of `keras.callbacks.Callback`, e.g. "
                "`callbacks=[keras.callbacks.EarlyStopping(patience=2)]`."
            )
    return list(callbacks or [])


def _add_callbacks(callbacks, *extra):
    return callback_list(callbacks) + list(extra)


class _FeatureStorage:
    """Arrays for cached features: in memory up to `limit` bytes in all,
    then memory-mapped files in a temporary directory under `directory`,
    removed (with the files) when the `with` block ends."""

    def __init__(self, limit, directory):
        self.limit = limit
        self.directory = directory
        self.in_memory = 0
        self._spill = None

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        if self._spill is not None:
            self._spill.cleanup()
            self._spill = None

    def empty(self, shape, dtype):
        """An uninitialized array of `shape` and `dtype`."""
        dtype = np.dtype(dtype)
        size = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        if self.in_memory + size <= self.limit:
            self.in_memory += size
            return np.empty(shape, dtype)
        if self._spill is None:
            self._spill = tempfile.TemporaryDirectory(
                prefix="kt-features-", dir=self.directory, ignore_cleanup_errors=True
            )
        handle, path = tempfile.mkstemp(suffix=".npy", dir=self._spill.name)
        os.close(handle)
        return np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=tuple(shape))

    @property
    def spilled(self):
        """Whether some features went to a file."""
        return self._spill is not None


def _epochs_to_run(epochs, kwargs):
    """The epochs this `fit` runs: from `initial_epoch` (Keras' argument,
    for going on with a run) to `epochs`, which is an epoch number, not a
    count. Each `fit` stretches the default schedule over its own steps."""
    return max(epochs - (kwargs.get("initial_epoch") or 0), 0)


def _check_accumulation(optimizer, steps, epochs):
    """Refuses a `fit` whose batches are too few for one accumulated update
    (Keras would run it and change no weight, without a word)."""
    optimizer = _inner_optimizer(optimizer)
    every = getattr(optimizer, "gradient_accumulation_steps", None)
    if not every or not steps or not isinstance(epochs, int) or epochs < 1:
        return
    pending = int(optimizer._iterations.numpy()) % every if hasattr(optimizer, "_iterations") else 0
    if pending + steps * epochs < every:
        raise ValueError(
            f"This fit has {counted(steps * epochs, 'batch', 'batches')} in all, but the "
            f"optimizer updates the weights once every {every} batches "
            f"(gradient_accumulation_steps={every}): no weight would change. Use a smaller "
            "`gradient_accumulation_steps` or `batch_size`, or more data or epochs."
        )


def check_flag(name, value):
    """Refuses a True/False argument given as anything else: a string such
    as "no" is true to Python, so it would silently mean True."""
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"Expected `{name}` to be True or False. Received: {name}={value!r}")


def check_verbose(verbose):
    """Refuses a `verbose` Keras does not know: its progress bar shows
    nothing for any value but "auto", 0, 1 and 2, while `fit` still
    prints its own lines for any true one."""
    known = (isinstance(verbose, str) and verbose == "auto") or (
        isinstance(verbose, (int, np.integer)) and verbose in (0, 1, 2)
    )
    if not known:
        raise ValueError(
            "Expected `verbose` to be 'auto', 0 (silent), 1 (a progress bar) or 2 "
            f"(one line per epoch). Received: verbose={verbose!r}"
        )


def check_fit_arguments(cache_features, stop_on_nan, cache_memory_limit, cache_dir, shuffle=True, verbose="auto"):
    """Checks the arguments `Task.fit` adds to Keras' (each task's `fit`),
    and the flags of Keras' own that `fit` reads itself (`shuffle` picks
    how the texts are batched, `verbose` whether `fit` prints)."""
    check_flag("shuffle", shuffle)
    check_verbose(verbose)
    if not (cache_features is True or cache_features is False or (isinstance(cache_features, str) and cache_features == "auto")):
        raise ValueError(
            "Expected `cache_features` to be 'auto', True or False. "
            f"Received: cache_features={cache_features!r}"
        )
    if not isinstance(stop_on_nan, bool):
        raise ValueError(
            f"Expected `stop_on_nan` to be True or False. Received: stop_on_nan={stop_on_nan!r}"
        )
    _check_cache_storage(cache_memory_limit, cache_dir)


def _check_cache_storage(limit, directory):
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, (int, np.integer)) or limit < 0):
        raise ValueError(
            "Expected `cache_memory_limit` to be a number of bytes (an integer, 0 or more) or None. "
            f"Received: cache_memory_limit={limit!r}"
        )
    if directory is not None:
        if not isinstance(directory, (str, os.PathLike)):
            raise ValueError(
                f"Expected `cache_dir` to be a directory path or None. Received: cache_dir={directory!r}"
            )
        if not os.path.isdir(directory):
            raise ValueError(
                f"`cache_dir` {os.fspath(directory)!r} is not an existing directory. "
                "Create it first, or leave `cache_dir` unset for the system's temporary directory."
            )


def _describe_batches(batches):
    """One line on how `fit` batches the texts, with the share of padding."""
    grouped = "grouped by length and " if batches.bucketing else ""
    return (
        f"{counted(len(batches.packed), 'text')} in {counted(len(batches), 'batch', 'batches')} "
        f"of up to {batches.batch_size}, "
        f"{grouped}padded to each batch's longest: {batches.padding_share():.1%} of the "
        "token positions are padding."
    )


def _out_of_memory(error):
    """Whether `error` says the device ran out of memory."""
    text = str(error)
    return isinstance(error, torch.cuda.OutOfMemoryError) or "out of memory" in text or "ALLOC_FAILED" in text


def _device_type():
    return torch.device(get_device()).type


def _feature_plan(batches):
    """The batches of a frozen backbone's feature pass: sorted by length,
    `FEATURE_PASS_TOKENS` positions each on a device that has an entry."""
    return batches.by_length(max_tokens=FEATURE_PASS_TOKENS.get(_device_type()))


def _features_in_order(model, batches, verbose, storage):
    """`model`'s output for each example of `batches`, in input order, in an
    array from `storage`, written one batch at a time (no list of batch
    outputs, concatenation or reordering copy, as `predict` would make).

    The examples go through in batches sorted by exact length
    (`_feature_plan`): a frozen backbone in inference mode gives an
    example the same features whatever shares its batch (to float
    rounding), so the pass pads as little as it can (on IMDB at length
    256, under 1% of the positions against about 5% in a training epoch's
    batches, which mix lengths on purpose). A batch that runs out of
    device memory is split in two, and so is every later batch above half
    its size.
    """
    pending = collections.deque(_feature_plan(batches))
    progress = None
    if verbose:
        progress = keras.utils.Progbar(
            len(batches.packed), verbose=1 if verbose == "auto" else verbose, unit_name="text"
        )
    features = None
    done = 0
    most = None  # the most examples a batch may hold, once one ran out of memory
    while pending:
        rows = pending.popleft()
        if most is not None and len(rows) > most:
            pending.extendleft(reversed(np.array_split(rows, -(-len(rows) // most))))
            continue
        try:
            outputs = keras.ops.convert_to_numpy(model.predict_on_batch(batches.collate(rows)))
        except RuntimeError as error:  # torch.cuda.OutOfMemoryError, or one from cuBLAS/cuDNN
            if len(rows) == 1 or not _out_of_memory(error):
                raise
            most = len(rows) // 2
            pending.appendleft(rows)
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            continue
        if features is None:
            features = storage.empty((len(batches.packed), *outputs.shape[1:]), outputs.dtype)
        features[rows] = outputs
        done += len(rows)
        if progress is not None:
            progress.update(done)
    return features


def _as_standard_float(array):
    if isinstance(array, np.ndarray) and array.dtype.name == "bfloat16":
        return array.astype("float32")
    return array


def _predict_in_order(model, batches, **kwargs):
    """`model.predict` over length-grouped batches, rows in input order."""
    # Read the batch plan first: Keras calls `on_epoch_end` after predicting,
    # which reshuffles a shuffling dataset.
    order = np.concatenate(batches._batches)
    outputs = model.predict(batches, **kwargs)
    restored = np.empty_like(outputs)
    restored[order] = outputs
    return restored


def _length(data, batch_size):
    try:
        n = len(data)
    except TypeError:
        return None
    if isinstance(data, (keras.utils.PyDataset,)):
        return n
    if isinstance(data, dict):
        n = len(next(iter(data.values())))
    return -(-n // (batch_size or DEFAULT_BATCH_SIZE))
