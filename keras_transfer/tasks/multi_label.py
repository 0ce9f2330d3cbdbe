"""Multi-label classification: any number of labels per text.

Each label is its own yes/no decision: the head gives one logit per label,
a sigmoid turns each into a probability, and the loss is binary
cross-entropy. A label is predicted when its probability is above its
threshold (one for all labels, or one per label; `tune_thresholds` picks
them on validation data to maximise each label's F1).
"""

import keras
import numpy as np

from keras_transfer import freezing
from keras_transfer.backbones import DEFAULT_SEQUENCE_LENGTH
from keras_transfer.metrics.classification import (
    MultiLabelF1Score,
    check_thresholds,
    multilabel_report,
)
from keras_transfer.tasks.base import Task, check_flag
from keras_transfer.tasks.text_classifier import (
    _texts_and_labels,
    check_head_arguments,
    check_label_names,
    pooled_head,
    resolve_pooling,
    task_from_preset,
)
from keras_transfer.wording import counted

_LABEL_HELP = (
    "Give one list of label names per text (e.g. [['action', 'comedy'], [], "
    "['drama']]; an empty list for a text with no label), or a multi-hot "
    "array of shape (texts, num_classes) with a 1 for each label a text has."
)


@keras.saving.register_keras_serializable(package="keras_transfer")
class MultiLabelClassifier(Task):
    """A multi-label text classifier: sigmoid outputs, one per label.

    The model's output is a probability per label (the head's logits go
    through a sigmoid inside the graph, so `predict` and `model(x)` return
    probabilities in [0, 1]); the default loss is binary cross-entropy and
    the default metrics are micro and macro F1 at the model's thresholds.

    Labels may be given as one list of label names per text, or as a
    multi-hot array `(texts, num_classes)` of 0/1 (a `kt.datasets.TextData`
    holds the latter, with `label_names` naming its columns).

    Args:
        backbone: a KerasHub backbone of a supported family.
        num_classes: number of labels. May be left out when `label_names`
            is given.
        preprocessor: the `kt.TextPreprocessor` that lets the model read
            raw text. Defaults to `None` (token ids only).
        pooling: `"cls"`, `"pooled"`, `"mean"`, `"max"` or `"last"`.
            Defaults to the checkpoint's or the family's default.
        hidden_units: sizes of hidden GELU layers in the head. Defaults to
            `()`.
        dropout: dropout before each Dense layer of the head. Defaults to
            `0.1`.
        label_names: label names, `label_names[i]` naming output `i`.
            Defaults to `None`.
        threshold: a label is predicted when its probability is above
            this: one number in (0, 1) for every label, or a list with one
            per label. Used by `predict_labels`, `report` and the default
            metrics; saved with the model. Defaults to `0.5`.
        compile: compile with the task defaults. Defaults to `True`.

    Example:
    ```python
    model = kt.MultiLabelClassifier.from_preset(
        "bert_base_en_uncased", label_names=["action", "comedy", "drama"]
    )
    model.fit(["explosions and jokes", "a sad family story"],
              [["action", "comedy"], ["drama"]], epochs=1)
    model.predict_labels(["a funny car chase"])  # e.g. [['action', 'comedy']]
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
        label_names=None,
        threshold=0.5,
        compile=True,
        **kwargs,
    ):
        check_flag("compile", compile)
        label_names, num_classes = check_label_names(
            label_names, num_classes, minimum=1, what="label"
        )
        check_thresholds(threshold, num_classes)
        hidden_units = check_head_arguments(hidden_units, dropout)
        pooling = resolve_pooling(backbone, pooling)

        # === Functional graph ===
        inputs, logits = pooled_head(backbone, num_classes, pooling, hidden_units, dropout)
        outputs = keras.layers.Activation(
            "sigmoid", dtype=backbone.dtype_policy, name="probabilities"
        )(logits)
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
        self.label_names = label_names
        self.threshold = threshold
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
        """Builds a multi-label classifier over a pretrained backbone.

        Args:
            preset: a KerasHub preset name, a local KerasHub preset or
                HuggingFace-format directory, or an `hf://` handle.
            num_classes: number of labels; or give `label_names`.
            label_names: label names. Defaults to `None`.
            freeze: `True` trains only the head, `False` everything, an
                integer N the head and the top N blocks. Defaults to `True`.
            sequence_length: longest packed sequence. Defaults to `512`.
            truncation: `"head"`, `"tail"` or `"head+tail"`. Defaults to
                `"head"`.
            load_weights: load pretrained weights. Defaults to `True`.
            dtype: dtype policy of the backbone and head. Defaults to
                `None`.
            **kwargs: `threshold` and the head's arguments (`pooling`,
                `hidden_units`, `dropout`).
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

    @property
    def threshold(self):
        """The decision threshold: one number, or a list with one per label.

        Setting it checks the value and updates the compiled F1 metrics too.
        """
        return self._threshold

    @threshold.setter
    def threshold(self, value):
        thresholds = check_thresholds(value, self.num_classes)
        self._threshold = thresholds[0] if np.ndim(value) == 0 else thresholds
        for metric in (getattr(self, "_compiled_with", None) or {}).get("metrics") or []:
            if isinstance(metric, MultiLabelF1Score):
                metric.label_threshold = thresholds

    @property
    def thresholds(self):
        """The threshold of each label, as a NumPy array."""
        return np.asarray(check_thresholds(self.threshold, self.num_classes))

    # Labels -------------------------------------------------------------------

    def _map_label_names(self, y, names):
        """Reorders a TextData's multi-hot columns to this model's labels."""
        if y is None or names is None or self.label_names is None:
            return y
        names = list(names)
        if names == self.label_names:
            return y
        unknown = sorted(set(names) - set(self.label_names))
        if unknown:
            raise ValueError(
                f"The data has labels {unknown} that this model does not know "
                f"(its label_names are {self.label_names})."
            )
        y = np.asarray(y)
        if y.ndim != 2 or y.shape[1] != len(names):
            return y  # _check_labels says what is wrong
        mapped = np.zeros((len(y), self.num_classes), dtype=y.dtype)
        mapped[:, [self.label_names.index(n) for n in names]] = y
        return mapped

    def _check_labels(self, y, name="y"):
        if isinstance(y, np.ndarray) and y.dtype.kind in "biuf":
            return self._check_multi_hot(y, name)
        y = list(y)
        if len(y) == 0:
            raise ValueError(f"`{name}` is empty: give one set of labels per text.")
        if all(isinstance(v, (list, tuple, set, frozenset, np.ndarray)) for v in y):
            if all(isinstance(n, str) for v in y for n in v):
                return self._names_to_multi_hot(y, name)
            if not any(isinstance(n, str) for v in y for n in v):
                try:
                    array = np.asarray(y)
                except ValueError:
                    array = None
                if array is not None and array.ndim == 2 and array.dtype.kind in "biuf":
                    return self._check_multi_hot(array, name)
                first = next((i for i, v in enumerate(y) if len(v) != self.num_classes), 0)
                raise ValueError(
                    f"`{name}[{first}]` is {list(y[first])!r}: a multi-hot row "
                    f"needs {self.num_classes} numbers (0 or 1), one per label. "
                    f"Class ids are not accepted. {_LABEL_HELP}"
                )
            raise ValueError(f"`{name}` mixes label names and numbers. {_LABEL_HELP}")
        kind = "label names" if any(isinstance(v, str) for v in y) else "single values"
        raise ValueError(
            f"`{name}` holds one value per text ({kind}, e.g. {y[0]!r}), "
            f"but a MultiLabelClassifier needs a set of labels per text. {_LABEL_HELP}"
        )

    def _names_to_multi_hot(self, y, name):
        if self.label_names is None:
            raise ValueError(
                f"`{name}` holds label names but the model has no `label_names`. "
                "Build it with label_names=[...] or give a multi-hot array."
            )
        index = {n: i for i, n in enumerate(self.label_names)}
        multi_hot = np.zeros((len(y), self.num_classes), dtype="float32")
        for row, names in enumerate(y):
            for label in names:
                if label not in index:
                    raise ValueError(
                        f"Unknown label {label!r} in `{name}[{row}]`. The model's "
                        f"label_names are {self.label_names}."
                    )
                multi_hot[row, index[label]] = 1.0
        return multi_hot

    def _check_multi_hot(self, array, name):
        if array.ndim != 2:
            raise ValueError(
                f"`{name}` has shape {array.shape}: one value per text. "
                f"Class ids are not accepted. {_LABEL_HELP}"
            )
        if array.shape[1] != self.num_classes:
            raise ValueError(
                f"`{name}` has {counted(array.shape[1], 'column')} but the model has "
                f"{counted(self.num_classes, 'label')}. Give one column per label."
            )
        if not np.isin(array, (0, 1)).all():
            bad = array[~np.isin(array, (0, 1))].flat[0].item()
            raise ValueError(
                f"A multi-hot `{name}` holds only 0s and 1s; found {bad!r}. {_LABEL_HELP}"
            )
        return array.astype("float32")

    # Compile defaults -----------------------------------------------------------

    def default_loss(self):
        return keras.losses.BinaryCrossentropy()

    def default_metrics(self):
        return [
            MultiLabelF1Score("micro", threshold=self.threshold, name="micro_f1"),
            MultiLabelF1Score("macro", threshold=self.threshold, name="macro_f1"),
        ]

    # Inference ------------------------------------------------------------------

    def predict_labels(self, x, batch_size=None, **kwargs):
        """The labels of each text: a list of name lists (of ids without names)."""
        kwargs.setdefault("verbose", 0)  # quiet unless asked
        decisions = self.predict(x, batch_size=batch_size, **kwargs) > self.thresholds
        names = self.label_names or list(range(self.num_classes))
        return [[names[i] for i in np.flatnonzero(row)] for row in decisions]

    def report(self, x, y=None, batch_size=None, **kwargs):
        """Scores the model on labelled texts: a `MultiLabelReport`.

        Args:
            x: texts, or a `TextData` with multi-hot labels.
            y: the true labels (name lists or multi-hot) when `x` is
                texts. Defaults to `None`.
            batch_size: examples per batch. Defaults to `None` (32).
            **kwargs: passed to `predict` (for example `verbose=0`).

        Returns:
            A `kt.metrics.MultiLabelReport`: per-label precision, recall,
            F1 and support, micro and macro F1, at the model's thresholds.
        """
        texts, labels = _texts_and_labels(self, x, y)
        labels = self._check_labels(labels)
        decisions = self.predict(texts, batch_size=batch_size, **kwargs) > self.thresholds
        return multilabel_report(labels, decisions, self.label_names, self.thresholds)

    def tune_thresholds(self, x, y=None, batch_size=None, **kwargs):
        """Picks each label's threshold to maximise its F1 on labelled data.

        Use held-out data (not the training set). For each label, every
        cut between two distinct predicted probabilities is tried; the
        best F1 wins, ties going to the cut nearest 0.5. A label without a
        single positive example keeps its threshold. The thresholds are
        stored in the model (and saved with it) and used by the compiled
        F1 metrics, `predict_labels` and `report`.

        Args:
            x: texts, or a `TextData` with multi-hot labels.
            y: the true labels when `x` is texts. Defaults to `None`.
            batch_size: examples per batch. Defaults to `None` (32).
            **kwargs: passed to `predict`.

        Returns:
            The thresholds, a list with one float per label.
        """
        texts, labels = _texts_and_labels(self, x, y)
        labels = self._check_labels(labels)
        probabilities = np.asarray(self.predict(texts, batch_size=batch_size, **kwargs), "float64")
        thresholds = list(self.thresholds)
        for j in range(self.num_classes):
            best = _best_threshold(probabilities[:, j], labels[:, j])
            if best is not None:
                thresholds[j] = best
        self.threshold = [float(t) for t in thresholds]
        return list(self.threshold)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "num_classes": self.num_classes,
                "pooling": self.pooling,
                "hidden_units": list(self.hidden_units),
                "dropout": self.dropout,
                "label_names": self.label_names,
                "threshold": self.threshold,
            }
        )
        return config


