"""Logging the learning rate, so that training curves can show it."""

import keras

from keras_transfer.optimizers import inner_optimizer


class LearningRateLogger(keras.callbacks.Callback):
    """Adds the optimizer's current learning rate to each epoch's logs.

    Keras logs the learning rate only when a callback changes it
    (`ReduceLROnPlateau`, `LearningRateScheduler`); with a schedule such as
    `compile()`'s default warmup and decay, this records the rate of the
    last step of each epoch as `learning_rate` in `history.history`, which
    `kt.plot_history` draws. It only reads the optimizer, so a task model's
    `fit` still caches features while it runs.

    Example:
    ```python
    history = model.fit(train, epochs=3, callbacks=[kt.callbacks.LearningRateLogger()])
    history.history["learning_rate"]  # [rate after epoch 1, …]
    ```
    """

    def on_epoch_end(self, epoch, logs=None):
        optimizer = getattr(self.model, "optimizer", None)
        if logs is None or optimizer is None:
            return
        optimizer = inner_optimizer(optimizer)  # under "mixed_float16", the one inside
        schedule = optimizer._learning_rate
        if isinstance(schedule, keras.optimizers.schedules.LearningRateSchedule):
            # The rate of the epoch's last step (the optimizer's own property
            # gives the next step's, zero at the end of a decay to zero).
            step = max(int(keras.ops.convert_to_numpy(optimizer._iterations)) - 1, 0)
            rate = schedule(step)
        else:
            rate = optimizer.learning_rate
        logs["learning_rate"] = float(keras.ops.convert_to_numpy(rate))
