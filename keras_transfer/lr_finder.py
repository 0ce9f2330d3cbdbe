"""The learning-rate range test (Smith 2017; fastai's `lr_find`).

Train for a few steps while the learning rate grows exponentially from
`min_lr` to `max_lr`, record the loss of every step, and pick a rate where
the loss falls fastest. The model's weights, its optimizer and the random
state are exactly as before afterwards: the sweep runs with a fresh copy of
the optimizer, every weight is restored from a snapshot, and so are the
random generators its steps drew from (a `fit` after the sweep is the `fit`
without it, dropout masks included).
"""

import math

import keras
import numpy as np

from keras_transfer.optimizers import inner_optimizer
from keras_transfer.schedules import _is_integer, _is_number


@keras.saving.register_keras_serializable(package="keras_transfer")
class ExponentialSweep(keras.optimizers.schedules.LearningRateSchedule):
    """`min_lr * (max_lr / min_lr) ** (step / (steps - 1))`: the range test's rates.

    Args:
        min_lr: rate of the first step.
        max_lr: rate of step `steps - 1` (and after).
        steps: number of steps of the sweep.
    """

    def __init__(self, min_lr, max_lr, steps):
        self.min_lr = float(min_lr)
        self.max_lr = float(max_lr)
        self.steps = int(steps)

    def __call__(self, step):
        fraction = keras.ops.minimum(keras.ops.cast(step, "float32") / max(self.steps - 1, 1), 1.0)
        return self.min_lr * keras.ops.power(self.max_lr / self.min_lr, fraction)

    def rate(self, step):
        """The rate of `step`, in double precision (for the record)."""
        fraction = min(step / max(self.steps - 1, 1), 1.0)
        return self.min_lr * (self.max_lr / self.min_lr) ** fraction

    def get_config(self):
        return {"min_lr": self.min_lr, "max_lr": self.max_lr, "steps": self.steps}


class LRFinderResult:
    """What `find_learning_rate` measured.

    Attributes:
        learning_rates: the rate of each step that ran (ascending).
        raw_losses: the loss of each step.
        losses: `raw_losses` smoothed by an exponential moving average
            with bias correction (fastai's, `beta=smoothing`).
        suggestion: the rate at the steepest descent of the smoothed loss
            (the most negative slope of loss against log rate), taken before
            the loss reaches its minimum.
        min_loss_rate: the rate at the lowest smoothed loss; a tenth of it
            is the other common rule of thumb (`min_loss_rate / 10`).
        stopped_early: whether the sweep stopped because the loss
            diverged.
    """

    def __init__(self, learning_rates, raw_losses, smoothing, stopped_early):
        self.learning_rates = np.asarray(learning_rates, dtype="float64")
        self.raw_losses = np.asarray(raw_losses, dtype="float64")
        self.smoothing = smoothing
        self.losses = _smooth(self.raw_losses, smoothing)
        self.stopped_early = stopped_early
        self.min_loss_rate, self.suggestion = _suggest(self.learning_rates, self.losses)

    def __repr__(self):
        return (
            f"LRFinderResult({len(self.learning_rates)} steps from {self.learning_rates[0]:.2g} to "
            f"{self.learning_rates[-1]:.2g}, suggestion={self.suggestion:.2g} (steepest descent), "
            f"min_loss_rate={self.min_loss_rate:.2g})"
        )

    def plot(self, path=None, skip_start=0, skip_end=0):
        """Plots the smoothed loss against the learning rate (log scale).

        The suggestion is marked. Works in a notebook (the returned Figure
        displays itself) and without a display.

        Args:
            path: also save the plot to this file (PNG, SVG, PDF…).
                Defaults to `None`.
            skip_start: leave out this many first steps. Defaults to `0`.
            skip_end: leave out this many last steps. Defaults to `0`.

        Returns:
            The `matplotlib.figure.Figure`.
        """
        from keras_transfer.plotting import check_path, new_figure

        path = check_path(path)
        end = len(self.losses) - skip_end if skip_end else len(self.losses)
        rates, losses = self.learning_rates[skip_start:end], self.losses[skip_start:end]
        figure = new_figure(figsize=(6, 4), layout="constrained")
        axes = figure.add_subplot()
        axes.plot(rates, losses, label="loss (smoothed)")
        axes.set_xscale("log")
        axes.set_xlabel("learning rate (log scale)")
        axes.set_ylabel("training loss")
        index = int(np.argmin(np.abs(np.log(self.learning_rates) - math.log(self.suggestion))))
        axes.plot(
            [self.suggestion], [self.losses[index]], "o", color="tab:red",
            label=f"steepest descent: {self.suggestion:.2g}",
        )
        axes.axvline(self.min_loss_rate / 10, color="tab:gray", linestyle=":", label=f"min loss / 10: {self.min_loss_rate / 10:.2g}")
        axes.set_title("Learning-rate range test")
        axes.legend()
        if path is not None:
            figure.savefig(path, dpi=100)
        return figure


