"""Text classification over any supported KerasHub backbone."""

import keras
import numpy as np

from keras_transfer import freezing
from keras_transfer.backbones import DEFAULT_SEQUENCE_LENGTH, load_backbone
from keras_transfer.families import family_of
from keras_transfer.layers import Pooling
from keras_transfer.metrics.classification import classification_report
from keras_transfer.tasks.base import Task, _check_keyword_arguments, _is_text_data, check_flag


def _check_freeze(freeze):
    if isinstance(freeze, (bool, np.bool_)) or (isinstance(freeze, (int, np.integer)) and freeze >= 0):
        return
    raise ValueError(
        "Expected `freeze` to be True (train only the head), False (train "
        "everything) or a non-negative integer N (train the head and the top "
        f"N blocks). Received: freeze={freeze!r}"
    )


def _check_no_truncation(cls, truncation, how):
    """Refuses a `truncation` other than the default for a task that cuts
    nothing off: it splits long inputs into windows, so "tail" or
    "head+tail" would be kept in the preprocessor and never apply."""
    if isinstance(truncation, str) and truncation == "head":
        return
    raise ValueError(
        f"{cls.__name__} takes no `truncation`: it keeps every token of a long input "
        f"({how}), so there is no head or tail to choose. Leave `truncation` out; "
        f"`sequence_length` sets the window length. Received: truncation={truncation!r}"
    )


def apply_freeze(model, freeze):
    """Applies a task's `freeze` argument to its backbone."""
    _check_freeze(freeze)
    if freeze is True or freeze is np.True_:
        freezing.freeze(model)
    elif freeze is False or freeze is np.False_:
        freezing.unfreeze(model)
    else:
        freezing.unfreeze(model, top=int(freeze))


def check_label_names(
    label_names, count, count_name="num_classes", minimum=2, what="class", names_name="label_names"
):
    """Validates a task's `label_names` (or `tag_names`) against its size argument.

    Returns `(label_names, count)`: the names as a list of strings (or
    `None`) and the size, taken from the names when it was left out.
    """
    noun = names_name.removesuffix("_names")
    if isinstance(label_names, str):
        raise ValueError(
            f"Expected `{names_name}` to be a list of {what} names. Received "
            f"the single string {label_names!r}; wrap the names in a list."
        )
    if label_names is not None:
        label_names = [str(name) for name in label_names]
        if len(set(label_names)) != len(label_names):
            raise ValueError(f"`{names_name}` has duplicates: {label_names}.")
        if count is None:
            count = len(label_names)
        elif count != len(label_names):
            raise ValueError(
                f"{count_name}={count} but {len(label_names)} {noun} "
                f"names were given ({label_names}). Give one name per {what}."
            )
    if isinstance(count, np.integer):
        count = int(count)
    if isinstance(count, bool) or not isinstance(count, int) or count < minimum:
        binary = " (a binary task has 2 classes)" if minimum == 2 and what == "class" else ""
        raise ValueError(
            f"Expected `{count_name}` to be an integer of at least {minimum}"
            f"{binary}, or `{names_name}`. Received: {count_name}={count!r}"
        )
    return label_names, count


def check_head_arguments(hidden_units, dropout):
    """Validates the head's `hidden_units` and `dropout`; returns the units as a tuple."""
    if isinstance(hidden_units, (int, np.integer)):
        hidden_units = (hidden_units,)
    hidden_units = tuple(int(u) if isinstance(u, np.integer) else u for u in hidden_units)
    if any(isinstance(u, bool) or not isinstance(u, int) or u < 1 for u in hidden_units):
        raise ValueError(
            "Expected `hidden_units` to be positive integers. "
            f"Received: hidden_units={hidden_units!r}"
        )
    if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0 <= dropout < 1:
        raise ValueError(f"Expected `dropout` in [0, 1). Received: dropout={dropout!r}")
    return hidden_units


def resolve_pooling(backbone, pooling):
    """The pooling a head over `backbone` uses: `pooling`, or the default."""
    family = family_of(backbone)
    if pooling is None:
        pooling = getattr(backbone, "_kt_default_pooling", None) or family.default_pooling
    if pooling == "pooled" and family.pooler is None:
        raise ValueError(
            f"pooling='pooled' needs a backbone with its own pooler; "
            f"{type(backbone).__name__} ({family.name}) has none. Use "
            "'cls', 'mean', 'max' or 'last'."
        )
    return pooling


