"""Text regression: one or more real numbers per text (ratings, scores).

The head is linear. By default the targets are standardised: at the first
`fit` the model learns their mean and standard deviation and its last layer
maps the head's output `z` to `mean + std * z`, so the head learns values
near 0 with spread 1 while the model predicts (and the loss and metrics
see) the original units. This matters on frozen backbones: with a
head-sized learning rate (3e-3) an unscaled head needs hundreds of steps
just to move its bias from 0 to a mean rating of 5.5.
"""

import keras
import numpy as np

from keras_transfer import freezing
from keras_transfer.backbones import DEFAULT_SEQUENCE_LENGTH
from keras_transfer.metrics.regression import PearsonCorrelation, regression_report
from keras_transfer.preprocessing import columns_as_pairs
from keras_transfer.tasks.base import Task, _is_raw_text, _is_text_data, check_flag, check_one_label_per_text, validation_cut
from keras_transfer.tasks.text_classifier import (
    _texts_and_labels,
    check_head_arguments,
    pooled_head,
    resolve_pooling,
    task_from_preset,
)


@keras.saving.register_keras_serializable(package="keras_transfer")
class TargetScaling(keras.layers.Layer):
    """Maps standardised values back to target units: `mean + std * x`.

    Args:
        mean: the targets' mean, one number or one per output. Defaults to
            `0.0`.
        std: their standard deviation, one number or one per output.
            Defaults to `1.0`.
    """

    def __init__(self, mean=0.0, std=1.0, **kwargs):
        super().__init__(**kwargs)
        self.mean = mean
        self.std = std

    def call(self, x):
        mean = keras.ops.convert_to_tensor(self.mean, dtype=x.dtype)
        std = keras.ops.convert_to_tensor(self.std, dtype=x.dtype)
        return x * std + mean

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update({"mean": self.mean, "std": self.std})
        return config


# Where a regressor's weights file keeps its target scale (see `save_own_variables`).
_SCALE_KEYS = ("target_mean", "target_std")


def _check_statistic(value, name, num_outputs, positive=False):
    if value is None:
        return None
    array = np.asarray(value, dtype="float64") if not isinstance(value, (str, bool)) else None
    if (
        array is None
        or array.ndim > 1
        or (array.ndim == 1 and len(array) != num_outputs)
        or not np.all(np.isfinite(array))
        or (positive and not np.all(array > 0))
    ):
        need = "positive " if positive else ""
        raise ValueError(
            f"Expected `{name}` to be a {need}finite number, or a list with one "
            f"per output ({num_outputs}). Received: {name}={value!r}"
        )
    return [float(v) for v in np.broadcast_to(array, (num_outputs,))]


