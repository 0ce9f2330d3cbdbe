"""Classification scores: reports for single-label and multi-label tasks.

- `classification_report(y_true, y_pred)` returns a `ClassificationReport`:
  accuracy, per-class precision, recall, F1 and support, macro and
  weighted F1, and the confusion matrix, with a readable table (`print`),
  `to_dict()` and `plot_confusion_matrix()`.
- `multilabel_report(y_true, y_pred)` returns a `MultiLabelReport`:
  per-label precision, recall, F1 and support, micro and macro F1, exact
  match (subset) accuracy and the Hamming loss.
- `MultiLabelF1Score`: Keras' `F1Score` with one decision threshold per
  label, the default metric of `kt.MultiLabelClassifier`.

The math is plain NumPy, computed over the whole dataset. Conventions follow
scikit-learn: a precision (or recall) whose denominator is zero counts as 0,
and so does the F1 of a class with neither predictions nor examples.
`TextClassifier.report(x, y)` and its siblings compute these from a model.
"""

import keras
import numpy as np

from keras_transfer.wording import counted


def _safe_divide(numerator, denominator):
    numerator = np.asarray(numerator, dtype="float64")
    denominator = np.asarray(denominator, dtype="float64")
    return np.divide(numerator, denominator, out=np.zeros_like(numerator), where=denominator > 0)


def _f1(precision, recall):
    return _safe_divide(2 * precision * recall, precision + recall)


def _as_ids(values, label_names, name):
    """Class ids from ids or names, as a 1-D int64 array."""
    values = np.asarray(values.tolist() if isinstance(values, np.ndarray) else list(values))
    if values.ndim != 1:
        raise ValueError(
            f"Expected `{name}` to hold one class per example (1-D). Received "
            f"shape {values.shape}. For scores or one-hot rows, pass "
            "`values.argmax(axis=-1)`; for multi-label data use "
            "`kt.metrics.multilabel_report`."
        )
    if values.dtype.kind in "US":
        if label_names is None:
            raise ValueError(
                f"`{name}` holds class names; pass `label_names` so that each "
                "name gets its id."
            )
        unknown = sorted(set(values.tolist()) - set(label_names))
        if unknown:
            raise ValueError(f"Unknown labels {unknown[:5]} in `{name}`. label_names={list(label_names)}.")
        index = {n: i for i, n in enumerate(label_names)}
        return np.array([index[v] for v in values.tolist()], dtype="int64")
    if values.dtype.kind == "b":
        return values.astype("int64")
    if values.dtype.kind == "f" and np.all(np.isfinite(values)) and np.all(values == np.round(values)):
        values = values.astype("int64")  # whole floats (labels read as floats): checked below
    if values.dtype.kind not in "iu":
        raise ValueError(
            f"Expected class ids (integers) or class names in `{name}`. "
            f"Received values of dtype {values.dtype}, e.g. {values[:3].tolist()}."
        )
    if values.size and values.min() < 0:
        raise ValueError(f"Class ids in `{name}` must be >= 0. Received {int(values.min())}.")
    return values.astype("int64")


def confusion_matrix(y_true, y_pred, num_classes=None):
    """The confusion matrix: row `i`, column `j` counts class `i` predicted as `j`.

    Args:
        y_true: class ids, one per example.
        y_pred: predicted class ids, one per example.
        num_classes: size of the matrix. Defaults to `None`: one more than
            the largest id seen.

    Returns:
        An int64 array of shape `(num_classes, num_classes)`.

    Example:
    >>> confusion_matrix([0, 1, 1], [0, 0, 1]).tolist()
    [[1, 0], [1, 1]]
    """
    y_true = _as_ids(y_true, None, "y_true")
    y_pred = _as_ids(y_pred, None, "y_pred")
    if len(y_true) != len(y_pred):
        raise ValueError(
            f"Got {counted(len(y_true), 'true label')} but {counted(len(y_pred), 'prediction')}; give one of each per example."
        )
    seen = int(max(y_true.max(initial=-1), y_pred.max(initial=-1))) + 1
    if num_classes is None:
        num_classes = max(seen, 1)
    elif seen > num_classes:
        raise ValueError(f"Found class id {seen - 1}, outside 0..{num_classes - 1} (num_classes={num_classes}).")
    matrix = np.zeros((num_classes, num_classes), dtype="int64")
    np.add.at(matrix, (y_true, y_pred), 1)
    return matrix