def _smooth(losses, beta):
    smoothed, average = [], 0.0
    for i, loss in enumerate(losses, start=1):
        average = beta * average + (1 - beta) * loss
        smoothed.append(average / (1 - beta**i))
    return np.asarray(smoothed)


def _suggest(rates, losses):
    """(rate at the lowest loss, rate at the steepest descent before it).

    The first tenth of the steps is left out of the search for the
    steepest descent: there the moving average still carries the noise of
    its first few values.
    """
    skip = len(rates) // 10
    lowest = skip + int(np.argmin(losses[skip:]))
    if lowest - skip < 2:
        return float(rates[lowest]), float(rates[lowest])
    slopes = np.gradient(losses, np.log(rates))
    steepest = skip + int(np.argmin(slopes[skip : lowest + 1]))
    return float(rates[lowest]), float(rates[steepest])


class _Sweep(keras.callbacks.Callback):
    """Records the loss of each step; stops after `steps` or on divergence."""

    def __init__(self, schedule, steps, diverge, smoothing):
        super().__init__()
        self.smoothing = smoothing
        self.schedule = schedule
        self.steps = steps
        self.diverge = diverge
        self.rates, self.losses = [], []
        self.stopped_early = False
        self._best = math.inf
        self._smoothed = 0.0

    def on_epoch_begin(self, epoch, logs=None):
        # Keras resets the loss tracker just before: each step's sums are
        # read once, at its end, and are the next step's starting point.
        self._previous_mean = 0.0
        self._tracked = _loss_sums(self.model)

    def on_train_batch_end(self, batch, logs=None):
        # Keras logs the running mean of the epoch, weighted by batch size
        # (batches by length differ in size, and the last is smaller): the
        # step's own loss is what its batch added to the sum, per example.
        mean = float(logs["loss"])
        before, after = self._tracked, _loss_sums(self.model)
        self._tracked = after
        if before is not None and after is not None and after[1] > before[1]:
            loss = (after[0] - before[0]) / (after[1] - before[1])
        else:  # no loss tracker to read: batches taken as equal
            loss = (batch + 1) * mean - batch * self._previous_mean
        self._previous_mean = mean
        self.rates.append(self.schedule.rate(len(self.rates)))
        self.losses.append(loss)
        count = len(self.losses)
        beta = self.smoothing
        self._smoothed = beta * self._smoothed + (1 - beta) * loss
        smoothed = self._smoothed / (1 - beta**count)
        self._best = min(self._best, smoothed)
        if not math.isfinite(loss) or (count > 5 and smoothed > self.diverge * self._best):
            self.stopped_early = True
            self.model.stop_training = True
        if count >= self.steps:
            self.model.stop_training = True


def _loss_sums(model):
    """(sum of the losses, examples) in `model`'s loss tracker this epoch, or None."""
    tracker = getattr(model, "_loss_tracker", None)
    total, count = getattr(tracker, "total", None), getattr(tracker, "count", None)
    if total is None or count is None:
        return None
    return float(keras.ops.convert_to_numpy(total)), float(keras.ops.convert_to_numpy(count))


