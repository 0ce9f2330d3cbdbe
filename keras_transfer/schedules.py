"""Learning-rate schedules, serializable like Keras' own.

`WarmupLinearDecay` (BERT's, the default of `compile()`), `OneCycle`
(fastai's `fit_one_cycle`) and `SlantedTriangular` (ULMFiT). Each is a
`keras.optimizers.schedules.LearningRateSchedule`: give it to any Keras
optimizer as its `learning_rate`; it saves and reloads with the model.
"""

import math
import numbers

import keras
from keras import ops


def _is_number(value):
    """A real number, Python's or NumPy's (`np.float32(1e-3)`), but not a bool."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _is_integer(value):
    """An integer, Python's or NumPy's (`np.int64(10)`), but not a bool."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


@keras.saving.register_keras_serializable(package="keras_transfer")
class WarmupLinearDecay(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warmup to a peak, then linear decay to zero (BERT's schedule).

    Args:
        peak_learning_rate: the rate reached at the end of the warmup.
        total_steps: steps of the whole schedule; after them the rate stays
            at zero.
        warmup_steps: steps of the linear warmup. Defaults to `0`.
        start_step: the optimizer iteration at which the schedule begins,
            so that a second `fit` can start a fresh schedule. Defaults to
            `0`.
        sized_by_fit: let a keras_transfer task's `fit` set `total_steps`,
            `warmup_steps` (as the same share of the total) and `start_step`
            from the data it is given. `compile()` without an optimizer
            creates such a schedule. Defaults to `False`.
        steps_per_update: batches per optimizer update, with gradient
            accumulation. Keras evaluates a schedule at the count of
            batches; the schedule counts updates (`step //
            steps_per_update`), so the rate stays the same over the batches
            of one accumulated update. `fit` sets it from the optimizer's
            `gradient_accumulation_steps`. Defaults to `1`.

    Example:
    ```python
    schedule = kt.schedules.WarmupLinearDecay(1e-3, total_steps=1000, warmup_steps=100)
    float(schedule(100))  # 1e-3
    ```
    """

    def __init__(
        self,
        peak_learning_rate,
        total_steps,
        warmup_steps=0,
        start_step=0,
        sized_by_fit=False,
        warmup_share=None,
        steps_per_update=1,
    ):
        if isinstance(peak_learning_rate, keras.optimizers.schedules.LearningRateSchedule):
            # `compile(learning_rate=schedule)` lands here: compile's
            # `learning_rate` is the peak of this, its default schedule.
            raise ValueError(
                "Expected `learning_rate` of `compile()` to be a number: the peak "
                "of its default schedule (linear warmup, then linear decay; the "
                "`peak_learning_rate` of WarmupLinearDecay). Received a schedule: "
                f"{type(peak_learning_rate).__name__}. To train with your own "
                "schedule, give it to your own optimizer: `model.compile("
                "optimizer=keras.optimizers.AdamW(learning_rate=schedule))`."
            )
        if not _is_number(peak_learning_rate) or not peak_learning_rate > 0:
            raise ValueError(
                "Expected `peak_learning_rate` to be positive (a number: "
                "`compile()` passes its `learning_rate` here). "
                f"Received: peak_learning_rate={peak_learning_rate!r}"
            )
        if (
            not _is_integer(total_steps)
            or not _is_integer(warmup_steps)
            or not total_steps >= 1
            or not 0 <= warmup_steps <= total_steps
        ):
            raise ValueError(
                "Expected 0 <= warmup_steps <= total_steps and total_steps >= 1. "
                f"Received: warmup_steps={warmup_steps!r}, total_steps={total_steps!r}"
            )
        self.peak_learning_rate = float(peak_learning_rate)
        self.total_steps = int(total_steps)
        self.warmup_steps = int(warmup_steps)
        self.start_step = int(start_step)
        self.sized_by_fit = bool(sized_by_fit)
        self.steps_per_update = max(int(steps_per_update), 1)
        # Kept apart from the rounded step counts so that a short fit (where
        # 10% rounds to 0 steps) does not erase the warmup of later fits.
        self.warmup_share = (
            self.warmup_steps / self.total_steps if warmup_share is None else float(warmup_share)
        )

    def resize(self, total_steps, start_step, steps_per_update=1):
        """Stretches the schedule over `total_steps` updates from batch `start_step`."""
        self.total_steps = max(int(total_steps), 1)
        self.warmup_steps = int(round(self.warmup_share * self.total_steps))
        self.start_step = int(start_step)
        self.steps_per_update = max(int(steps_per_update), 1)

    def __call__(self, step):
        torch_step = _torch_step(step)
        if torch_step is not None:
            # The torch calls Keras' ops make, without Keras' dispatch and the
            # tensors it makes of the bounds (50 µs a step, a third of a
            # frozen-backbone step's optimizer update): the same float32
            # arithmetic, bit for bit.
            import torch

            return self._rate(torch_step.float(), torch.floor, torch.where, torch.clip)
        return self._rate(ops.cast(step, "float32"), ops.floor, ops.where, ops.clip)

    def _rate(self, step, floor, where, clip):
        """The rate at float32 `step`, with these `floor`, `where`, `clip`."""
        step = step - self.start_step
        if self.steps_per_update > 1:
            step = floor(step / self.steps_per_update)
        peak = self.peak_learning_rate
        warmup = peak * (step + 1) / max(self.warmup_steps, 1)
        decay_steps = max(self.total_steps - self.warmup_steps, 1)
        decay = peak * (self.total_steps - step) / decay_steps
        return clip(where(step < self.warmup_steps, warmup, decay), 0.0, peak)

    def get_config(self):
        return {
            "peak_learning_rate": self.peak_learning_rate,
            "total_steps": self.total_steps,
            "warmup_steps": self.warmup_steps,
            "start_step": self.start_step,
            "sized_by_fit": self.sized_by_fit,
            "warmup_share": self.warmup_share,
            # Only with gradient accumulation, so older configs read the same.
            **({"steps_per_update": self.steps_per_update} if self.steps_per_update > 1 else {}),
        }


def _torch_step(step):
    """`step` (a Keras variable's value, or a tensor) as a torch tensor on
    the torch backend outside a traced or symbolic call; else None."""
    if keras.config.backend() != "torch":
        return None
    import torch

    if isinstance(step, keras.Variable):
        from keras.src.backend.common.stateless_scope import in_stateless_scope

        if in_stateless_scope():
            return None
        step = step.value
    if not isinstance(step, torch.Tensor) or torch.compiler.is_compiling():
        return None
    return step


def _check_schedule_args(name, max_learning_rate, total_steps):
    if not _is_number(max_learning_rate) or not max_learning_rate > 0:
        raise ValueError(
            f"Expected `max_learning_rate` of {name} to be a positive number. "
            f"Received: max_learning_rate={max_learning_rate!r}"
        )
    if not _is_integer(total_steps) or total_steps < 1:
        raise ValueError(
            f"Expected `total_steps` of {name} to be a positive integer (the "
            f"number of optimizer steps it spans). Received: total_steps={total_steps!r}"
        )


@keras.saving.register_keras_serializable(package="keras_transfer")
class OneCycle(keras.optimizers.schedules.LearningRateSchedule):
    """The one-cycle policy (Smith 2018, as in fastai's `fit_one_cycle`).

    The rate rises from `max_learning_rate / div_factor` to
    `max_learning_rate` over the first `pct_start` of the steps, then falls
    to `max_learning_rate / (div_factor * final_div_factor)`, both halves
    along a cosine. After `total_steps` it stays at the final rate.

    Args:
        max_learning_rate: the peak rate.
        total_steps: steps of the whole cycle. Keras evaluates a schedule
            at the count of batches: with `gradient_accumulation_steps=k`,
            give `k` times the number of updates.
        pct_start: share of the steps spent rising. Defaults to `0.25`
            (fastai's value).
        div_factor: the starting rate is `max_learning_rate / div_factor`.
            Defaults to `25.0`.
        final_div_factor: the final rate is the starting rate divided by
            this. Defaults to `1e4`.
        start_step: the optimizer iteration at which the cycle begins.
            Defaults to `0`.

    Example:
    ```python
    schedule = kt.schedules.OneCycle(1e-3, total_steps=100)
    float(schedule(0)), float(schedule(25)), float(schedule(100))  # 4e-5, 1e-3, 4e-9
    model.compile(optimizer=keras.optimizers.AdamW(schedule))
    ```
    """

    def __init__(
        self,
        max_learning_rate,
        total_steps,
        pct_start=0.25,
        div_factor=25.0,
        final_div_factor=1e4,
        start_step=0,
    ):
        _check_schedule_args("OneCycle", max_learning_rate, total_steps)
        if not _is_number(pct_start) or not 0 < pct_start < 1:
            raise ValueError(
                "Expected `pct_start` (the share of steps spent rising) in (0, 1). "
                f"Received: pct_start={pct_start!r}"
            )
        for name, value in (("div_factor", div_factor), ("final_div_factor", final_div_factor)):
            if not _is_number(value) or not value >= 1:
                raise ValueError(f"Expected `{name}` to be a number >= 1. Received: {name}={value!r}")
        self.max_learning_rate = float(max_learning_rate)
        self.total_steps = int(total_steps)
        self.pct_start = float(pct_start)
        self.div_factor = float(div_factor)
        self.final_div_factor = float(final_div_factor)
        self.start_step = int(start_step)

    def __call__(self, step):
        step = ops.cast(step, "float32") - self.start_step
        peak = self.max_learning_rate
        start = peak / self.div_factor
        end = start / self.final_div_factor
        up_steps = max(self.pct_start * self.total_steps, 1.0)
        down_steps = max(self.total_steps - up_steps, 1.0)
        up = ops.clip(step / up_steps, 0.0, 1.0)
        down = ops.clip((step - up_steps) / down_steps, 0.0, 1.0)
        # Cosine from a to b as the fraction p goes 0 -> 1.
        rising = peak + (start - peak) * (1 + ops.cos(math.pi * up)) / 2
        falling = end + (peak - end) * (1 + ops.cos(math.pi * down)) / 2
        return ops.where(step < up_steps, rising, falling)

    def get_config(self):
        return {
            "max_learning_rate": self.max_learning_rate,
            "total_steps": self.total_steps,
            "pct_start": self.pct_start,
            "div_factor": self.div_factor,
            "final_div_factor": self.final_div_factor,
            "start_step": self.start_step,
        }


@keras.saving.register_keras_serializable(package="keras_transfer")
class SlantedTriangular(keras.optimizers.schedules.LearningRateSchedule):
    """Slanted triangular learning rates (Howard & Ruder 2018, ULMFiT).

    A short linear rise over the first `cut_frac` of the steps, then a long
    linear decay. At step `t` of `T`, with `cut = floor(T * cut_frac)`:
    `p = t / cut` while rising, else
    `p = 1 - (t - cut) / (cut * (1 / cut_frac - 1))`, and the rate is
    `max_learning_rate * (1 + p * (ratio - 1)) / ratio`: from
    `max_learning_rate / ratio` up to `max_learning_rate` and back down.

    Args:
        max_learning_rate: the peak rate (the paper's `eta_max`).
        total_steps: steps of the whole schedule (`T`), counted in
            batches as Keras evaluates a schedule: with
            `gradient_accumulation_steps=k`, `k` times the updates.
        cut_frac: share of the steps spent rising. Defaults to `0.1`.
        ratio: how much smaller the lowest rate is than the peak. Defaults
            to `32` (the paper's value).
        start_step: the optimizer iteration at which the schedule begins.
            Defaults to `0`.

    Example:
    ```python
    schedule = kt.schedules.SlantedTriangular(0.01, total_steps=1000)
    float(schedule(0)), float(schedule(100)), float(schedule(1000))  # 3.1e-4, 0.01, 3.1e-4
    ```
    """

    def __init__(self, max_learning_rate, total_steps, cut_frac=0.1, ratio=32, start_step=0):
        _check_schedule_args("SlantedTriangular", max_learning_rate, total_steps)
        if not _is_number(cut_frac) or not 0 < cut_frac < 1:
            raise ValueError(
                "Expected `cut_frac` (the share of steps spent rising) in (0, 1). "
                f"Received: cut_frac={cut_frac!r}"
            )
        if not _is_number(ratio) or not ratio >= 1:
            raise ValueError(f"Expected `ratio` to be a number >= 1. Received: ratio={ratio!r}")
        self.max_learning_rate = float(max_learning_rate)
        self.total_steps = int(total_steps)
        self.cut_frac = float(cut_frac)
        self.ratio = float(ratio)
        self.start_step = int(start_step)

    def __call__(self, step):
        step = ops.cast(step, "float32") - self.start_step
        step = ops.clip(step, 0.0, float(self.total_steps))
        cut = max(math.floor(self.total_steps * self.cut_frac), 1)
        rising = step / cut
        falling = 1 - (step - cut) / max(cut * (1 / self.cut_frac - 1), 1.0)
        p = ops.clip(ops.where(step < cut, rising, falling), 0.0, 1.0)
        return self.max_learning_rate * (1 + p * (self.ratio - 1)) / self.ratio

    def get_config(self):
        return {
            "max_learning_rate": self.max_learning_rate,
            "total_steps": self.total_steps,
            "cut_frac": self.cut_frac,
            "ratio": self.ratio,
            "start_step": self.start_step,
        }
