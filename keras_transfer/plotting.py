"""Training curves from a Keras `History`, and figures that show themselves."""

import io

import numpy as np

from keras_transfer.saving import check_output_path


def new_figure(**kwargs):
    """A matplotlib Figure (no pyplot, no GUI) that a notebook displays as PNG.

    Without pyplot, IPython only knows how to show a figure if matplotlib's
    inline backend is active; `_repr_png_` makes it show in any kernel.
    """
    from matplotlib.figure import Figure

    class NotebookFigure(Figure):
        def _repr_png_(self):
            buffer = io.BytesIO()
            self.savefig(buffer, format="png", dpi=100)
            return buffer.getvalue()

    return NotebookFigure(**kwargs)


def check_path(path):
    """`path` as a string, once its folder is known to exist (else a clear error).

    Checked before anything is drawn, so a typo in the folder costs no
    plotting and gives no deep matplotlib/PIL stack trace.
    """
    return None if path is None else check_output_path(path, "the figure")


def _as_dict(history):
    if hasattr(history, "history") and isinstance(history.history, dict):
        return history.history
    if isinstance(history, dict):
        single = next((k for k, v in history.items() if isinstance(v, str) or not hasattr(v, "__len__")), None)
        if single is not None:
            # `{"loss": 0.5}` (what `evaluate(..., return_dict=True)` returns)
            # holds one value, not a curve: `len` would fail below.
            raise ValueError(
                f"Expected a list of values per epoch for each log; {single!r} holds one "
                f"value ({history[single]!r}). Pass the History `fit` returns (or its "
                "`.history`), not the results of `evaluate`."
            )
        return history
    raise ValueError(
        "Expected the History returned by `fit` (or its `.history` dict). "
        f"Received: {type(history).__name__}"
    )


def _validation_positions(history, epochs, count):
    """Where on the x-axis `count` validation values go, `epochs` being the
    training curve's positions.

    `fit` with `validation_freq` validates some epochs only: the History of
    a `kt` model records which (`validation_epochs`). A plain Keras History
    does not; when its `params` hold `validation_freq`, the validated epochs
    are those Keras picks with it. Failing both, the values go at the first
    `count` epochs, as for a History validated every epoch.
    """
    numbers = getattr(history, "validation_epochs", None)
    run = [int(e) + 1 for e in getattr(history, "epoch", None) or []]  # epoch numbers, 1-based
    # A resumed run (`initial_epoch`) numbers its epochs from there.
    known = run if len(run) == len(epochs) else [int(e) for e in epochs]
    if numbers is None and count < len(epochs):
        params = getattr(history, "params", None)
        freq = params.get("validation_freq") if isinstance(params, dict) else None
        if isinstance(freq, int) and not isinstance(freq, bool) and freq > 0:
            numbers = [e for e in known if e % freq == 0]
        elif isinstance(freq, (list, tuple)):
            numbers = [e for e in known if e in freq]
    if not isinstance(numbers, (list, tuple)) or len(numbers) != count or not all(n in known for n in numbers):
        return epochs[:count]
    return np.asarray([known.index(n) + 1 for n in numbers])


def plot_history(history, path=None, metrics=None):
    """Draws loss and metrics per epoch, training and validation, and the rate.

    One panel per quantity (`loss`, then each metric), with the training
    curve and, when logged, the validation curve (`val_…`), at the epochs
    that were validated (with `fit(..., validation_freq=2)`, every other
    one; see `_validation_positions`). A
    `learning_rate` log (from `kt.callbacks.LearningRateLogger`,
    `ReduceLROnPlateau` or `LearningRateScheduler`) gets its own panel on a
    log scale. A `stage` log (from `model.fine_tune`) draws a line where
    each stage begins. Needs matplotlib; works without a display, and the
    returned Figure shows itself in a notebook.

    Args:
        history: the `keras.callbacks.History` that `fit` returns, or its
            `.history` dictionary.
        path: also save the figure to this file (PNG, SVG, PDF…). Defaults
            to `None`.
        metrics: name, or list of names, of the quantities to draw.
            Defaults to `None`: every logged one except `stage` and
            bookkeeping logs.

    Returns:
        The `matplotlib.figure.Figure`.

    Example:
    ```python
    history = model.fit(train, validation_data=test, epochs=5)
    kt.plot_history(history, path="curves.png")
    ```
    """
    logs = _as_dict(history)
    if not logs or not any(len(v) for v in logs.values()):
        raise ValueError("The history is empty: train for at least one epoch before plotting it.")
    path = check_path(path)
    ignored = {"stage", "unfrozen_blocks", "epoch"}
    names = [k for k in logs if not k.startswith("val_") and k not in ignored and k != "learning_rate"]
    names.sort(key=lambda name: name != "loss")  # the loss first, then the metrics as logged
    if metrics is not None:
        if isinstance(metrics, str):
            metrics = [metrics]  # one name, not its characters
        if not isinstance(metrics, (list, tuple)) or not all(isinstance(m, str) for m in metrics):
            raise ValueError(
                "Expected `metrics` to be a name or a list of names of logged "
                f"quantities, such as ['loss']. Received: metrics={metrics!r}"
            )
        if not metrics:
            raise ValueError(
                "Expected at least one name in `metrics` (or `metrics=None` for "
                f"every logged quantity). The history has {sorted(logs)}."
            )
        unknown = [m for m in metrics if m not in logs]
        if unknown:
            raise ValueError(f"No logs named {unknown} in the history; it has {sorted(logs)}.")
        names = [m for m in metrics if m != "learning_rate"]
    rate = "learning_rate" in logs and (metrics is None or "learning_rate" in metrics)
    panels = len(names) + int(rate)
    figure = new_figure(figsize=(4.5 * panels, 3.6), layout="constrained")
    axes = figure.subplots(1, panels, squeeze=False)[0]
    epochs = np.arange(1, len(next(iter(logs.values()))) + 1)
    stages = logs.get("stage")
    for ax, name in zip(axes, names + (["learning_rate"] if rate else [])):
        values = np.asarray(logs[name], dtype="float64")
        ax.plot(epochs[: len(values)], values, marker="o", markersize=3, label="learning rate" if name == "learning_rate" else "train")
        if f"val_{name}" in logs:
            val = np.asarray(logs[f"val_{name}"], dtype="float64")
            at = _validation_positions(history, epochs, len(val))
            ax.plot(at, val, marker="o", markersize=3, label="validation")
        if name == "learning_rate" and np.all(values > 0):
            ax.set_yscale("log")
        if stages is not None:
            for i in range(1, len(stages)):
                if stages[i] != stages[i - 1]:
                    ax.axvline(i + 0.5, color="tab:gray", linestyle=":")
        ax.set_title(name.replace("_", " "))
        ax.set_xlabel("epoch")
        ax.legend()
    if path is not None:
        figure.savefig(path, dpi=100)
    return figure
