"""Task models read `trainable_weights` and `metrics` once per train/test step."""

import keras
import numpy as np
import pytest
from helpers import compiled_classifier, labelled_batch

import keras_transfer as kt


@pytest.fixture
def walks(monkeypatch):
    """Counts the layer walks behind `trainable_weights` and `metrics`:
    Keras' recursive properties, and keras_transfer's flat walk."""
    from keras_transfer import layer_walk

    counts = {"trainable_weights": 0, "metrics": 0, "flat": 0}
    for owner, name in ((keras.layers.Layer, "trainable_weights"), (keras.Model, "metrics")):
        original = getattr(owner, name)

        def counting(self, original=original, name=name):
            counts[name] += 1
            return original.fget(self)

        monkeypatch.setattr(owner, name, property(counting))
    order = layer_walk.order

    def counting_order(model):
        counts["flat"] += 1
        return order(model)

    monkeypatch.setattr(layer_walk, "order", counting_order)
    return counts


@pytest.fixture
def model(bert_preset):
    return compiled_classifier(bert_preset)


batch = labelled_batch


def test_one_walk_of_each_per_step(model, walks):
    x, y = batch(model)
    model.train_on_batch(x, y)  # builds the optimizer and metrics
    walks.update(trainable_weights=0, metrics=0, flat=0)
    with model._step_cache():
        model.train_step((x, y))
    assert walks == {"trainable_weights": 0, "metrics": 0, "flat": 1}
    assert "_kt_step_cache" not in model.__dict__


def test_the_step_trains_the_same_weights_and_reports_the_same_logs(model):
    x, y = batch(model)
    model.train_on_batch(x, y)
    expected = [w.path for w in keras.Model.trainable_weights.fget(model)]
    with model._step_cache():
        assert [w.path for w in model.trainable_weights] == expected
        first = model.trainable_weights
        first.clear()  # callers get their own list, as from Keras
        assert [w.path for w in model.trainable_weights] == expected
    logs = model.test_on_batch(x, y, return_dict=True)
    assert set(logs) == {"loss", "accuracy"}


def test_outside_a_step_changes_show_at_once(model):
    x, y = batch(model)
    model.train_on_batch(x, y)  # task models start with the backbone frozen
    assert len(model.trainable_weights) == 2
    kt.unfreeze(model)
    unfrozen = len(model.trainable_weights)
    assert unfrozen > 2
    kt.freeze(model)
    assert len(model.trainable_weights) == 2


def test_the_cache_ends_with_a_failing_step(model):
    with pytest.raises(ZeroDivisionError):
        with model._step_cache():
            assert model.trainable_weights
            1 / 0
    assert "_kt_step_cache" not in model.__dict__
    kt.unfreeze(model)
    assert len(model.trainable_weights) > 2  # read afresh


def test_on_batch_calls_skip_the_layer_walk_once_all_layers_are_built(model, monkeypatch):
    x, y = batch(model)
    model.train_on_batch(x, y)
    walked = []
    flatten = keras.layers.Layer._flatten_layers

    def counting(self, *args, **kwargs):
        if self is model:
            walked.append(kwargs)
        return flatten(self, *args, **kwargs)

    monkeypatch.setattr(keras.layers.Layer, "_flatten_layers", counting)
    monkeypatch.setattr(type(model), "_flatten_layers", counting, raising=False)
    model._symbolic_build(data_batch=(x, y, None))
    assert {} not in walked  # Keras' `all(layer.built for layer in self._flatten_layers())`
    # A model compiled again gets its new metrics built as before.
    model.compile(learning_rate=1e-3, metrics=["accuracy"])
    assert model.test_on_batch(x, y, return_dict=True).keys() == {"loss", "accuracy"}


def test_on_batch_calls_walk_the_metrics_once(model, walks):
    x, y = batch(model)
    model.train_on_batch(x, y)
    walks.update(trainable_weights=0, metrics=0, flat=0)
    model.train_on_batch(x, y)
    assert walks == {"trainable_weights": 0, "metrics": 0, "flat": 1}
    walks.update(flat=0)
    model.test_on_batch(x, y)
    assert walks == {"trainable_weights": 0, "metrics": 0, "flat": 1}


def test_losses_are_cleared_before_each_outermost_call_as_keras_does(model):
    x, y = batch(model)
    model.predict_on_batch(x)  # every layer built (no fit, no train_on_batch)
    inner = model.backbone.transformer_layers[-1]._feedforward_output_dense
    inner.add_loss(keras.ops.convert_to_tensor(5.0))
    model.get_layer("logits").add_loss(keras.ops.convert_to_tensor(1.0))
    assert len(model.losses) == 2
    model.predict_on_batch(x)
    assert model.losses == [] and inner.losses == [] and not inner._loss_ids
    assert "_kt_loss_layers" in model.__dict__ and inner in model._kt_loss_layers.layers


def test_a_model_that_has_run_saves_and_loads_its_weights(model, tmp_path):
    x, y = batch(model)
    model.train_on_batch(x, y)
    model.predict_on_batch(x)  # the loss-clearing list exists now
    path = tmp_path / "weights.weights.h5"
    model.save_weights(path)
    model.load_weights(path)
    model.save(tmp_path / "model.keras")
    np.testing.assert_allclose(
        kt.load_model(tmp_path / "model.keras").predict_on_batch(x), model.predict_on_batch(x), atol=1e-6)


def test_a_layer_with_its_own_loss_clearing_keeps_keras_recursion(model, monkeypatch):
    from keras_transfer.tasks import base

    calls = []
    inner = model.backbone.transformer_layers[0]

    class Custom(type(inner)):
        def _clear_losses(self):
            calls.append(self)
            super()._clear_losses()

    monkeypatch.setattr(inner, "__class__", Custom)
    assert base._plain_loss_layers(model) == ()
    x, y = batch(model)
    model.train_on_batch(x, y)
    model.predict_on_batch(x)
    assert calls  # Keras' recursion reached the layer's own method
