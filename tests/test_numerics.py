"""A loss that turns NaN or infinite stops training, and the weights from
before the bad step are kept (`kt.callbacks.StopOnNaN`, on by default in
`Task.fit`)."""

import warnings

import keras
import numpy as np
import pytest

import keras_transfer as kt
from helpers import TEXTS, raises


class _Snapshots(keras.callbacks.Callback):
    """The trainable weights after every training step."""

    def __init__(self):
        super().__init__()
        self.after = []

    def on_train_batch_end(self, batch, logs=None):
        self.after.append([np.array(v.numpy(), copy=True) for v in self.model.trainable_variables])


def _regression_like(bert_preset):
    """A model trained with MSE on float targets, as a regression-like task
    would be: nothing checks the targets, so a NaN in them reaches the loss."""
    keras.utils.set_random_seed(0)
    model = kt.TextClassifier.from_preset(bert_preset, num_classes=2, sequence_length=16, freeze=False)
    model.compile(learning_rate=1e-3, loss="mse", metrics=[])
    inputs = model.preprocessor(TEXTS)
    targets = np.tile(np.array([[0.0, 1.0]], "float32"), (len(TEXTS), 1))
    targets[6, 1] = np.nan  # the 4th batch of 2
    return model, inputs, targets


def test_nan_target_stops_training_and_keeps_the_last_good_weights(bert_preset):
    model, inputs, targets = _regression_like(bert_preset)
    snapshots = _Snapshots()
    with pytest.warns(kt.callbacks.NonFiniteLossWarning) as caught:
        history = model.fit(inputs, targets, batch_size=2, epochs=3, shuffle=False, verbose=0, callbacks=[snapshots])
    [message] = [str(w.message) for w in caught if w.category is kt.callbacks.NonFiniteLossWarning]
    for fragment in ("loss became nan", "epoch 0, step 3", "restored", "learning rate too high", "labels / targets"):
        assert fragment in message, message
    assert len(history.history["loss"]) == 1  # stopped in the first of 3 epochs
    assert len(snapshots.after) == 4  # steps 0..3 ran, then nothing
    assert all(np.isfinite(w).all() for w in snapshots.after[2])
    assert not all(np.isfinite(w).all() for w in snapshots.after[3])  # the bad step
    for variable, good in zip(model.trainable_variables, snapshots.after[2]):
        np.testing.assert_array_equal(variable.numpy(), good)
    # The optimizer's moments got the NaN gradient; they are cleaned, so
    # training can go on from the good weights.
    for variable in model.optimizer.variables:
        assert np.isfinite(variable.numpy()).all(), variable.path
    assert np.isfinite(model.predict(inputs, verbose=0)).all()
    model.fit({k: v[:6] for k, v in inputs.items()}, targets[:6], epochs=1, verbose=0)
    assert all(np.isfinite(v.numpy()).all() for v in model.trainable_variables)


def test_without_the_guard_the_same_fault_leaves_nan_weights(bert_preset):
    """Proves the fault injected above is real, and that it can be switched off."""
    model, inputs, targets = _regression_like(bert_preset)
    with warnings.catch_warnings():
        warnings.simplefilter("error", kt.callbacks.NonFiniteLossWarning)
        model.fit(inputs, targets, batch_size=2, epochs=1, shuffle=False, verbose=0, stop_on_nan=False)
    assert not all(np.isfinite(v.numpy()).all() for v in model.trainable_variables)


def test_huge_learning_rate_on_raw_text_keeps_finite_weights(bert_preset):
    """The default path (frozen backbone, cached features) is guarded too."""
    keras.utils.set_random_seed(0)
    model = kt.TextClassifier.from_preset(bert_preset, num_classes=2, sequence_length=16)
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=1e38))
    labels = [0, 1] * 5
    with pytest.warns(kt.callbacks.NonFiniteLossWarning, match="learning rate was 1e\\+38"):
        history = model.fit(TEXTS, labels, batch_size=2, epochs=5, seed=0, verbose=0)
    assert len(history.history["loss"]) < 5
    # Finite (if huge: at this rate the last good weights already overflow
    # the logits; the guard keeps them, it cannot make them good).
    assert all(np.isfinite(v.numpy()).all() for v in model.weights)


def test_guard_keeps_feature_caching_on(bert_preset):
    model = kt.TextClassifier.from_preset(bert_preset, num_classes=2, sequence_length=16)
    guard = kt.callbacks.StopOnNaN()
    assert model._should_cache("auto", _batches(model), None, {"callbacks": [guard]})
    history = model.fit(TEXTS, [0, 1] * 5, epochs=1, verbose=0, callbacks=[guard])
    assert guard.stopped_at is None and guard.message is None
    assert history.model.name.endswith("_head")  # trained on cached features


def _batches(model):
    return kt.TextBatches(model.preprocessor, TEXTS, [0, 1] * 5)


@pytest.mark.parametrize("value", ["yes", 1, None])
def test_bad_stop_on_nan(bert_preset, value):
    model = kt.TextClassifier.from_preset(bert_preset, num_classes=2, sequence_length=16)
    with raises(ValueError, "stop_on_nan", repr(value)):
        model.fit(TEXTS, [0, 1] * 5, stop_on_nan=value)
    with raises(ValueError, "restore_weights"):
        kt.callbacks.StopOnNaN(restore_weights=value)


def test_a_new_set_of_trainable_weights_of_the_same_size_gets_its_own_copies():
    # After an unfreezing that swaps which weights train (the same count,
    # other shapes), the copies must be of the weights that train now.
    inputs = keras.Input((3,))
    first, second = keras.layers.Dense(3, name="first"), keras.layers.Dense(2, name="second")
    model = keras.Model(inputs, second(first(inputs)))
    second.trainable = False
    guard = kt.callbacks.StopOnNaN()
    guard.set_model(model)
    guard.on_train_begin()
    guard.on_train_batch_begin(0)
    guard.on_train_batch_begin(1)  # the in-place path
    first.trainable, second.trainable = False, True
    guard.on_train_batch_begin(2)
    assert len(guard._copies) == 2
    for copy, variable in zip(guard._copies, second.trainable_variables):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(copy), variable.numpy())


def test_batch_normalization_statistics_are_restored_too():
    # The bad step also updates BatchNormalization's moving statistics,
    # which are not trainable: they must come back with the weights.
    keras.utils.set_random_seed(0)
    inputs = keras.Input((4,))
    hidden = keras.layers.BatchNormalization(name="norm")(keras.layers.Dense(8)(inputs))
    model = keras.Model(inputs, keras.layers.Dense(1)(hidden))
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="mse")
    x = np.random.default_rng(0).random((80, 4)).astype("float32")
    y = np.random.default_rng(1).random((80, 1)).astype("float32")
    x[65] = np.nan  # in the 9th batch of 8
    guard = kt.callbacks.StopOnNaN()
    with pytest.warns(RuntimeWarning, match="restored"):
        model.fit(x, y, batch_size=8, epochs=3, shuffle=False, verbose=0, callbacks=[guard])
    assert guard.stopped_at == (0, 8)
    norm = model.get_layer("norm")
    assert np.isfinite(norm.moving_mean.numpy()).all() and np.isfinite(norm.moving_variance.numpy()).all()
    assert np.isfinite(model.predict(x[:4], verbose=0)).all()