def _check(min_lr, max_lr, steps, smoothing, diverge):
    """The arguments as Python numbers (NumPy's taken too), or a clear error."""
    for name, value in (("min_lr", min_lr), ("max_lr", max_lr)):
        if not _is_number(value) or not value > 0:
            raise ValueError(f"Expected `{name}` to be a positive number. Received: {name}={value!r}")
    if not min_lr < max_lr:
        raise ValueError(f"Expected min_lr < max_lr. Received: min_lr={min_lr!r}, max_lr={max_lr!r}")
    if not _is_integer(steps) or steps < 5:
        raise ValueError(f"Expected `steps` to be an integer of at least 5. Received: steps={steps!r}")
    if not _is_number(smoothing) or not 0 <= smoothing < 1:
        raise ValueError(f"Expected `smoothing` in [0, 1). Received: smoothing={smoothing!r}")
    if not _is_number(diverge) or not diverge > 1:
        raise ValueError(f"Expected `diverge` > 1 (a factor over the best loss). Received: diverge={diverge!r}")
    return float(min_lr), float(max_lr), int(steps), float(smoothing), float(diverge)


def _sweep_optimizer(original, schedule):
    """A fresh, unbuilt copy of `original` with `schedule` as its rate.

    Same class and settings; one update per step (no gradient
    accumulation); the same variables kept out of weight decay (the
    exclusions are not part of an optimizer's config: Keras keeps them in
    `_exclude_from_weight_decay`, a set of variable keys, and
    `_exclude_from_weight_decay_pattern`, a compiled pattern of names).
    """
    # Under "mixed_float16", a copy of the optimizer inside Keras'
    # LossScaleOptimizer (`compile` wraps the copy in a fresh one).
    original = inner_optimizer(original)
    config = original.get_config()
    config["learning_rate"] = schedule
    config.pop("gradient_accumulation_steps", None)
    sweep = type(original).from_config(config)
    sweep._exclude_from_weight_decay = set(getattr(original, "_exclude_from_weight_decay", None) or ())
    sweep._exclude_from_weight_decay_pattern = getattr(original, "_exclude_from_weight_decay_pattern", None)
    sweep._exclude_from_weight_decay_cache = {}
    return sweep


def _save_random_state(model):
    """Every random state a step draws from, to put back after the sweep.

    The dropout of the model's layers draws from their Keras
    `SeedGenerator`s (state variables, not among the weights), unseeded
    random ops from Keras' global one; data loading and anything unseeded
    from torch's (CPU and CUDA), NumPy's and Python's. Left advanced by the
    sweep, a later `fit` would draw other dropout masks than without it.
    """
    from keras.src.backend.common import global_state
    from keras.src.random.seed_generator import GLOBAL_SEED_GENERATOR

    from keras_transfer.callbacks.backup import _random_state, _seed_generators

    generators = _seed_generators(model)
    global_generator = global_state.get_global_attribute(GLOBAL_SEED_GENERATOR)
    state = {
        "generators": [(variable, np.array(variable.numpy(), copy=True)) for variable in generators],
        "global_generator": global_generator,
        "global_value": None if global_generator is None else np.array(global_generator.state.numpy(), copy=True),
        "global": _random_state(),  # Python's, NumPy's and torch's (CPU)
    }
    if keras.config.backend() == "torch":
        import torch

        if torch.cuda.is_available() and torch.cuda.is_initialized():
            state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _restore_random_state(state):
    from keras.src.backend.common import global_state
    from keras.src.random.seed_generator import GLOBAL_SEED_GENERATOR

    from keras_transfer.callbacks.backup import _set_random_state

    for variable, value in state["generators"]:
        variable.assign(value)
    # A global generator the sweep created (from Python's random state)
    # goes: the next random op creates it again, from the state put back.
    global_state.set_global_attribute(GLOBAL_SEED_GENERATOR, state["global_generator"])
    if state["global_generator"] is not None:
        state["global_generator"].state.assign(state["global_value"])
    _set_random_state(state["global"])
    if "cuda" in state:
        import torch

        torch.cuda.set_rng_state_all(state["cuda"])


