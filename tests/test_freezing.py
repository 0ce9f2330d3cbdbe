"""Tests for kt.freeze, kt.unfreeze, kt.frozen_state, kt.restore_frozen_state
and kt.count_params (keras_transfer/freezing.py)."""

import math

import keras
import numpy as np
import pytest
from helpers import dropout_rates, raises, requires_grad, trainable_layer_names

import keras_transfer as kt
from keras_transfer import freezing

TEXTS = ["good film , not bad", "the plot was boring", "fun"]

# Layers above the transformer blocks (they train with the top blocks).
ABOVE = {"bert": {"pooled_dense"}, "gpt2": {"layer_norm"}}
EMBEDDINGS = {
    "bert": {"token_embedding", "position_embedding", "segment_embedding", "embeddings_layer_norm"},
    "gpt2": {"token_embedding", "position_embedding"},
}


@pytest.fixture(params=["bert", "gpt2"])
def family(request):
    return request.param


@pytest.fixture
def loaded(request, family):
    """A fresh (backbone, preprocessor) of the family."""
    return kt.load_backbone(request.getfixturevalue(f"{family}_preset"))


def sequence(backbone, batch, training):
    outputs = backbone(batch, training=training)
    if isinstance(outputs, dict):
        outputs = outputs["sequence_output"]
    return keras.ops.convert_to_numpy(outputs)


def weight_count(layer):
    return sum(math.prod(v.shape) for v in layer.weights)


# ------------------------------------------------------------ freeze


def test_freeze_leaves_no_trainable_weight(loaded):
    backbone, _ = loaded
    assert backbone.trainable_weights  # trainable to begin with
    assert kt.freeze(backbone) is backbone
    assert backbone.trainable is False
    assert backbone.trainable_weights == []
    assert all(not v.trainable for v in backbone.weights)
    assert len(backbone.non_trainable_weights) == len(backbone.weights)
    # On torch no gradient is even computed for them.
    assert not any(requires_grad(v) for v in backbone.weights)
    assert kt.count_params(backbone) == (0, weight_count(backbone))


def test_freeze_switches_dropout_off(loaded):
    backbone, preprocessor = loaded
    rates = dropout_rates(backbone)
    assert rates and all(rate == pytest.approx(0.1) for rate in rates)
    batch = preprocessor(TEXTS)
    # Unfrozen, training=True applies dropout: the check below has teeth.
    assert not np.allclose(sequence(backbone, batch, True), sequence(backbone, batch, False))

    kt.freeze(backbone)
    assert all(rate == 0.0 for rate in dropout_rates(backbone))
    mhas = [l for l in backbone._flatten_layers() if isinstance(l, keras.layers.MultiHeadAttention)]
    assert len(mhas) == 2 and all(mha._dropout == 0.0 for mha in mhas)
    np.testing.assert_array_equal(sequence(backbone, batch, True), sequence(backbone, batch, False))


def test_freeze_does_not_change_inference_outputs(loaded):
    backbone, preprocessor = loaded
    batch = preprocessor(TEXTS)
    before = sequence(backbone, batch, False)
    kt.freeze(backbone)
    np.testing.assert_allclose(sequence(backbone, batch, False), before, atol=1e-6)


def test_unfreeze_restores_dropout_and_training(loaded):
    backbone, preprocessor = loaded
    original = dropout_rates(backbone)
    kt.freeze(backbone)
    kt.freeze(backbone)  # twice: the original rates are still remembered
    assert kt.unfreeze(backbone) is backbone
    assert dropout_rates(backbone) == original
    assert backbone.trainable
    assert all(v.trainable for v in backbone.weights)
    assert all(requires_grad(v) for v in backbone.weights)
    batch = preprocessor(TEXTS)
    assert not np.allclose(sequence(backbone, batch, True), sequence(backbone, batch, False))
    # Unfreezing an unfrozen backbone changes nothing.
    kt.unfreeze(backbone)
    assert dropout_rates(backbone) == original


def test_freeze_a_task_model_freezes_its_backbone(bert_preset):
    model = kt.TextClassifier.from_preset(bert_preset, num_classes=2, freeze=False)
    assert kt.freeze(model) is model.backbone
    assert model.backbone.trainable_weights == []
    # The head still trains.
    assert {v.path.split("/")[0] for v in model.trainable_weights} == {"logits"}


