"""The flat layer walk gives the lists Keras' recursive properties give."""

import keras
import numpy as np
import pytest
import torch
from helpers import compiled_classifier, labelled_batch

import keras_transfer as kt
from keras_transfer import layer_walk


def keras_lists(model):
    """What Keras' own properties say, bypassing any override."""
    return {
        "weights": keras.layers.Layer.weights.fget(model),
        "trainable_weights": keras.layers.Layer.trainable_weights.fget(model),
        "variables": keras.layers.Layer.variables.fget(model),
    }


def ids(variables):
    return [id(v) for v in variables]


def assert_same_lists(model):
    layers = layer_walk.order(model)
    assert layers is not None
    expected = keras_lists(model)
    assert ids(layer_walk.weights(layers)) == ids(expected["weights"])
    assert ids(layer_walk.trainable_weights(layers)) == ids(expected["trainable_weights"])
    # The same tensors as Keras' `variables` (each listed once there).
    tensors = layer_walk.variable_tensors(layers)
    assert {id(t) for t in tensors} == {id(v._value) for v in expected["variables"]}
    assert_walk_matches(model, layers)


def assert_walk_matches(model, layers):
    """The one-pass `Walk` answers what the separate walks answer."""
    walk = layer_walk.walk(model)
    assert walk.layers == layers
    assert ids(walk.weights) == ids(layer_walk.weights(layers))
    assert ids(walk.trainable_weights) == ids(layer_walk.trainable_weights(layers))
    assert ids(walk.variable_tensors) == ids(layer_walk.variable_tensors(layers))
    assert walk.layer_metrics_are_empty == layer_walk.layer_metrics_are_empty(layers)
    assert walk.losses_are_empty == layer_walk.losses_are_empty(layers)
    assert walk.holds_torch_modules == any(isinstance(layer, keras.layers.TorchModuleWrapper) for layer in layers)


class Pair(keras.layers.Layer):
    """Sub-layers in attributes, one of them shared with the outer graph, and a seed."""

    def __init__(self, shared, **kwargs):
        super().__init__(**kwargs)
        self.shared = shared
        self.inner = keras.layers.Dense(3, name="inner")
        self.dropout = keras.layers.Dropout(0.5, seed=1)
        self.scale = self.add_weight(shape=(), initializer="ones", name="scale")

    def call(self, x, training=None):
        return self.inner(self.dropout(self.shared(x), training=training)) * self.scale


def graph_with_shared_and_nested_layers():
    shared = keras.layers.Dense(4, name="shared")
    inputs = keras.Input((4,))
    nested = keras.Sequential([keras.layers.Dense(4, name="n1"), keras.layers.Dense(4, name="n2")], name="nested")
    h = shared(inputs)
    h = nested(h)
    h = shared(h)  # used twice
    outputs = Pair(shared, name="pair")(h)
    return keras.Model(inputs, outputs)


def test_a_graph_with_shared_nested_and_attribute_layers_gives_keras_lists():
    model = graph_with_shared_and_nested_layers()
    assert_same_lists(model)
    model.get_layer("nested").trainable = False
    model.get_layer("pair").inner.trainable = False
    assert_same_lists(model)
    model.trainable = False
    assert_same_lists(model)
    assert layer_walk.trainable_weights(layer_walk.order(model)) == []


def test_a_variable_shared_by_two_layers_is_listed_once_where_keras_lists_it():
    inputs = keras.Input((2,))
    first = keras.layers.Dense(2, name="first")
    second = keras.layers.Dense(2, name="second")
    outputs = second(first(inputs))
    model = keras.Model(inputs, outputs)
    second._trainable_variables.append(first.kernel)  # tracked twice
    assert_same_lists(model)


def test_a_layer_class_with_its_own_weights_property_has_no_order():
    class Own(keras.layers.Dense):
        @property
        def weights(self):
            return super().weights[::-1]

    inputs = keras.Input((2,))
    model = keras.Model(inputs, Own(2)(keras.layers.Dense(2)(inputs)))
    assert layer_walk.order(model) is None


@pytest.fixture
def model(bert_preset):
    return compiled_classifier(bert_preset)


batch = labelled_batch


def assert_task_matches_keras(model):
    assert_same_lists(model)
    assert ids(model.trainable_weights) == ids(keras_lists(model)["trainable_weights"])
    assert ids(model.trainable_variables) == ids(keras.layers.Layer.trainable_variables.fget(model))
    assert model.metrics == keras.Model.metrics.fget(model)
    assert len(model.losses) == len(keras.Model.losses.fget(model))