@keras.saving.register_keras_serializable(package="keras_transfer")
class TextRegressor(Task):
    """A text regressor: backbone, pooling, a linear head, real outputs.

    `predict` returns an array `(texts, num_outputs)` in the targets' own
    units. The default loss is mean squared error (`compile(loss="huber")`
    or any Keras loss also works; the loss sees the original units, so
    Huber's `delta=1` means one unit of the target); the default metrics
    are MAE, RMSE and Pearson's correlation over the whole evaluated set
    (`kt.metrics.PearsonCorrelation`). `report(x, y)` adds Spearman's rank
    correlation and R².

    Args:
        backbone: a KerasHub backbone of a supported family.
        num_outputs: numbers predicted per text. Defaults to `1`.
        preprocessor: the `kt.TextPreprocessor` that lets the model read
            raw text. Defaults to `None` (token ids only).
        pooling: `"cls"`, `"pooled"`, `"mean"`, `"max"` or `"last"`.
            Defaults to the checkpoint's or the family's default.
        hidden_units: sizes of hidden GELU layers in the head. Defaults to
            `()`: a linear head.
        dropout: dropout before each Dense layer of the head. Defaults to
            `0.1`.
        standardize: learn the targets' mean and standard deviation at the
            first `fit` (unless given below) and predict
            `mean + std * head(x)`. Defaults to `True`.
        target_mean: the targets' mean (one number or one per output), if
            known in advance. Saved with the model. Defaults to `None`.
        target_std: their standard deviation, likewise. Defaults to `None`.
        compile: compile with the task defaults. Defaults to `True`.

    Example:
    ```python
    model = kt.TextRegressor.from_preset("bert_base_en_uncased")
    model.fit(["a masterpiece", "dull and long", "fine"], [9.0, 2.0, 6.0], epochs=3)
    model.predict(["quite good"])  # shape (1, 1), in rating units
    print(model.report(test_texts, test_ratings))  # MSE, MAE, Pearson, Spearman
    ```
    """

    feature_layer = "pooling"

    def __init__(
        self,
        backbone,
        num_outputs=1,
        preprocessor=None,
        pooling=None,
        hidden_units=(),
        dropout=0.1,
        standardize=True,
        target_mean=None,
        target_std=None,
        compile=True,
        **kwargs,
    ):
        check_flag("compile", compile)
        if isinstance(num_outputs, np.integer):
            num_outputs = int(num_outputs)
        if isinstance(num_outputs, bool) or not isinstance(num_outputs, int) or num_outputs < 1:
            raise ValueError(
                "Expected `num_outputs` to be a positive integer (numbers "
                f"predicted per text). Received: num_outputs={num_outputs!r}"
            )
        check_flag("standardize", standardize)
        standardize = bool(standardize)  # a NumPy bool too, stored (and saved) as Python's
        target_mean = _check_statistic(target_mean, "target_mean", num_outputs)
        target_std = _check_statistic(target_std, "target_std", num_outputs, positive=True)
        if not standardize and (target_mean is not None or target_std is not None):
            raise ValueError(
                "`target_mean` and `target_std` scale the outputs only with "
                "standardize=True; drop them or set standardize=True."
            )
        if (target_mean is None) != (target_std is None):
            raise ValueError("Give both `target_mean` and `target_std`, or neither (they are then learned at `fit`).")
        hidden_units = check_head_arguments(hidden_units, dropout)
        pooling = resolve_pooling(backbone, pooling)

        # === Functional graph ===
        inputs, head = pooled_head(backbone, num_outputs, pooling, hidden_units, dropout, name="head_output")
        scaling = TargetScaling(
            target_mean if target_mean is not None else 0.0,
            target_std if target_std is not None else 1.0,
            dtype=backbone.dtype_policy,
            name="predictions",
        )
        outputs = scaling(head)
        super().__init__(
            inputs=inputs,
            outputs=outputs,
            backbone=backbone,
            preprocessor=preprocessor,
            **kwargs,
        )

        # === Config ===
        self.num_outputs = num_outputs
        self.pooling = pooling
        self.hidden_units = hidden_units
        self.dropout = dropout
        self.standardize = standardize
        self.target_mean = target_mean
        self.target_std = target_std
        freezing.freeze_unused_pooler(self, backbone)
        if compile:
            self.compile()

    @classmethod
    def from_preset(
        cls,
        preset,
        num_outputs=1,
        freeze=True,
        sequence_length=DEFAULT_SEQUENCE_LENGTH,
        truncation="head",
        load_weights=True,
        dtype=None,
        **kwargs,
    ):
        """Builds a regressor over a pretrained backbone.

        Args:
            preset: a KerasHub preset name, a local KerasHub preset or
                HuggingFace-format directory, or an `hf://` handle.
            num_outputs: numbers predicted per text. Defaults to `1`.
            freeze: `True` trains only the head, `False` everything, an
                integer N the head and the top N blocks. Defaults to `True`.
            sequence_length: longest packed sequence. Defaults to `512`.
            truncation: `"head"`, `"tail"` or `"head+tail"`. Defaults to
                `"head"`.
            load_weights: load pretrained weights. Defaults to `True`.
            dtype: dtype policy of the backbone and head. Defaults to
                `None`.
            **kwargs: `standardize`, `target_mean`, `target_std` and the
                head's arguments (`pooling`, `hidden_units`, `dropout`).
        """
        return task_from_preset(
            cls,
            preset,
            freeze=freeze,
            sequence_length=sequence_length,
            truncation=truncation,
            load_weights=load_weights,
            dtype=dtype,
            num_outputs=num_outputs,
            **kwargs,
        )

    # Targets ----------------------------------------------------------------------

    def _map_label_names(self, y, names):
        if names is not None:
            raise ValueError(
                f"The data holds class labels (label_names={list(names)}), but a "
                "TextRegressor predicts numbers. Use a TextClassifier, or give "
                "real-valued targets (a TextData without label_names)."
            )
        return y

    def _check_labels(self, y, name="y"):
        values = y.tolist() if isinstance(y, np.ndarray) and y.dtype.kind in "USO" else y
        if not isinstance(values, np.ndarray):
            values = list(values)
            if len(values) == 0:
                raise ValueError(f"`{name}` is empty: give one target per text.")
            flat = [v for row in values for v in (row if isinstance(row, (list, tuple)) else [row])]
            bad = next((v for v in flat if isinstance(v, str) or v is None), False)
            if bad is not False:
                raise ValueError(
                    f"Regression targets must be numbers; `{name}` holds "
                    f"{bad!r} ({type(bad).__name__}). Convert them, e.g. "
                    "`[float(v) for v in y]`; for class labels use a TextClassifier."
                )
        try:
            array = np.asarray(values, dtype="float32")
        except (TypeError, ValueError) as error:
            raise ValueError(f"Regression targets must be numbers; could not read `{name}` as numbers ({error}).") from None
        if array.ndim == 1 and self.num_outputs == 1:
            array = array[:, None]
        if array.ndim != 2 or array.shape[1] != self.num_outputs:
            raise ValueError(
                f"Expected `{name}` of shape (texts,) or (texts, {self.num_outputs}) "
                f"for num_outputs={self.num_outputs}. Received shape {array.shape}."
            )
        if not np.all(np.isfinite(array)):
            row = int(np.flatnonzero(~np.isfinite(array).all(axis=1))[0])
            raise ValueError(
                f"`{name}[{row}]` is {array[row].tolist()}: targets must be finite "
                "(no NaN or inf). Drop or fill the missing targets before training."
            )
        return array

    def _learn_scale(self, x, y):
        """Sets the targets' mean and std from the first `fit`'s targets."""
        targets = x.labels if _is_text_data(x) else y
        if targets is None or isinstance(targets, keras.utils.PyDataset):
            raise ValueError(
                "standardize=True learns the targets' mean and standard "
                "deviation at the first `fit`, which needs the targets as an "
                "array: pass texts and `y`, or a TextData. Or build the model "
                "with target_mean=… and target_std=…, or standardize=False."
            )
        if _is_text_data(x):
            self._map_label_names(targets, getattr(x, "label_names", None))
        check_one_label_per_text(targets, "y")
        targets = self._check_labels(targets).astype("float64")
        # A constant target has no spread to scale by.
        self._set_scale(targets.mean(axis=0), [v if v > 0 else 1.0 for v in targets.std(axis=0)])

    def _set_scale(self, mean, std):
        """Sets the target scale, and the output layer's copy of it."""
        self.target_mean = [float(v) for v in mean]
        self.target_std = [float(v) for v in std]
        scaling = self.get_layer("predictions")
        scaling.mean, scaling.std = list(self.target_mean), list(self.target_std)

    def fit(self, x=None, y=None, *args, **kwargs):
        """Trains the model; see `Task.fit`.

        With `standardize=True` and no `target_mean`/`target_std` yet, the
        first call learns them from its targets (the training set's mean and
        standard deviation, kept for every later call and saved).
        """
        if not (self.standardize and self.target_mean is None):
            return super().fit(x, y, *args, **kwargs)
        scaling = self.get_layer("predictions")
        before = (scaling.mean, scaling.std)
        optimizer = getattr(self, "optimizer", None)
        steps = None if optimizer is None else int(optimizer.iterations)
        split = kwargs.get("validation_split")
        if split and (_is_text_data(x) or (y is not None and _is_raw_text(x))):
            # The training part's statistics, not the held-out texts'.
            x = x if _is_text_data(x) else columns_as_pairs(x)
            cut = validation_cut(len(x), split)
            self._learn_scale(x[:cut], None if y is None else y[:cut])
        else:
            self._learn_scale(x, y)
        try:
            return super().fit(x, y, *args, **kwargs)
        except BaseException:
            # A call that failed before its first step (bad data or
            # arguments) must not fix the scale for the next one.
            optimizer = getattr(self, "optimizer", None)
            if optimizer is None or int(optimizer.iterations) == (steps or 0):
                self.target_mean = self.target_std = None
                scaling.mean, scaling.std = before
            raise

    # Saving -------------------------------------------------------------------------

    # The target scale lives in the config, which `model.save` keeps; but
    # `save_weights` / `load_weights` (and ModelCheckpoint with
    # save_weights_only, BackupAndRestore) carry weights alone, and a freshly
    # built regressor loading them would predict standardised values (mean
    # 0, spread 1) instead of the targets' units, then learn another scale at
    # its first `fit`. So the scale is stored beside the weights as well.

    def save_own_variables(self, store):
        super().save_own_variables(store)
        if not self.standardize:
            mean, std = [0.0] * self.num_outputs, [1.0] * self.num_outputs
        elif self.target_mean is not None:
            mean, std = self.target_mean, self.target_std
        else:
            return  # not learned yet: the model that loads these learns its own
        store[_SCALE_KEYS[0]] = np.asarray(mean, dtype="float64")
        store[_SCALE_KEYS[1]] = np.asarray(std, dtype="float64")

    def load_own_variables(self, store):
        keys = list(store.keys())
        # Files saved before the scale was stored hold none: the config's stays.
        scale = [np.asarray(store[key], dtype="float64").reshape(-1) for key in _SCALE_KEYS if key in keys]
        super().load_own_variables({key: store[key] for key in keys if key not in _SCALE_KEYS})
        if len(scale) != 2:
            return
        mean, std = scale
        if len(mean) != self.num_outputs or len(std) != self.num_outputs:
            raise ValueError(
                f"These weights are of a regressor with {len(mean)} outputs; this "
                f"one has num_outputs={self.num_outputs}. Build it with "
                f"num_outputs={len(mean)} to load them."
            )
        if not self.standardize and np.all(mean == 0) and np.all(std == 1):
            return
        # The head predicts in the scale it was trained with: keep it.
        self.standardize = True
        self._set_scale(mean, std)

    # Compile defaults ---------------------------------------------------------------

    def default_loss(self):
        return keras.losses.MeanSquaredError()

    def default_metrics(self):
        return [
            keras.metrics.MeanAbsoluteError(name="mae"),
            keras.metrics.RootMeanSquaredError(name="rmse"),
            PearsonCorrelation(name="pearson"),
        ]

    # Inference ----------------------------------------------------------------------

    def report(self, x, y=None, batch_size=None, **kwargs):
        """Scores the model on texts with targets: a `RegressionReport`.

        Args:
            x: texts, or a `TextData` with real-valued labels.
            y: the targets when `x` is texts. Defaults to `None`.
            batch_size: examples per batch. Defaults to `None` (32).
            **kwargs: passed to `predict` (for example `verbose=0`).

        Returns:
            A `kt.metrics.RegressionReport`: MSE, RMSE, MAE, R², Pearson and
            Spearman (ties ranked by their average), per output.
        """
        texts, targets = _texts_and_labels(self, x, y)
        targets = self._check_labels(targets)
        return regression_report(targets, self.predict(texts, batch_size=batch_size, **kwargs))

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "num_outputs": self.num_outputs,
                "pooling": self.pooling,
                "hidden_units": list(self.hidden_units),
                "dropout": self.dropout,
                "standardize": self.standardize,
                "target_mean": self.target_mean,
                "target_std": self.target_std,
            }
        )
        return config