def test_freeze_any_layer_whole():
    layer = keras.layers.Dense(3)
    layer.build((None, 2))
    kt.freeze(layer)
    assert layer.trainable_weights == []
    kt.unfreeze(layer)
    assert len(layer.trainable_weights) == 2


@pytest.mark.parametrize("value", [None, "backbone", 3, np.zeros(3), [keras.layers.Dense(2)]])
def test_freeze_needs_a_layer(value):
    with raises(ValueError, "`kt.freeze` expects a Keras layer", f"of type {type(value).__name__}"):
        kt.freeze(value)


@pytest.mark.parametrize("value", [None, "backbone", 3])
def test_unfreeze_needs_a_layer(value):
    with raises(ValueError, "`kt.unfreeze` expects a Keras layer"):
        kt.unfreeze(value)


# ------------------------------------------------------------ unfreeze(top=...)


def test_unfreeze_top_1_trains_only_the_last_block(loaded, family):
    backbone, preprocessor = loaded
    kt.freeze(backbone)
    kt.unfreeze(backbone, top=1)
    assert trainable_layer_names(backbone) == {"transformer_layer_1"} | ABOVE[family]
    trainable = {id(v) for v in backbone.trainable_weights}
    for layer in backbone.layers:
        expected = layer.name in {"transformer_layer_1"} | ABOVE[family]
        for v in layer.weights:
            assert (id(v) in trainable) == expected, v.path
            assert v.trainable == expected, v.path
            assert requires_grad(v) == expected, v.path
    # The frozen parts stay in inference mode; the top block has dropout.
    assert all(r == 0.0 for r in dropout_rates(backbone.get_layer("transformer_layer_0")))
    assert all(r == 0.0 for r in dropout_rates(backbone.get_layer("embeddings_dropout")))
    assert all(r == pytest.approx(0.1) for r in dropout_rates(backbone.get_layer("transformer_layer_1")))


def test_gradients_reach_only_the_unfrozen_block(loaded, family):
    import torch

    backbone, preprocessor = loaded
    kt.unfreeze(backbone, top=1)
    batch = preprocessor(TEXTS)
    out = backbone(batch, training=False)
    out = out["sequence_output"] if isinstance(out, dict) else out
    out.sum().backward()
    for layer in backbone.layers:
        for v in layer.weights:
            grad = v.value.grad
            if layer.name == "transformer_layer_1":
                assert grad is not None and torch.any(grad != 0), v.path
            elif layer.name not in ABOVE[family]:
                assert grad is None, v.path


def test_unfreeze_top_with_embeddings(loaded, family):
    backbone, _ = loaded
    kt.freeze(backbone)
    kt.unfreeze(backbone, top=1, embeddings=True)
    assert trainable_layer_names(backbone) == {"transformer_layer_1"} | ABOVE[family] | EMBEDDINGS[family]
    assert "transformer_layer_0" not in trainable_layer_names(backbone)


def test_unfreeze_top_all_blocks(loaded, family):
    backbone, _ = loaded
    kt.freeze(backbone)
    kt.unfreeze(backbone, top=2)
    assert trainable_layer_names(backbone) == {"transformer_layer_0", "transformer_layer_1"} | ABOVE[family]


def test_unfreeze_top_0(loaded, family):
    backbone, _ = loaded
    kt.unfreeze(backbone, top=0)
    assert backbone.trainable_weights == []
    assert all(r == 0.0 for r in dropout_rates(backbone))
    kt.unfreeze(backbone, top=0, embeddings=True)
    assert trainable_layer_names(backbone) == EMBEDDINGS[family]


def test_unfreeze_top_on_a_task_keeps_an_unused_pooler_frozen(bert_preset):
    model = kt.TextClassifier.from_preset(bert_preset, num_classes=2)  # pooling "cls"
    kt.unfreeze(model, top=1)
    assert trainable_layer_names(model.backbone) == {"transformer_layer_1"}
    kt.unfreeze(model)
    assert "pooled_dense" not in trainable_layer_names(model.backbone)
    assert "transformer_layer_0" in trainable_layer_names(model.backbone)

    pooled = kt.TextClassifier.from_preset(bert_preset, num_classes=2, pooling="pooled")
    kt.unfreeze(pooled, top=1)
    assert trainable_layer_names(pooled.backbone) == {"transformer_layer_1", "pooled_dense"}


BAD_TOPS = [-1, 3, 1.5, True, False, "2", [1]]


