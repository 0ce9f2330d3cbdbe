"""Regression scores: correlations, a streaming Pearson metric, a report.

- `pearson(y_true, y_pred)` and `spearman(y_true, y_pred)`: correlation
  coefficients over a whole dataset (Spearman is Pearson on ranks, ties
  given their average rank, as `scipy.stats.spearmanr` does).
- `PearsonCorrelation`: a Keras metric that accumulates sums over every
  batch, so `evaluate` reports the correlation of the whole dataset.
  (Keras' own `keras.metrics.PearsonCorrelation` correlates along the last
  axis of each sample and averages over batches: on one output per text it
  does not measure what a regression needs.)
- `regression_report(y_true, y_pred)` returns a `RegressionReport`: MSE,
  RMSE, MAE, R², Pearson and Spearman, per output.
"""

import keras
import numpy as np


def _check_pair(y_true, y_pred):
    y_true = np.asarray(y_true, dtype="float64")
    y_pred = np.asarray(y_pred, dtype="float64")
    if y_true.ndim == 2 and y_true.shape[1] == 1:
        y_true = y_true[:, 0]
    if y_pred.ndim == 2 and y_pred.shape[1] == 1:
        y_pred = y_pred[:, 0]
    if y_true.shape != y_pred.shape:
        raise ValueError(
            f"`y_true` has shape {y_true.shape} but `y_pred` {y_pred.shape}; "
            "give one prediction per target."
        )
    if len(y_true) == 0:
        raise ValueError("`y_true` is empty: there is nothing to score.")
    if not (np.isfinite(y_true).all() and np.isfinite(y_pred).all()):
        raise ValueError("`y_true` and `y_pred` must be finite numbers (found NaN or inf).")
    return y_true, y_pred


def rankdata(values):
    """Ranks from 1, ties given the average of the ranks they span.

    Example:
    >>> rankdata([10, 20, 20, 5]).tolist()
    [2.0, 3.5, 3.5, 1.0]
    """
    values = np.asarray(values)
    order = np.argsort(values, kind="stable")
    sorted_values = values[order]
    # Start of each run of equal values, in sorted order.
    starts = np.concatenate([[True], sorted_values[1:] != sorted_values[:-1]])
    run = np.cumsum(starts) - 1
    first = np.flatnonzero(starts)
    last = np.concatenate([first[1:], [len(values)]]) - 1
    average = (first + last) / 2 + 1
    ranks = np.empty(len(values), dtype="float64")
    ranks[order] = average[run]
    return ranks


def pearson(y_true, y_pred):
    """Pearson's correlation coefficient of two 1-D arrays.

    Returns `nan` when either array is constant (the coefficient is
    undefined).

    Example:
    >>> round(pearson([1, 2, 3], [2, 4, 7]), 4)
    0.9934
    """
    x, y = _check_pair(y_true, y_pred)
    x = x - x.mean()
    y = y - y.mean()
    denominator = np.sqrt((x * x).sum() * (y * y).sum())
    return float((x * y).sum() / denominator) if denominator > 0 else float("nan")


def spearman(y_true, y_pred):
    """Spearman's rank correlation: Pearson's on the ranks (ties averaged).

    Example:
    >>> spearman([1, 2, 3], [2, 4, 70])
    1.0
    """
    x, y = _check_pair(y_true, y_pred)
    return pearson(rankdata(x), rankdata(y))