@pytest.mark.parametrize("preset_name", ["bert_preset", "gpt2_preset"])
def test_task_models_frozen_unfrozen_partly_frozen_and_with_lora_match_keras(preset_name, request):
    model = kt.TextClassifier.from_preset(request.getfixturevalue(preset_name), num_classes=2, sequence_length=16)
    model.compile(learning_rate=1e-3)
    x, y = batch(model)
    model.train_on_batch(x, y)
    assert_task_matches_keras(model)
    kt.unfreeze(model)
    assert_task_matches_keras(model)
    model.backbone.transformer_layers[0].trainable = False
    assert_task_matches_keras(model)
    model.enable_lora(rank=2)
    model.compile(learning_rate=1e-3)
    model.train_on_batch(x, y)
    assert_task_matches_keras(model)


def test_a_compiled_nested_model_takes_keras_metrics(model):
    x, y = batch(model)
    model.train_on_batch(x, y)
    model.backbone.compile(loss="mse")
    assert not layer_walk.layer_metrics_are_empty(layer_walk.order(model))
    assert not layer_walk.walk(model).layer_metrics_are_empty
    assert model.metrics == keras.Model.metrics.fget(model)


def test_a_metric_held_by_a_layer_is_reported_as_keras_reports_it(model):
    x, y = batch(model)
    model.train_on_batch(x, y)
    head = model.get_layer("logits")
    head._tracker.unlock()
    head.extra_metric = keras.metrics.Mean(name="extra")  # tracked in the layer's `_metrics`
    head._tracker.lock()
    assert model.metrics == keras.Model.metrics.fget(model)
    assert any(m.name == "extra" for m in model.metrics)
    assert not layer_walk.walk(model).layer_metrics_are_empty
    assert_walk_matches(model, layer_walk.order(model))


def test_losses_from_add_loss_and_regularizers_match_keras(model):
    x, y = batch(model)
    model.predict_on_batch(x)
    head = model.get_layer("logits")
    head.kernel_regularizer = keras.regularizers.L2(0.1)
    head.kernel.regularizer = keras.regularizers.L2(0.1)
    assert len(model.losses) == 1
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(model.losses[0]),
        keras.ops.convert_to_numpy(keras.Model.losses.fget(model)[0]),
    )
    head.add_loss(keras.ops.convert_to_tensor(2.0))
    assert len(model.losses) == 2 == len(keras.Model.losses.fget(model))
    assert not layer_walk.walk(model).losses_are_empty
    assert_walk_matches(model, layer_walk.order(model))


def all_parameters_without_grads(model):
    return all(p.grad is None for p in model.parameters())


def test_zero_grad_clears_every_gradient_torch_would(model):
    x, y = batch(model)
    kt.unfreeze(model)
    model.compile(learning_rate=1e-3)
    model.train_on_batch(x, y)
    loss = keras.ops.sum(model(x, training=True))
    loss.backward()
    assert not all_parameters_without_grads(model)
    kt.freeze(model)  # the backbone's weights keep gradients from when they trained
    assert len(model.trainable_weights) == 2
    model.zero_grad()
    assert all_parameters_without_grads(model)


def test_zero_grad_without_setting_to_none_is_torchs(model):
    x, y = batch(model)
    model.train_on_batch(x, y)
    keras.ops.sum(model(x, training=True)).backward()
    head_kernel = model.get_layer("logits").kernel.value
    assert head_kernel.grad is not None
    model.zero_grad(set_to_none=False)
    assert head_kernel.grad is not None and not torch.any(head_kernel.grad)


def test_a_model_with_a_torch_module_takes_torchs_zero_grad(model, monkeypatch):
    x, y = batch(model)
    model.train_on_batch(x, y)
    walked = []
    monkeypatch.setattr(torch.nn.Module, "zero_grad", lambda self, set_to_none=True: walked.append(self))
    model.zero_grad()
    assert walked == []  # the flat path
    head = model.get_layer("logits")
    head._tracker.unlock()
    head.wrapped = keras.layers.TorchModuleWrapper(torch.nn.Linear(2, 2))
    head._tracker.lock()
    assert layer_walk.walk(model).holds_torch_modules
    model.zero_grad()
    assert walked == [model]


def test_a_two_output_task_lists_its_per_output_loss_trackers_as_keras_does(bert_preset):
    from keras_transfer.datasets.squad import QAData

    context = "the plot was boring but the acting was fun"
    model = kt.QuestionAnswerer.from_preset(bert_preset, sequence_length=24, stride=6, max_question_length=8)
    answers = [{"text": [t], "answer_start": [context.index(t)]} for t in ("boring", "fun")]
    model.fit(QAData(["what was the plot ?", "what was the acting ?"], [context] * 2, answers), epochs=1, verbose=0)
    assert model._compile_loss.metrics  # a loss tracker per output
    assert model.metrics == keras.Model.metrics.fget(model)