class ClassificationReport:
    """Scores of a single-label classifier, from its confusion matrix.

    Build it with `kt.metrics.classification_report(y_true, y_pred)` or
    `model.report(x, y)`. `print(report)` shows a table; the numbers are
    attributes (NumPy arrays indexed by class id):

    Attributes:
        label_names: the class names (ids as strings when none were given).
        confusion_matrix: `(num_classes, num_classes)` counts; rows are
            true classes, columns predicted ones.
        accuracy: share of examples predicted right.
        precision, recall, f1, support: per class.
        macro_f1: unweighted mean of the per-class F1.
        weighted_f1: mean of the per-class F1 weighted by support.
    """

    def __init__(self, confusion, label_names=None):
        confusion = np.asarray(confusion, dtype="int64")
        self.confusion_matrix = confusion
        self.label_names = (
            [str(i) for i in range(len(confusion))] if label_names is None else list(label_names)
        )
        true_positives = np.diag(confusion)
        self.support = confusion.sum(axis=1)
        predicted = confusion.sum(axis=0)
        self.precision = _safe_divide(true_positives, predicted)
        self.recall = _safe_divide(true_positives, self.support)
        self.f1 = _f1(self.precision, self.recall)
        total = confusion.sum()
        self.accuracy = float(true_positives.sum() / total) if total else 0.0
        self.macro_f1 = float(self.f1.mean()) if len(self.f1) else 0.0
        self.weighted_f1 = float((self.f1 * self.support).sum() / total) if total else 0.0

    @property
    def num_examples(self):
        return int(self.support.sum())

    def to_dict(self):
        """The scores as plain Python numbers and lists (JSON-ready)."""
        return {
            "accuracy": self.accuracy,
            "macro_f1": self.macro_f1,
            "weighted_f1": self.weighted_f1,
            "num_examples": self.num_examples,
            "per_class": {
                name: {
                    "precision": float(p),
                    "recall": float(r),
                    "f1": float(f),
                    "support": int(s),
                }
                for name, p, r, f, s in zip(self.label_names, self.precision, self.recall, self.f1, self.support)
            },
            "label_names": list(self.label_names),
            "confusion_matrix": self.confusion_matrix.tolist(),
        }

    def __str__(self):
        width = max([len(n) for n in self.label_names] + [12])
        lines = [f"{'':<{width}}  precision  recall      f1  support"]
        for name, p, r, f, s in zip(self.label_names, self.precision, self.recall, self.f1, self.support):
            lines.append(f"{name:<{width}}  {p:9.4f}  {r:6.4f}  {f:6.4f}  {s:7d}")
        lines.append("")
        lines.append(f"{'accuracy':<{width}}  {'':9}  {'':6}  {self.accuracy:6.4f}  {self.num_examples:7d}")
        lines.append(f"{'macro F1':<{width}}  {'':9}  {'':6}  {self.macro_f1:6.4f}  {self.num_examples:7d}")
        lines.append(f"{'weighted F1':<{width}}  {'':9}  {'':6}  {self.weighted_f1:6.4f}  {self.num_examples:7d}")
        lines.append("")
        lines.append("confusion matrix (rows: true, columns: predicted)")
        cell = max(len(str(int(self.confusion_matrix.max(initial=0)))), max(len(n) for n in self.label_names), 4)
        lines.append(f"{'':<{width}}  " + " ".join(f"{n[:cell]:>{cell}}" for n in self.label_names))
        for name, row in zip(self.label_names, self.confusion_matrix):
            lines.append(f"{name:<{width}}  " + " ".join(f"{int(v):>{cell}d}" for v in row))
        return "\n".join(lines)

    def __repr__(self):
        return (
            f"ClassificationReport(accuracy={self.accuracy:.4f}, macro_f1={self.macro_f1:.4f}, "
            f"num_classes={len(self.label_names)}, num_examples={self.num_examples})"
        )

    def plot_confusion_matrix(self, path=None, normalize=False, title=None):
        """Draws the confusion matrix with matplotlib.

        Args:
            path: where to save the figure (PNG, PDF, SVG…, by extension);
                saving uses the non-interactive Agg canvas, so it works
                without a display. Defaults to `None` (do not save).
            normalize: show each row as shares of the true class instead
                of counts. Defaults to `False`.
            title: the figure's title. Defaults to `None`: accuracy and
                macro F1.

        Returns:
            The `matplotlib.figure.Figure`.
        """
        try:
            from matplotlib.backends.backend_agg import FigureCanvasAgg
            from matplotlib.figure import Figure
        except ImportError as error:
            raise ImportError(
                "plot_confusion_matrix needs matplotlib: `pip install matplotlib` "
                "(or `pip install keras-transfer[plots]`)."
            ) from error
        values = self.confusion_matrix.astype("float64")
        if normalize:
            values = _safe_divide(values, values.sum(axis=1, keepdims=True))
        n = len(self.label_names)
        size = 2.5 + 0.5 * n
        # A bare Figure (not pyplot): no global state, no GUI backend needed.
        figure = Figure(figsize=(size + 1, size))
        FigureCanvasAgg(figure)
        axes = figure.add_subplot()
        image = axes.imshow(values, cmap="Blues", vmin=0)
        figure.colorbar(image, ax=axes)
        axes.set_xticks(range(n), self.label_names, rotation=45, ha="right")
        axes.set_yticks(range(n), self.label_names)
        axes.set_xlabel("predicted")
        axes.set_ylabel("true")
        axes.set_title(title or f"accuracy {self.accuracy:.3f} · macro F1 {self.macro_f1:.3f}")
        high = values.max(initial=0) / 2
        for i in range(n):
            for j in range(n):
                text = f"{values[i, j]:.2f}" if normalize else f"{int(values[i, j])}"
                axes.text(j, i, text, ha="center", va="center", color="white" if values[i, j] > high else "black")
        figure.tight_layout()
        if path is not None:
            figure.savefig(path, dpi=100)
        return figure