class RegressionReport:
    """Scores of a regressor, per output.

    Build it with `kt.metrics.regression_report(y_true, y_pred)` or
    `model.report(x, y)` on a `kt.TextRegressor`. With one output, every
    attribute is a float; with several, a NumPy array with one per output.

    Attributes:
        mse, rmse, mae: mean squared error, its root, mean absolute error.
        r2: coefficient of determination (1 is perfect, 0 is predicting
            the mean).
        pearson, spearman: correlation with the targets (`nan` when either
            side is constant).
        num_examples: number of examples scored.
        output_names: one name per output.
    """

    _FIELDS = ("mse", "rmse", "mae", "r2", "pearson", "spearman")

    def __init__(self, y_true, y_pred, output_names=None):
        y_true, y_pred = _check_pair(y_true, y_pred)
        columns = [(y_true, y_pred)] if y_true.ndim == 1 else list(zip(y_true.T, y_pred.T))
        self.num_examples = len(y_true)
        self.output_names = list(output_names) if output_names else [f"output_{i}" for i in range(len(columns))]
        if len(self.output_names) != len(columns):
            raise ValueError(f"{len(self.output_names)} output_names for {len(columns)} outputs.")
        scores = {field: [] for field in self._FIELDS}
        for t, p in columns:
            error = p - t
            mse = float(np.mean(error**2))
            variance = float(np.mean((t - t.mean()) ** 2))
            scores["mse"].append(mse)
            scores["rmse"].append(float(np.sqrt(mse)))
            scores["mae"].append(float(np.mean(np.abs(error))))
            scores["r2"].append(1 - mse / variance if variance > 0 else float("nan"))
            scores["pearson"].append(pearson(t, p))
            scores["spearman"].append(spearman(t, p))
        single = len(columns) == 1
        for field, values in scores.items():
            setattr(self, field, values[0] if single else np.array(values))

    def to_dict(self):
        """The scores as plain Python numbers (lists with several outputs)."""
        result = {}
        for field in self._FIELDS:
            value = getattr(self, field)
            result[field] = value.tolist() if isinstance(value, np.ndarray) else value
        result["num_examples"] = self.num_examples
        result["output_names"] = list(self.output_names)
        return result

    def __str__(self):
        width = max([len(n) for n in self.output_names] + [8])
        lines = [f"{'':<{width}}  " + "  ".join(f"{f:>8}" for f in self._FIELDS) + "  examples"]
        for i, name in enumerate(self.output_names):
            values = [np.atleast_1d(getattr(self, f))[i] for f in self._FIELDS]
            lines.append(f"{name:<{width}}  " + "  ".join(f"{v:8.4f}" for v in values) + f"  {self.num_examples:8d}")
        return "\n".join(lines)

    def __repr__(self):
        values = ", ".join(f"{f}={np.round(getattr(self, f), 4)}" for f in ("rmse", "mae", "pearson", "spearman"))
        return f"RegressionReport({values}, num_examples={self.num_examples})"


def regression_report(y_true, y_pred, output_names=None):
    """Scores real-valued predictions against the targets.

    Args:
        y_true: targets, shape `(examples,)` or `(examples, outputs)`.
        y_pred: predictions of the same shape (a `(examples, 1)` column
            counts as `(examples,)`).
        output_names: names of the outputs. Defaults to `None`
            (`"output_0"`, …).

    Returns:
        A `RegressionReport`.

    Example:
    >>> report = regression_report([1.0, 2.0, 3.0], [1.5, 2.0, 2.5])
    >>> report.mae, report.spearman
    (0.3333333333333333, 1.0)
    """
    return RegressionReport(y_true, y_pred, output_names)


