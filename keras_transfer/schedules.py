"""Learning-rate schedules, serializable like Keras' own."""

import keras
from keras import ops


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
    ):
        if not isinstance(peak_learning_rate, (int, float)) or not peak_learning_rate > 0:
            raise ValueError(
                "Expected `peak_learning_rate` to be positive. "
                f"Received: peak_learning_rate={peak_learning_rate!r}"
            )
        if (
            not isinstance(total_steps, int)
            or not isinstance(warmup_steps, int)
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
        # Kept apart from the rounded step counts so that a short fit (where
        # 10% rounds to 0 steps) does not erase the warmup of later fits.
        self.warmup_share = (
            self.warmup_steps / self.total_steps if warmup_share is None else float(warmup_share)
        )

    def resize(self, total_steps, start_step):
        """Stretches the schedule over `total_steps` steps from `start_step`."""
        self.total_steps = max(int(total_steps), 1)
        self.warmup_steps = int(round(self.warmup_share * self.total_steps))
        self.start_step = int(start_step)

    def __call__(self, step):
        step = ops.cast(step, "float32") - self.start_step
        peak = self.peak_learning_rate
        warmup = peak * (step + 1) / max(self.warmup_steps, 1)
        decay_steps = max(self.total_steps - self.warmup_steps, 1)
        decay = peak * (self.total_steps - step) / decay_steps
        rate = ops.where(step < self.warmup_steps, warmup, decay)
        return ops.clip(rate, 0.0, peak)

    def get_config(self):
        return {
            "peak_learning_rate": self.peak_learning_rate,
            "total_steps": self.total_steps,
            "warmup_steps": self.warmup_steps,
            "start_step": self.start_step,
            "sized_by_fit": self.sized_by_fit,
            "warmup_share": self.warmup_share,
        }