def classification_report(y_true, y_pred, label_names=None, num_classes=None):
    """Scores single-label predictions against the true classes.

    Args:
        y_true: the true classes, one per example: class ids, or class
            names when `label_names` is given.
        y_pred: the predicted classes, in the same form. (For a model's
            scores, take `scores.argmax(axis=-1)`, or call
            `model.report(x, y)`.)
        label_names: class names, `label_names[i]` naming class `i`.
            Defaults to `None` (classes shown by id).
        num_classes: number of classes, for classes that appear in neither
            array. Defaults to `None`: `len(label_names)`, else the largest
            id seen plus one.

    Returns:
        A `ClassificationReport`.

    Example:
    >>> report = classification_report(["pos", "neg", "pos"], ["pos", "pos", "pos"],
    ...                                label_names=["neg", "pos"])
    >>> round(report.accuracy, 4), report.recall.tolist()
    (0.6667, [0.0, 1.0])
    """
    if label_names is not None:
        if isinstance(label_names, str):
            raise ValueError(f"Expected `label_names` to be a list of names. Received the string {label_names!r}.")
        label_names = [str(n) for n in label_names]
        if num_classes is None:
            num_classes = len(label_names)
        elif num_classes != len(label_names):
            raise ValueError(f"num_classes={num_classes} but {len(label_names)} label_names were given.")
    true_ids = _as_ids(y_true, label_names, "y_true")
    pred_ids = _as_ids(y_pred, label_names, "y_pred")
    if len(true_ids) == 0:
        raise ValueError("`y_true` is empty: there is nothing to score.")
    return ClassificationReport(confusion_matrix(true_ids, pred_ids, num_classes), label_names)


# ------------------------------------------------------------------ multi-label


def _as_multi_hot(values, name, num_labels=None):
    array = np.asarray(values)
    if array.ndim != 2:
        raise ValueError(
            f"Expected `{name}` to be a multi-hot array of shape (examples, "
            f"labels). Received shape {array.shape}."
        )
    if array.dtype.kind not in "biuf" or not np.isin(array, (0, 1)).all():
        raise ValueError(f"Expected only 0s and 1s (or booleans) in `{name}`.")
    if num_labels is not None and array.shape[1] != num_labels:
        raise ValueError(f"`{name}` has {counted(array.shape[1], 'column')}; expected {num_labels}, one per label.")
    return array.astype("int64")