def head_initializer():
    """The kernel initializer of every task head: a truncated normal, std 0.02.

    HuggingFace's and KerasHub's task heads start this way. Keras' default
    (Glorot uniform, about six times wider for a 384-wide input) starts the
    logits far from zero, and a short head training does not recover: on
    frozen MiniLM features of 1,000 IMDB reviews, 3 epochs reached 73.8%
    from Glorot against 76.0% from small weights (mean of 5 seeds).
    """
    return keras.initializers.TruncatedNormal(stddev=0.02)


def pooled_head(backbone, units, pooling, hidden_units, dropout, activation=None, name="logits"):
    """The functional graph of a sentence-level task.

    backbone → `Pooling` (named `"pooling"`, the layer whose output feature
    caching keeps) → for each hidden size, dropout and a GELU `Dense` →
    dropout → `Dense(units, activation)` named `name`. The head computes
    in the backbone's dtype policy.

    Returns `(inputs, outputs)` for `keras.Model(inputs, outputs)`.
    """
    inputs = backbone.input
    features = backbone(inputs)
    dtype = backbone.dtype_policy  # the head computes as the backbone does
    x = Pooling(pooling, dtype=dtype, name="pooling")(features, inputs["padding_mask"])
    for i, size in enumerate(hidden_units):
        x = keras.layers.Dropout(dropout, dtype=dtype, name=f"head_dropout_{i}")(x)
        x = keras.layers.Dense(
            size, activation="gelu", kernel_initializer=head_initializer(), dtype=dtype, name=f"head_dense_{i}"
        )(x)
    x = keras.layers.Dropout(dropout, dtype=dtype, name="output_dropout")(x)
    outputs = keras.layers.Dense(
        units, activation=activation, kernel_initializer=head_initializer(), dtype=dtype, name=name
    )(x)
    return inputs, outputs


def task_from_preset(
    cls,
    preset,
    freeze=True,
    sequence_length=DEFAULT_SEQUENCE_LENGTH,
    truncation="head",
    load_weights=True,
    dtype=None,
    **kwargs,
):
    """Loads a backbone and its preprocessor, builds `cls` over them, freezes.

    The shared body of every sentence-level task's `from_preset`: `kwargs`
    go to `cls(...)`; the model is compiled after freezing (the default
    learning rate depends on it) unless `compile=False`.
    """
    _check_freeze(freeze)
    check_flag("compile", kwargs.get("compile", True))
    _check_keyword_arguments(cls, kwargs, from_preset=True)  # before the (slow) loading
    backbone, preprocessor = load_backbone(
        preset,
        sequence_length=sequence_length,
        truncation=truncation,
        load_weights=load_weights,
        dtype=dtype,
    )
    compile = kwargs.pop("compile", True)
    model = cls(backbone=backbone, preprocessor=preprocessor, compile=False, **kwargs)
    apply_freeze(model, freeze)
    if compile:
        model.compile()  # after freezing: the default rate depends on it
    return model


def _texts_and_labels(model, x, y):
    """`(texts, labels)` of a report's input: a TextData or texts with `y`."""
    if _is_text_data(x):
        if y is not None:
            raise ValueError(
                "`x` is a TextData that already holds its labels; do not pass `y` as well."
            )
        return x.texts, model._map_label_names(x.labels, getattr(x, "label_names", None))
    if y is None:
        raise ValueError(
            "`report` needs the true labels: pass `y`, or a TextData with labels."
        )
    return x, y


