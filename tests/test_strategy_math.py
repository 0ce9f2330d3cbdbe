"""The numbers behind the fine-tuning strategies: the rate each optimizer
update uses, across `fit` calls and under loss scaling, and the per-step
losses of the learning-rate finder. Each test compares against the formula
computed here, on the tiny 2-block BERT preset."""

import keras
import numpy as np
import pytest
from helpers import LABELS, TEXTS

import keras_transfer as kt
from keras_transfer.optimizers import add_variables

SEQUENCE_LENGTH = 16


def classifier(preset, freeze=True, seed=0, **kwargs):
    keras.utils.set_random_seed(seed)
    return kt.TextClassifier.from_preset(
        preset, num_classes=2, freeze=freeze, sequence_length=SEQUENCE_LENGTH, **kwargs
    )


class UpdateRates(keras.callbacks.Callback):
    """The learning rate of each optimizer update (the rate Keras reads at
    the batch that completes an accumulated update)."""

    def __init__(self):
        super().__init__()
        self.rates = []

    def on_train_batch_begin(self, batch, logs=None):
        optimizer = self.model.optimizer
        optimizer = getattr(optimizer, "inner_optimizer", None) or optimizer
        every = optimizer.gradient_accumulation_steps or 1
        if (int(optimizer._iterations.numpy()) + 1) % every == 0:
            self.rates.append(float(optimizer.learning_rate))


def linear_rates(peak, updates, warmup=0):
    """`compile()`'s default at updates 0 … updates-1: (u + 1) / warmup of
    the peak while warming up, then a straight line to zero at `updates`."""
    return [
        peak * (u + 1) / warmup if u < warmup else peak * (updates - u) / max(updates - warmup, 1)
        for u in range(updates)
    ]


def test_initial_epoch_fit_stretches_the_schedule_over_the_epochs_it_runs(bert_preset):
    """`fit(epochs=4, initial_epoch=2)` runs 2 epochs: the default schedule
    decays to zero over those, as over any fit's steps (it was sized for 4
    epochs and ended at 64% of the peak)."""
    model = classifier(bert_preset, compile=False)
    model.compile(learning_rate=1e-3, warmup=0.0)
    model.fit(TEXTS, LABELS, batch_size=4, epochs=2, verbose=0)
    rates = UpdateRates()
    model.fit(TEXTS, LABELS, batch_size=4, epochs=4, initial_epoch=2, verbose=0, callbacks=[rates])
    np.testing.assert_allclose(rates.rates, linear_rates(1e-3, 6), rtol=1e-5)


def test_mixed_float16_default_schedule_is_sized_by_each_fit(bert_preset):
    """Under "mixed_float16" Keras wraps the optimizer in a
    LossScaleOptimizer; `fit` still stretches the schedule inside it over
    its updates (it stayed at 1,000 steps: a long fit trained at zero)."""
    model = classifier(bert_preset, dtype="mixed_float16", compile=False)
    model.compile(learning_rate=1e-3, warmup=0.0, gradient_accumulation_steps=2)
    assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    for _ in range(2):
        rates = UpdateRates()
        model.fit(TEXTS[:8], LABELS[:8], batch_size=2, epochs=1, verbose=0, callbacks=[rates])
        np.testing.assert_allclose(rates.rates, linear_rates(1e-3, 2), rtol=1e-5)
    history = model.fit(
        TEXTS[:8], LABELS[:8], batch_size=2, epochs=2, verbose=0,
        callbacks=[kt.callbacks.LearningRateLogger()],
    )
    # The rate of each epoch's last update, as without loss scaling.
    np.testing.assert_allclose(history.history["learning_rate"], [linear_rates(1e-3, 4)[1], linear_rates(1e-3, 4)[3]], rtol=1e-5)


def test_mixed_float16_refuses_a_rate_callback_on_the_default_schedule(bert_preset):
    model = classifier(bert_preset, dtype="mixed_float16", compile=False)
    model.compile(learning_rate=1e-3)
    with pytest.raises(ValueError, match="ReduceLROnPlateau"):
        model.fit(TEXTS, LABELS, epochs=1, verbose=0, callbacks=[keras.callbacks.ReduceLROnPlateau()])


def test_lr_finder_records_each_step_loss_with_batches_of_different_sizes(bert_preset):
    """10 texts in batches of 4 make batches of 4, 4 and 2. Keras logs the
    running mean weighted by batch size; the finder's loss of each step is
    its batch's own loss (it was off for the batch of 2 and those after)."""
    model = classifier(bert_preset, dropout=0.0, compile=False)
    model.compile(learning_rate=1e-3)
    batches, _ = model._as_batches(TEXTS, LABELS, 4, shuffle=False, seed=0)
    own = sorted(
        model.evaluate(*batches[i], batch_size=len(batches[i][1]), verbose=0, return_dict=True)["loss"]
        for i in range(len(batches))
    )
    assert sorted(len(batches[i][1]) for i in range(len(batches))) == [2, 4, 4]
    # Rates too small to move the weights: each step's loss is its batch's.
    result = model.find_learning_rate(TEXTS, LABELS, batch_size=4, min_lr=1e-12, max_lr=1e-11, steps=6)
    assert len(result.raw_losses) == 6
    for epoch in (result.raw_losses[:3], result.raw_losses[3:]):
        np.testing.assert_allclose(sorted(epoch), own, rtol=1e-4)