class MultiLabelReport:
    """Scores of a multi-label classifier: each label is a yes/no decision.

    Build it with `kt.metrics.multilabel_report(y_true, y_pred)` or
    `model.report(x, y)` on a `kt.MultiLabelClassifier`.

    Attributes:
        label_names: the label names.
        precision, recall, f1, support: per label (NumPy arrays).
        true_positives, false_positives, false_negatives: per label.
        micro_f1: F1 of all decisions pooled together.
        macro_f1: unweighted mean of the per-label F1.
        subset_accuracy: share of examples whose whole label set is right.
        hamming_loss: share of wrong yes/no decisions.
        thresholds: the decision thresholds used, when known.
    """

    def __init__(self, y_true, y_pred, label_names=None, thresholds=None):
        y_true = _as_multi_hot(y_true, "y_true")
        y_pred = _as_multi_hot(y_pred, "y_pred", y_true.shape[1])
        if len(y_true) != len(y_pred):
            raise ValueError(f"Got {counted(len(y_true), 'true label row')} but {counted(len(y_pred), 'predicted row')}.")
        if len(y_true) == 0:
            raise ValueError("`y_true` is empty: there is nothing to score.")
        num_labels = y_true.shape[1]
        self.label_names = [str(i) for i in range(num_labels)] if label_names is None else list(label_names)
        if len(self.label_names) != num_labels:
            raise ValueError(f"{len(self.label_names)} label_names for {counted(num_labels, 'label column')}.")
        self.thresholds = None if thresholds is None else np.broadcast_to(np.asarray(thresholds, "float64"), (num_labels,)).copy()
        self.true_positives = (y_true * y_pred).sum(axis=0)
        self.false_positives = ((1 - y_true) * y_pred).sum(axis=0)
        self.false_negatives = (y_true * (1 - y_pred)).sum(axis=0)
        self.support = y_true.sum(axis=0)
        self.precision = _safe_divide(self.true_positives, self.true_positives + self.false_positives)
        self.recall = _safe_divide(self.true_positives, self.support)
        self.f1 = _f1(self.precision, self.recall)
        tp, fp, fn = self.true_positives.sum(), self.false_positives.sum(), self.false_negatives.sum()
        self.micro_precision = float(_safe_divide(tp, tp + fp))
        self.micro_recall = float(_safe_divide(tp, tp + fn))
        self.micro_f1 = float(_f1(self.micro_precision, self.micro_recall))
        self.macro_f1 = float(self.f1.mean())
        self.subset_accuracy = float((y_true == y_pred).all(axis=1).mean())
        self.hamming_loss = float((y_true != y_pred).mean())
        self.num_examples = len(y_true)

    def to_dict(self):
        """The scores as plain Python numbers and lists (JSON-ready)."""
        per_label = {}
        for i, name in enumerate(self.label_names):
            per_label[name] = {
                "precision": float(self.precision[i]),
                "recall": float(self.recall[i]),
                "f1": float(self.f1[i]),
                "support": int(self.support[i]),
            }
            if self.thresholds is not None:
                per_label[name]["threshold"] = float(self.thresholds[i])
        return {
            "micro_f1": self.micro_f1,
            "macro_f1": self.macro_f1,
            "micro_precision": self.micro_precision,
            "micro_recall": self.micro_recall,
            "subset_accuracy": self.subset_accuracy,
            "hamming_loss": self.hamming_loss,
            "num_examples": self.num_examples,
            "per_label": per_label,
        }

    def __str__(self):
        width = max([len(n) for n in self.label_names] + [16])
        head = f"{'':<{width}}  precision  recall      f1  support"
        lines = [head + ("  threshold" if self.thresholds is not None else "")]
        for i, name in enumerate(self.label_names):
            line = f"{name:<{width}}  {self.precision[i]:9.4f}  {self.recall[i]:6.4f}  {self.f1[i]:6.4f}  {int(self.support[i]):7d}"
            if self.thresholds is not None:
                line += f"  {self.thresholds[i]:9.3f}"
            lines.append(line)
        lines.append("")
        lines.append(f"{'micro F1':<{width}}  {self.micro_precision:9.4f}  {self.micro_recall:6.4f}  {self.micro_f1:6.4f}")
        lines.append(f"{'macro F1':<{width}}  {'':9}  {'':6}  {self.macro_f1:6.4f}")
        lines.append(f"{'subset accuracy':<{width}}  {'':9}  {'':6}  {self.subset_accuracy:6.4f}  {self.num_examples:7d}")
        lines.append(f"{'Hamming loss':<{width}}  {'':9}  {'':6}  {self.hamming_loss:6.4f}")
        return "\n".join(lines)

    def __repr__(self):
        return (
            f"MultiLabelReport(micro_f1={self.micro_f1:.4f}, macro_f1={self.macro_f1:.4f}, "
            f"num_labels={len(self.label_names)}, num_examples={self.num_examples})"
        )