def _best_threshold(probabilities, truth):
    """The F1-maximising cut for one label, or None without positives."""
    positives = truth.sum()
    if positives == 0:
        return None
    values = np.unique(probabilities)[::-1]  # distinct, highest first
    # Predicting "yes" above a cut just below values[k] selects every
    # example whose probability is at least values[k].
    order = np.argsort(-probabilities, kind="stable")
    sorted_p, sorted_t = probabilities[order], truth[order]
    hits = np.cumsum(sorted_t)
    # Number predicted and true positives for each distinct cut.
    counts = np.searchsorted(-sorted_p, -values, side="right")
    tp = hits[counts - 1]
    f1 = 2 * tp / (counts + positives)
    below = np.append(values[1:], 0.0)
    # Midpoints as float32, the precision the probabilities and Keras' F1
    # metric compare in: a midpoint of two neighbouring float32 values
    # rounds to one of them, so it is pulled below the upper one (a cut
    # equal to the lower value still separates them: "yes" is `p > cut`).
    # No other clipping: saturated sigmoids (|logit| > 14) put the best
    # cut within 1e-6 of 0 or 1.
    upper = values.astype("float32")
    cuts = ((values.astype("float64") + below) / 2).astype("float32")
    cuts = np.where(cuts >= upper, np.nextafter(upper, np.float32(0)), cuts)
    cuts = np.clip(cuts, np.finfo("float32").tiny, np.nextafter(np.float32(1), np.float32(0)))
    best = np.flatnonzero(np.isclose(f1, f1.max()))
    return float(cuts[best[np.argmin(np.abs(cuts[best] - 0.5))]])