@keras.saving.register_keras_serializable(package="keras_transfer")
class TextClassifier(Task):
    """A text classifier: backbone, pooling, a small head, softmax classes.

    Args:
        backbone: a KerasHub backbone of a supported family.
        num_classes: number of classes (at least 2; binary tasks use 2).
            May be left out when `label_names` is given.
        preprocessor: the `kt.TextPreprocessor` that lets `fit`, `evaluate`
            and `predict` take raw strings. Defaults to `None` (token ids
            only).
        pooling: `"cls"`, `"pooled"`, `"mean"`, `"max"` or `"last"`.
            Defaults to the checkpoint's own pooling when it declares one
            (sentence-transformers), else the family's default: `"cls"` for
            encoders, `"last"` for decoders.
        hidden_units: sizes of hidden Dense layers (GELU) between the pooled
            features and the output. Defaults to `()`: a linear head.
        dropout: dropout before each Dense layer of the head. Defaults to
            `0.1`.
        activation: activation of the output layer. Defaults to `None`:
            `predict` returns logits, as KerasHub classifiers do.
        label_names: class names, index `i` naming class `i`. Lets `fit`
            take string labels and `predict_labels` return names.
        compile: compile with the task defaults right away. Defaults to
            `True`.

    Example:
    ```python
    model = kt.TextClassifier.from_preset("bert_base_en_uncased", num_classes=2)
    model.fit(["great film", "awful film"], [1, 0], epochs=1)
    model.predict_labels(["what a film"])
    ```
    """

    feature_layer = "pooling"

    def __init__(
        self,
        backbone,
        num_classes=None,
        preprocessor=None,
        pooling=None,
        hidden_units=(),
        dropout=0.1,
        activation=None,
        label_names=None,
        compile=True,
        **kwargs,
    ):
        check_flag("compile", compile)
        label_names, num_classes = check_label_names(label_names, num_classes)
        hidden_units = check_head_arguments(hidden_units, dropout)
        pooling = resolve_pooling(backbone, pooling)

        # === Functional graph ===
        inputs, outputs = pooled_head(backbone, num_classes, pooling, hidden_units, dropout, activation)
        super().__init__(
            inputs=inputs,
            outputs=outputs,
            backbone=backbone,
            preprocessor=preprocessor,
            **kwargs,
        )

        # === Config ===
        self.num_classes = num_classes
        self.pooling = pooling
        self.hidden_units = hidden_units
        self.dropout = dropout
        self.activation = activation
        self.label_names = label_names
        freezing.freeze_unused_pooler(self, backbone)
        if compile:
            self.compile()

    @classmethod
    def from_preset(
        cls,
        preset,
        num_classes=None,
        label_names=None,
        freeze=True,
        sequence_length=DEFAULT_SEQUENCE_LENGTH,
        truncation="head",
        load_weights=True,
        dtype=None,
        **kwargs,
    ):
        """Builds a classifier over a pretrained backbone.

        Args:
            preset: a KerasHub preset name, a local KerasHub preset or
                HuggingFace-format directory, or an `hf://` handle.
            num_classes: number of classes; or give `label_names`.
            label_names: class names.
            freeze: `True` trains only the head, `False` everything, an
                integer N the head and the top N transformer blocks.
                Defaults to `True`.
            sequence_length: longest packed sequence. Defaults to `512`.
            truncation: `"head"`, `"tail"` or `"head+tail"`. Defaults to
                `"head"`.
            load_weights: load pretrained weights. Defaults to `True`.
            dtype: dtype policy of the backbone and head, for example
                `"mixed_bfloat16"` on a GPU, or `"auto"` (mixed bfloat16
                where it is fast, see `kt.load_backbone`). Defaults to
                `None` (Keras' global policy, float32 unless set).
            **kwargs: the head's arguments (`pooling`, `hidden_units`,
                `dropout`, `activation`).
        """
        return task_from_preset(
            cls,
            preset,
            freeze=freeze,
            sequence_length=sequence_length,
            truncation=truncation,
            load_weights=load_weights,
            dtype=dtype,
            num_classes=num_classes,
            label_names=label_names,
            **kwargs,
        )

    # Labels -----------------------------------------------------------------

    def _map_label_names(self, y, names):
        """Maps a dataset's label ids onto this model's label names."""
        if y is None or names is None or self.label_names is None:
            return y
        if list(names) == self.label_names:
            return y
        unknown = sorted(set(names) - set(self.label_names))
        if unknown:
            raise ValueError(
                f"The data has labels {unknown} that this model does not know "
                f"(its label_names are {self.label_names})."
            )
        lookup = np.array([self.label_names.index(name) for name in names])
        return lookup[np.asarray(y)]

    def _check_array_labels(self, y):
        """Label names become class ids and class ids are range-checked;
        anything else (one-hot rows for your own loss) goes to Keras."""
        array = np.asarray(y) if isinstance(y, (list, tuple, np.ndarray)) else None
        if array is not None and (array.dtype.kind in "USO" or (array.ndim == 1 and array.dtype.kind in "iub")):
            return self._check_labels(y)
        return y

    def _check_labels(self, y, name="y"):
        y = list(y) if not isinstance(y, np.ndarray) else y
        if len(y) == 0:
            raise ValueError(f"`{name}` is empty: give one label per text.")
        # NumPy strings (`list(df.label.values)`) are strings.
        kinds = {"str" if isinstance(v, str) else type(v).__name__ for v in (y.tolist() if isinstance(y, np.ndarray) else y)}
        if isinstance(y, np.ndarray) and y.dtype.kind in "US" or kinds <= {"str"}:
            if self.label_names is None:
                raise ValueError(
                    f"`{name}` holds string labels but the model has no "
                    "`label_names`. Build it with label_names=[...] or give "
                    "integer class ids."
                )
            unknown = sorted({str(v) for v in y} - set(self.label_names))
            if unknown:
                raise ValueError(
                    f"Unknown labels {unknown[:5]} in `{name}`. The model's "
                    f"label_names are {self.label_names}."
                )
            return np.array([self.label_names.index(str(v)) for v in y], dtype="int32")
        if "str" in kinds:
            raise ValueError(
                f"`{name}` mixes string and numeric labels ({sorted(kinds)}). "
                "Use one kind: class ids or label names."
            )
        array = np.asarray(y)
        if array.ndim != 1:
            raise ValueError(
                f"Expected one class id per text, a 1-D array. Received "
                f"`{name}` of shape {array.shape}. For one-hot labels, pass "
                "`labels.argmax(axis=-1)`."
            )
        if array.dtype.kind == "b":
            array = array.astype("int32")
        if array.dtype.kind == "f":
            if not np.all(np.isfinite(array)) or not np.all(array == np.round(array)):
                bad = array[~(np.isfinite(array) & (array == np.round(array)))][0]
                raise ValueError(
                    f"Expected integer class ids in `{name}`, found {bad!r}. "
                    "A classifier needs class ids 0..num_classes-1; for real-"
                    "valued targets use a regression task."
                )
        elif array.dtype.kind not in "iu":
            raise ValueError(
                f"Expected integer class ids in `{name}`. Received values of "
                f"type {sorted(kinds)}."
            )
        array = array.astype("int64")
        out_of_range = (array < 0) | (array >= self.num_classes)
        if out_of_range.any():
            index = int(np.argmax(out_of_range))
            highest = int(array.max())
            fix = (
                f"build the model with num_classes={highest + 1}"
                if highest >= self.num_classes and array.min() >= 0
                else "use class ids from 0"
            )
            raise ValueError(
                f"Label {int(array[index])} at {name}[{index}] is outside "
                f"0..{self.num_classes - 1} (num_classes={self.num_classes}). "
                f"Fix the labels or {fix}."
            )
        return array.astype("int32")

    # Compile defaults ---------------------------------------------------------

    def default_loss(self):
        return keras.losses.SparseCategoricalCrossentropy(from_logits=self.activation is None)

    def default_metrics(self):
        return [keras.metrics.SparseCategoricalAccuracy(name="accuracy")]

    # Inference ----------------------------------------------------------------

    def predict_labels(self, x, batch_size=None, **kwargs):
        """Predicts a class for each text: its name, or its id without names.

        Quiet unless asked (`verbose=1` shows `predict`'s progress bar).
        """
        kwargs.setdefault("verbose", 0)
        ids = np.argmax(self.predict(x, batch_size=batch_size, **kwargs), axis=-1)
        if self.label_names is None:
            return ids
        return [self.label_names[i] for i in ids]

    def report(self, x, y=None, batch_size=None, **kwargs):
        """Scores the model on labelled texts: a `ClassificationReport`.

        Args:
            x: texts (or text pairs), or a `TextData` with labels.
            y: the true labels (class ids or names) when `x` is texts.
                Defaults to `None`.
            batch_size: examples per batch. Defaults to `None` (32).
            **kwargs: passed to `predict` (for example `verbose=0`).

        Returns:
            A `kt.metrics.ClassificationReport`: accuracy, per-class
            precision, recall, F1 and support, macro F1, the confusion
            matrix; `print` it, call `to_dict()` or
            `plot_confusion_matrix(path)`.

        Example:
        ```python
        report = model.report(test_texts, test_labels, verbose=0)
        print(report)
        report.plot_confusion_matrix("confusion.png")
        ```
        """
        texts, labels = _texts_and_labels(self, x, y)
        labels = self._check_labels(labels)
        predicted = np.argmax(self.predict(texts, batch_size=batch_size, **kwargs), axis=-1)
        return classification_report(
            labels, predicted, label_names=self.label_names, num_classes=self.num_classes
        )

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "num_classes": self.num_classes,
                "pooling": self.pooling,
                "hidden_units": list(self.hidden_units),
                "dropout": self.dropout,
                "activation": keras.activations.serialize(self.activation)
                if callable(self.activation)
                else self.activation,
                "label_names": self.label_names,
            }
        )
        return config