@pytest.mark.parametrize("top", BAD_TOPS, ids=[repr(t) for t in BAD_TOPS])
def test_bad_top(bert_preset, top):
    backbone, _ = kt.load_backbone(bert_preset)
    kt.freeze(backbone)
    with raises(ValueError, "Expected `top` to be an integer between 0 and 2", f"top={top!r}"):
        kt.unfreeze(backbone, top=top)
    # A refused call changes nothing.
    assert backbone.trainable_weights == []
    assert all(r == 0.0 for r in dropout_rates(backbone))


def test_bad_top_gpt2(gpt2_preset):
    backbone, _ = kt.load_backbone(gpt2_preset)
    for top in BAD_TOPS:
        with raises(ValueError, "Expected `top` to be an integer between 0 and 2"):
            kt.unfreeze(backbone, top=top)


def test_unfreeze_top_of_a_model_without_transformer_blocks():
    inputs = keras.Input((4,), name="features")
    hidden = keras.layers.Dense(8, name="hidden")(inputs)
    model = keras.Model(inputs, keras.layers.Dense(2, name="logits")(hidden))
    with raises(ValueError, "Could not find the transformer blocks", "kt.freeze"):
        kt.unfreeze(model, top=1)


def test_unfreeze_top_of_a_model_with_auto_named_layers():
    inputs = keras.Input((4,))
    hidden = keras.layers.Dense(8)(inputs)  # Keras names these dense, dense_1, ...
    model = keras.Model(inputs, keras.layers.Dense(2)(hidden))
    with raises(ValueError, "Could not find the transformer blocks"):
        kt.unfreeze(model, top=1)


def test_unfreeze_top_of_a_plain_model_over_a_backbone(bert_preset):
    backbone, _ = kt.load_backbone(bert_preset)
    inputs = backbone.input
    x = kt.layers.Pooling("cls")(backbone(inputs))
    x = keras.layers.Dense(8)(x)
    model = keras.Model(inputs, keras.layers.Dense(2)(x))
    kt.freeze(backbone)
    head = [layer for layer in model.layers if isinstance(layer, keras.layers.Dense)]
    try:
        kt.unfreeze(model, top=1)
    except ValueError:
        return  # refusing is fine too
    assert "transformer_layer_1" in trainable_layer_names(backbone)
    assert all(layer.trainable_weights for layer in head)


def test_blocks_are_found_bottom_first(loaded):
    backbone, _ = loaded
    assert [b.name for b in freezing.blocks(backbone)] == ["transformer_layer_0", "transformer_layer_1"]


# ------------------------------------------------------------ frozen state


def test_frozen_state_round_trip(loaded, family):
    backbone, _ = loaded
    kt.freeze(backbone)
    kt.unfreeze(backbone, top=1)
    state = kt.frozen_state(backbone)
    assert state["trainable"] is True
    assert "transformer_layer_0" in state["frozen_layers"]
    assert "transformer_layer_1" not in state["frozen_layers"]
    trainable = [v.path for v in backbone.trainable_weights]

    kt.unfreeze(backbone)
    assert kt.frozen_state(backbone) == {"trainable": True, "frozen_layers": []}
    kt.restore_frozen_state(backbone, state)
    assert kt.frozen_state(backbone) == state
    assert [v.path for v in backbone.trainable_weights] == trainable
    assert all(r == 0.0 for r in dropout_rates(backbone.get_layer("transformer_layer_0")))

    kt.freeze(backbone)
    whole = kt.frozen_state(backbone)
    assert whole["trainable"] is False
    kt.unfreeze(backbone)
    kt.restore_frozen_state(backbone, whole)
    assert backbone.trainable_weights == []
    assert all(r == 0.0 for r in dropout_rates(backbone))


def test_frozen_state_is_plain_data(loaded):
    import json

    backbone, _ = loaded
    kt.unfreeze(backbone, top=1)
    state = kt.frozen_state(backbone)
    assert json.loads(json.dumps(state)) == state