@keras.saving.register_keras_serializable(package="keras_transfer")
class PearsonCorrelation(keras.metrics.Metric):
    """Pearson's correlation over the whole dataset, accumulated by batch.

    Keeps the running sums of `y`, `ŷ`, `y²`, `ŷ²` and `y·ŷ` per output
    (shifted by the first batch's means, for float32 precision),
    so the result is exactly the correlation of everything seen since the
    last reset, not an average of per-batch correlations. With several
    outputs, the result is their mean. An undefined correlation (constant
    targets or predictions) reads 0.

    Args:
        name: the metric's name. Defaults to `"pearson"`.
        dtype: dtype of the sums. Defaults to `None` (Keras' float type,
            float32 unless set).

    Example:
    ```python
    metric = kt.metrics.PearsonCorrelation()
    metric.update_state([1.0, 2.0], [2.0, 4.0])
    metric.update_state([3.0], [7.0])
    float(metric.result())  # 0.9934, as pearson([1, 2, 3], [2, 4, 7])
    ```
    """

    def __init__(self, name="pearson", dtype=None):
        super().__init__(name=name, dtype=dtype)
        self._direction = "up"
        self._sums = None

    def _build(self, outputs):
        self._sums = [
            self.add_variable(shape=(outputs,), initializer="zeros", name=name)
            for name in (
                "n", "sum_true", "sum_pred", "sum_true2", "sum_pred2", "sum_product",
                "shift_true", "shift_pred",
            )
        ]

    def update_state(self, y_true, y_pred, sample_weight=None):
        ops = keras.ops
        y_true = ops.convert_to_tensor(y_true, dtype=self.dtype)
        y_pred = ops.convert_to_tensor(y_pred, dtype=self.dtype)
        if len(y_pred.shape) == 1:
            y_pred = ops.expand_dims(y_pred, -1)
        y_true = ops.reshape(y_true, ops.shape(y_pred))
        if self._sums is None:
            self._build(y_pred.shape[-1])
        n, *sums, shift_true, shift_pred = self._sums
        # Sums of values minus the first batch's mean: the correlation does
        # not change, and float32 keeps its precision when the predictions
        # vary little around a large mean (E[x²] - E[x]² would cancel out).
        first = ops.equal(n, 0.0)
        shift_true.assign(ops.where(first, ops.mean(y_true, axis=0), shift_true))
        shift_pred.assign(ops.where(first, ops.mean(y_pred, axis=0), shift_pred))
        t = y_true - shift_true
        p = y_pred - shift_pred
        weight = ops.ones_like(t)
        if sample_weight is not None:
            weight = weight * ops.reshape(ops.convert_to_tensor(sample_weight, dtype=self.dtype), (-1, 1))
        for variable, value in zip([n] + sums, (weight, weight * t, weight * p, weight * t * t, weight * p * p, weight * t * p)):
            variable.assign(variable + ops.sum(value, axis=0))

    def result(self):
        ops = keras.ops
        if self._sums is None:
            return ops.convert_to_tensor(0.0, dtype=self.dtype)
        n, st, sp, st2, sp2, stp = self._sums[:6]
        n = ops.maximum(n, 1.0)
        covariance = stp / n - (st / n) * (sp / n)
        var_true = ops.maximum(st2 / n - (st / n) ** 2, 0.0)
        var_pred = ops.maximum(sp2 / n - (sp / n) ** 2, 0.0)
        denominator = ops.sqrt(var_true * var_pred)
        safe = ops.where(denominator > 0, denominator, 1.0)
        correlation = ops.where(denominator > 0, covariance / safe, 0.0)
        return ops.mean(correlation)

    def align_for_sum(self, all_sum):
        """Re-centres this process's sums on a shift every process shares.

        `kt.distributed.reduce_metrics` sums each metric variable over the
        processes, which gives the whole set's sums only if every process
        shifted its values by the same amount; each one shifted by the mean
        of its own first batch. So first every process moves its sums to the
        processes' common mean (exactly, with the shifts' differences, which
        are small: no precision is lost). Every process must call it
        together.

        Args:
            all_sum: a function from a tensor to its sum over the processes.
        """
        if self._sums is None:
            return
        ops = keras.ops
        n, st, sp, st2, sp2, stp, shift_true, shift_pred = self._sums
        totals = all_sum(ops.stack([n, n * shift_true, n * shift_pred, ops.ones_like(n)]))
        count = ops.maximum(totals[0], 1.0)
        common_true, common_pred = totals[1] / count, totals[2] / count
        dt, dp = shift_true - common_true, shift_pred - common_pred
        # x - common = (x - shift) + dt, for every sum (old values on the right).
        st2.assign(st2 + 2 * dt * st + n * dt * dt)
        sp2.assign(sp2 + 2 * dp * sp + n * dp * dp)
        stp.assign(stp + dt * sp + dp * st + n * dt * dp)
        st.assign(st + n * dt)
        sp.assign(sp + n * dp)
        # The shifts are summed as well: each process holds its share.
        shift_true.assign(common_true / totals[3])
        shift_pred.assign(common_pred / totals[3])

    def reset_state(self):
        for variable in self._sums or []:
            variable.assign(keras.ops.zeros(variable.shape, dtype=variable.dtype))

    def get_config(self):
        return {"name": self.name, "dtype": self.dtype}