def test_lr_finder_under_mixed_float16_restores_the_model(bert_preset):
    """A loss-scaled model sweeps with a copy of the optimizer inside the
    LossScaleOptimizer (Keras refused a rate for the wrapper)."""
    model = classifier(bert_preset, freeze=False, dtype="mixed_float16", compile=False)
    model.compile(learning_rate=1e-3)
    model.fit(TEXTS, LABELS, batch_size=4, epochs=1, verbose=0)
    optimizer = model.optimizer
    weights = [np.array(v.numpy(), copy=True) for v in model.weights]
    state = [np.array(v.numpy(), copy=True) for v in optimizer.variables]
    result = model.find_learning_rate(TEXTS, LABELS, batch_size=4, min_lr=1e-5, max_lr=1e-1, steps=6)
    assert len(result.raw_losses) >= 2 and np.isfinite(result.suggestion)
    assert model.optimizer is optimizer
    for variable, value in zip(model.weights, weights):
        np.testing.assert_array_equal(variable.numpy(), value)
    for variable, value in zip(optimizer.variables, state):
        np.testing.assert_array_equal(variable.numpy(), value)


def test_add_variables_under_mixed_float16_keeps_the_inner_optimizer_state(bert_preset):
    """Keras' LossScaleOptimizer keeps the Adam state in the optimizer
    inside: growing it keeps the head's moments and the loss scale, and the
    wrapper knows the new weights (Keras raised "Unknown variable")."""
    model = classifier(bert_preset, dtype="mixed_float16", compile=False)
    model.compile(learning_rate=1e-4)
    model.fit(TEXTS, LABELS, batch_size=5, epochs=1, verbose=0)
    optimizer, inner = model.optimizer, model.optimizer.inner_optimizer
    kernel = model.get_layer("logits").kernel
    state = {
        name: np.array(getattr(inner, name)[inner._get_variable_index(kernel)].numpy(), copy=True)
        for name in ("_momentums", "_velocities")
    }
    scale = np.array(optimizer.dynamic_scale.numpy(), copy=True)
    kt.unfreeze(model, top=1)
    new = add_variables(optimizer, model.trainable_variables)
    assert {v.path for v in new} == {v.path for v in model.backbone.trainable_weights}
    for name, value in state.items():
        np.testing.assert_array_equal(getattr(inner, name)[inner._get_variable_index(kernel)].numpy(), value)
        for variable in new:
            assert not np.any(getattr(inner, name)[inner._get_variable_index(variable)].numpy())
    np.testing.assert_array_equal(optimizer.dynamic_scale.numpy(), scale)
    assert all(optimizer._var_key(v) in optimizer._trainable_variables_indices for v in model.trainable_variables)
    before = {v.path: np.array(v.numpy(), copy=True) for v in new}
    model.fit(TEXTS, LABELS, batch_size=5, epochs=1, verbose=0)
    assert all(not np.array_equal(v.numpy(), before[v.path]) for v in new if "bias" not in v.path)


def test_gradual_unfreezing_under_mixed_float16(bert_preset):
    model = classifier(bert_preset, dtype="mixed_float16", compile=False)
    model.compile(learning_rate=1e-4)
    before = {v.path: np.array(v.numpy(), copy=True) for v in model.backbone.weights}
    history = model.fit(
        TEXTS, LABELS, batch_size=5, epochs=2, verbose=0,
        callbacks=[kt.callbacks.GradualUnfreezing(verbose=0)],
    )
    assert history.history["unfrozen_blocks"] == [0, 1]
    assert any(not np.array_equal(v.numpy(), before[v.path]) for v in model.backbone.trainable_weights)
    model.fit(TEXTS, LABELS, batch_size=5, epochs=1, verbose=0)  # every trainable weight is known


def test_gradient_accumulation_matches_larger_batches_over_several_updates(bert_preset):
    """Two updates, each of 2 accumulated batches of 2, give the weights of
    two batches of 4. (Adam's first step is about `rate * sign(gradient)`
    whatever the gradient's size; the second tells averaged gradients from
    summed ones, and checks each update's scheduled rate.)"""
    texts, labels = TEXTS[:8], LABELS[:8]
    models = []
    for accumulation, batch_size in ((2, 2), (None, 4)):
        model = classifier(bert_preset, dropout=0.0, compile=False)
        model.compile(learning_rate=1e-2, gradient_accumulation_steps=accumulation)
        model.fit(texts, labels, batch_size=batch_size, epochs=1, verbose=0, shuffle=False)
        models.append(model)
    accumulated, large = models
    assert int(accumulated.optimizer.iterations.numpy()) == int(large.optimizer.iterations.numpy()) == 2
    start = classifier(bert_preset, dropout=0.0, compile=False)
    for a, b, s in zip(accumulated.trainable_variables, large.trainable_variables, start.trainable_variables):
        assert not np.allclose(a.numpy(), s.numpy())
        np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-6)