def test_restore_frozen_state_repairs_flags_after_a_keras_reload(tmp_path, bert_preset):
    # keras.saving.load_model brings frozen layers back with trainable
    # weights; restore_frozen_state() with no state sets them again.
    backbone, preprocessor = kt.load_backbone(bert_preset)
    inputs = backbone.input
    outputs = keras.layers.Dense(2)(kt.layers.Pooling("cls")(backbone(inputs)))
    model = keras.Model(inputs, outputs)
    kt.freeze(backbone)
    model.save(tmp_path / "m.keras")
    reloaded = keras.saving.load_model(tmp_path / "m.keras")
    inner = reloaded.get_layer(backbone.name)
    kt.restore_frozen_state(reloaded)
    assert inner.trainable_weights == []
    assert not any(requires_grad(v) for v in inner.weights)
    assert all(r == 0.0 for r in dropout_rates(inner))
    assert len(reloaded.trainable_weights) == 2  # the Dense head


def test_a_plain_model_keeps_its_partly_frozen_backbone_through_save_and_load(tmp_path, family, request):
    import warnings

    backbone, preprocessor = kt.load_backbone(request.getfixturevalue(f"{family}_preset"))
    inputs = backbone.input
    outputs = keras.layers.Dense(2)(kt.layers.Pooling("mean")(backbone(inputs), inputs["padding_mask"]))
    model = keras.Model(inputs, outputs)
    kt.freeze(backbone)
    kt.unfreeze(model, top=1)
    model.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    x, y = preprocessor(TEXTS), np.array([1, 0, 1])
    model.fit(x, y, epochs=1, verbose=0)
    model.save(tmp_path / "m.keras")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "Skipping variable loading for optimizer"
        reloaded = kt.load_model(tmp_path / "m.keras")
    inner = reloaded.get_layer(backbone.name)
    assert kt.count_params(reloaded) == kt.count_params(model)
    assert trainable_layer_names(inner) == trainable_layer_names(backbone)
    assert int(reloaded.optimizer.iterations) == int(model.optimizer.iterations) == 1
    frozen = {v.path: np.array(v.numpy()) for layer in inner.layers if not layer.trainable for v in layer.weights}
    assert frozen
    reloaded.fit(x, y, epochs=1, verbose=0)
    assert all(np.array_equal(v.numpy(), frozen[v.path]) for layer in inner.layers for v in layer.weights if v.path in frozen)
    # A backbone trained whole records nothing extra.
    kt.unfreeze(backbone)
    assert freezing.FROZEN_LAYERS_KEY not in backbone.get_config()


def test_count_params(loaded):
    backbone, _ = loaded
    total = weight_count(backbone)
    assert kt.count_params(backbone) == (total, 0)
    kt.unfreeze(backbone, top=1)
    trainable, frozen = kt.count_params(backbone)
    assert trainable + frozen == total
    assert trainable == sum(weight_count(backbone.get_layer(n)) for n in trainable_layer_names(backbone))


def test_describe(loaded):
    backbone, _ = loaded
    assert freezing.describe(backbone) == "trains whole"
    kt.freeze(backbone)
    assert freezing.describe(backbone).startswith("frozen whole")
    kt.unfreeze(backbone, top=1)
    assert freezing.describe(backbone) == "embeddings frozen, block 1 of 0-1 trains"
    kt.unfreeze(backbone, top=0, embeddings=True)
    assert freezing.describe(backbone) == "embeddings train, all 2 blocks frozen"


def test_state_functions_name_bad_arguments(loaded):
    backbone, _ = loaded
    for function, args in (
        (kt.count_params, ("x",)),
        (kt.frozen_state, (None,)),
        (kt.restore_frozen_state, ([],)),
    ):
        with raises(ValueError, f"`kt.{function.__name__}` expects a Keras layer or model"):
            function(*args)
    for state in ({"bad": 1}, {"trainable": "yes", "frozen_layers": []}, [True]):
        with raises(ValueError, "what `kt.frozen_state(model)` returns"):
            kt.restore_frozen_state(backbone, state)


def test_a_partly_frozen_backbone_keeps_its_blocks_through_a_preset(tmp_path, family, request):
    backbone, preprocessor = kt.load_backbone(request.getfixturevalue(f"{family}_preset"))
    kt.unfreeze(backbone, top=1)
    backbone.save_to_preset(str(tmp_path / "preset"))
    preprocessor.tokenizer.save_to_preset(str(tmp_path / "preset"))
    reloaded, _ = kt.load_backbone(str(tmp_path / "preset"))
    assert trainable_layer_names(reloaded) == trainable_layer_names(backbone)
    assert kt.count_params(reloaded) == kt.count_params(backbone)
    assert kt.frozen_state(reloaded) == kt.frozen_state(backbone)