def find_learning_rate(
    model,
    x,
    y=None,
    min_lr=1e-7,
    max_lr=1.0,
    steps=100,
    batch_size=None,
    smoothing=0.98,
    diverge=4.0,
    verbose=0,
):
    """Runs the learning-rate range test on a compiled task model.

    The sweep uses a fresh copy of the model's optimizer (same class and
    settings, its learning rate replaced by `ExponentialSweep`), so the
    model's own optimizer, its state and its schedule are untouched; every
    weight of the model is restored afterwards, and so is the random state
    (torch's CPU and CUDA generators, the Keras `SeedGenerator`s of the
    model's dropout layers and Keras' global one, NumPy's and Python's):
    `find_learning_rate` then `fit` gives the weights of `fit` alone.
    With a frozen backbone and raw text, the backbone's features are
    computed once and only the head runs each step (feature caching),
    which makes the test fast.

    Args:
        model: a `kt.Task` (compiled; `compile()` defaults are applied
            if not).
        x: training data, as for `fit` (raw texts, a `TextData`, …).
        y: labels, when `x` holds texts only. Defaults to `None`.
        min_lr: rate of the first step. Defaults to `1e-7`.
        max_lr: rate of the last step. Defaults to `1.0`.
        steps: number of steps; the data is cycled when it has fewer
            batches. Defaults to `100`.
        batch_size: as for `fit`. Defaults to `None` (32).
        smoothing: `beta` of the loss's moving average. Defaults to `0.98`.
        diverge: stop once the smoothed loss exceeds `diverge` times its
            best. Defaults to `4.0`.
        verbose: as for `fit`. Defaults to `0`.

    Returns:
        An `LRFinderResult` (`.learning_rates`, `.losses`, `.suggestion`,
        `.plot()`).
    """
    from keras_transfer.tasks.base import Task, check_verbose  # base imports this module

    if not isinstance(model, Task):
        raise ValueError(
            "`kt.lr_finder.find_learning_rate` expects a keras_transfer task model, such as "
            f"a kt.TextClassifier. Received: {model!r} of type {type(model).__name__}."
        )
    min_lr, max_lr, steps, smoothing, diverge = _check(min_lr, max_lr, steps, smoothing, diverge)
    check_verbose(verbose)
    if getattr(model, "optimizer", None) is None:
        model.compile()
    saved_compile = dict(model._compile_config.config)
    saved_compiled_with = dict(model._compiled_with)
    snapshot = [np.array(v.numpy(), copy=True) for v in model.weights]
    random_state = _save_random_state(model)
    original = model.optimizer
    schedule = ExponentialSweep(min_lr, max_lr, steps)
    sweep_optimizer = _sweep_optimizer(original, schedule)
    callback = _Sweep(schedule, steps, diverge, smoothing)
    try:
        keras.Model.compile(model, optimizer=sweep_optimizer, loss=saved_compiled_with["loss"], metrics=[])
        model._compiled_with = {"loss": saved_compiled_with["loss"], "metrics": []}
        data, labels = model._as_batches(x, y, batch_size, shuffle=True, seed=0)
        from keras_transfer.tasks.base import _length  # batches per epoch of any data

        batches = _length(data, batch_size)
        epochs = max(1, -(-steps // batches)) if batches else 1
        model.fit(
            data,
            labels,
            batch_size=None if labels is None else batch_size,
            epochs=epochs,
            callbacks=[callback],
            verbose=verbose,
        )
    finally:
        for variable, value in zip(model.weights, snapshot):
            variable.assign(value)
        _restore_random_state(random_state)
        keras.Model.compile(model, **saved_compile)
        if model.optimizer is not original:
            # Under "mixed_float16" compile wraps the optimizer in a new
            # LossScaleOptimizer: the one with the loss scale reached so far
            # goes back.
            model.optimizer = original
        model._compiled_with = saved_compiled_with
    if len(callback.losses) < 2:
        raise ValueError(
            f"The learning-rate sweep ran {len(callback.losses)} step(s); it "
            "needs more data or a larger `steps`."
        )
    return LRFinderResult(callback.rates, callback.losses, smoothing, callback.stopped_early)