def multilabel_report(y_true, y_pred, label_names=None, thresholds=None):
    """Scores multi-label decisions against the true label sets.

    Args:
        y_true: multi-hot array `(examples, labels)` of 0/1 (or booleans).
        y_pred: the predicted decisions in the same form (threshold the
            probabilities first, or call `model.report(x, y)`).
        label_names: names of the label columns. Defaults to `None` (ids).
        thresholds: the thresholds that made `y_pred`, shown in the table.
            Defaults to `None`.

    Returns:
        A `MultiLabelReport`.

    Example:
    >>> report = multilabel_report([[1, 0], [1, 1]], [[1, 1], [0, 1]])
    >>> report.micro_f1, report.f1.tolist()
    (0.6666666666666666, [0.6666666666666666, 0.6666666666666666])
    """
    return MultiLabelReport(y_true, y_pred, label_names, thresholds)


def check_thresholds(threshold, num_labels):
    """A scalar or per-label threshold as a list of floats in (0, 1)."""
    values = np.asarray(threshold, dtype="float64") if not isinstance(threshold, (str, bool)) else None
    if values is None or values.ndim > 1 or (values.ndim == 1 and len(values) != num_labels):
        raise ValueError(
            "Expected `threshold` to be a number in (0, 1) or a list with one "
            f"per label ({num_labels}). Received: threshold={threshold!r}"
        )
    if not np.all((values > 0) & (values < 1)):
        raise ValueError(
            f"Expected every threshold in (0, 1): a label is predicted when its "
            f"probability is above it. Received: threshold={threshold!r}"
        )
    return [float(v) for v in np.broadcast_to(values, (num_labels,))]


@keras.saving.register_keras_serializable(package="keras_transfer")
class MultiLabelF1Score(keras.metrics.F1Score):
    """Keras' `F1Score` for multi-label outputs, with one threshold per label.

    Args:
        average: `"micro"` (all decisions pooled), `"macro"` (mean over
            labels), `"weighted"` or `None` (one score per label). Defaults
            to `"micro"`.
        threshold: a label counts as predicted when its probability is
            above this: one number, or a list with one per label. Defaults
            to `0.5`.
        name: the metric's name. Defaults to `"f1"`.
        dtype: the metric's dtype. Defaults to `None`.

    Example:
    ```python
    metric = kt.metrics.MultiLabelF1Score("macro", threshold=[0.5, 0.3])
    metric.update_state([[1, 0], [0, 1]], [[0.9, 0.2], [0.1, 0.4]])
    float(metric.result())  # 1.0
    ```
    """

    def __init__(self, average="micro", threshold=0.5, name="f1", dtype=None):
        if np.ndim(threshold) == 0:
            threshold = check_thresholds(threshold, 1)[0]
        else:
            threshold = check_thresholds(threshold, len(threshold))
        # Predictions are made 0/1 with the per-label thresholds first.
        super().__init__(average=average, threshold=0.5, name=name, dtype=dtype)
        self.label_threshold = threshold

    def update_state(self, y_true, y_pred, sample_weight=None):
        y_pred = keras.ops.convert_to_tensor(y_pred, dtype=self.dtype)
        thresholds = keras.ops.convert_to_tensor(self.label_threshold, dtype=self.dtype)
        y_pred = keras.ops.cast(keras.ops.greater(y_pred, thresholds), self.dtype)
        super().update_state(y_true, y_pred, sample_weight)

    def result(self):
        if not self._built:
            # Keras asks for results before any update while it builds a
            # model's metrics (a fresh or reloaded model's first evaluate).
            return keras.ops.convert_to_tensor(0.0, dtype=self.dtype)
        return super().result()

    def get_config(self):
        config = super().get_config()
        config["threshold"] = self.label_threshold
        return config
