"""KerasHub blocks run as one flat sequence of torch calls (`fused_blocks._flat_block`)
compute exactly what the sub-layer-by-sub-layer direct path computes, and
every case the flat path does not cover takes that path."""

import keras
import keras_hub
import numpy as np
import pytest
import torch

from keras_transfer import fused, fused_blocks


def _numpy(x):
    return keras.ops.convert_to_numpy(x)


def _randomize(layer, seed=0):
    rng = np.random.default_rng(seed)
    for weight in layer.weights:
        weight.assign(rng.normal(0.0, 0.2, size=weight.shape).astype(weight.dtype))


@pytest.fixture
def counted(monkeypatch):
    """How often the flat path ran and how often it declined."""
    counts = {"flat": 0, "declined": 0}
    original = fused_blocks._flat_block

    def counting(*args, **kwargs):
        out = original(*args, **kwargs)
        counts["flat" if out is not None else "declined"] += 1
        return out

    monkeypatch.setattr(fused_blocks, "_flat_block", counting)
    return counts


def backbone_and_batch(architecture, dtype=None, dropout=0.2):
    keras.utils.set_random_seed(3)
    sizes = dict(vocabulary_size=50, num_layers=2, num_heads=2, hidden_dim=16, intermediate_dim=32, dtype=dtype)
    if architecture == "bert":
        backbone = keras_hub.models.BertBackbone(max_sequence_length=16, dropout=dropout, **sizes)
    else:
        backbone = keras_hub.models.GPT2Backbone(max_sequence_length=16, dropout=dropout, **sizes)
    _randomize(backbone)
    fused.fuse(backbone)
    batch = {"token_ids": np.arange(1, 21, dtype="int32").reshape(2, 10), "padding_mask": np.ones((2, 10), bool)}
    if architecture == "bert":
        batch["segment_ids"] = np.zeros((2, 10), "int32")
    return backbone, batch


def run_both(backbone, batch, training, monkeypatch, seed=0):
    """Outputs (and weight gradients, for trainable weights) on the flat and the direct path."""

    def run():
        torch.manual_seed(seed)
        out = backbone(batch, training=training)
        out = out["sequence_output"] if isinstance(out, dict) else out
        trainable = [w.value for w in backbone.trainable_weights]
        grads = []
        if trainable:
            grads = torch.autograd.grad(out.float().square().sum(), trainable, allow_unused=True)
        return _numpy(out), [_numpy(g) for g in grads if g is not None]  # the pooler's are None

    flat = run()
    with monkeypatch.context() as patch:
        patch.setattr(fused_blocks, "_flat_block", lambda *args: None)
        direct = run()
    return flat, direct


def assert_identical(flat, direct):
    np.testing.assert_array_equal(flat[0], direct[0])
    assert len(flat[1]) == len(direct[1])
    for a, b in zip(flat[1], direct[1]):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("architecture", ["bert", "gpt2"])
@pytest.mark.parametrize("dtype", [None, "mixed_bfloat16"])
@pytest.mark.parametrize("trainable", [True, False])
@pytest.mark.parametrize("padding", [False, True])
def test_flat_blocks_compute_exactly_what_the_direct_path_does(
    architecture, dtype, trainable, padding, counted, monkeypatch
):
    backbone, batch = backbone_and_batch(architecture, dtype)
    backbone.trainable = trainable
    if padding:
        batch["padding_mask"][1, 6:] = False
    for training in (True, False):
        counted.update(flat=0, declined=0)
        flat, direct = run_both(backbone, batch, training, monkeypatch)
        assert counted == {"flat": 2, "declined": 0}  # every block, on the flat run only
        assert_identical(flat, direct)
        if trainable:
            assert flat[1] and all(np.abs(g).max() > 0 for g in flat[1][:4])


def test_dropout_draws_the_same_masks_as_the_direct_path(monkeypatch):
    backbone, batch = backbone_and_batch("bert", dropout=0.5)
    backbone.trainable = False
    (train, _), (direct, _) = run_both(backbone, batch, True, monkeypatch, seed=7)
    np.testing.assert_array_equal(train, direct)
    (inference, _), _ = run_both(backbone, batch, False, monkeypatch)
    assert np.abs(train - inference).max() > 1e-2  # dropout really was on


@pytest.mark.parametrize("normalize_first", [False, True])
def test_pre_and_post_norm_encoder_blocks_agree_with_and_without_a_mask(normalize_first, counted, monkeypatch):
    keras.utils.set_random_seed(0)
    block = keras_hub.layers.TransformerEncoder(intermediate_dim=12, num_heads=2, normalize_first=normalize_first, dropout=0.1)
    x = torch.from_numpy(np.random.default_rng(0).normal(size=(2, 5, 8)).astype("float32"))
    padding = torch.from_numpy(np.arange(5)[None, :] < np.array([[5], [3]]))
    block(x, padding_mask=padding)
    _randomize(block)
    fused.fuse(block)
    for kwargs in ({"padding_mask": padding}, {}):
        for training in (True, False):
            outs = []
            for flat_path in (True, False):
                with monkeypatch.context() as patch:
                    if not flat_path:
                        patch.setattr(fused_blocks, "_flat_block", lambda *args: None)
                    torch.manual_seed(1)
                    outs.append(_numpy(block(x, training=training, **kwargs)))
            np.testing.assert_array_equal(*outs)
    assert counted["flat"] == 4


def declines(block):
    encoder = isinstance(block, keras_hub.layers.TransformerEncoder)
    attend = fused_blocks._direct_self_attention if encoder else fused_blocks._direct_causal_self_attention
    return fused_blocks._flat_block_layers(block, attend) is None


def test_the_standard_blocks_are_flat(monkeypatch):
    for architecture in ("bert", "gpt2"):
        backbone, _ = backbone_and_batch(architecture)
        assert not declines(backbone.transformer_layers[0])


@pytest.mark.filterwarnings("ignore:You passed `rms_scaling=True`")
@pytest.mark.parametrize(
    "change",
    [
        "hook on a projection",
        "global hook",
        "lora",
        "seeded dropout",
        "dropout with a noise shape",
        "other dtype policy",
        "unfused layer norm",
        "rms layer norm",
        "activity regularizer",
    ],
)
def test_what_the_flat_path_does_not_cover_takes_the_direct_path(change, counted, monkeypatch):
    backbone, batch = backbone_and_batch("bert", dropout=0.0)
    block = backbone.transformer_layers[0]
    attention = block._self_attention_layer
    expected = _numpy(backbone(batch, training=False)["sequence_output"])
    seen = []
    handle = None
    if change == "hook on a projection":
        handle = attention._query_dense.register_forward_hook(lambda *args: seen.append(args))
    elif change == "global hook":
        handle = torch.nn.modules.module.register_module_forward_hook(lambda *args: None)
    elif change == "lora":
        attention._query_dense.enable_lora(rank=2)
    elif change == "seeded dropout":
        block._feedforward_dropout.seed = 1
    elif change == "dropout with a noise shape":
        block._feedforward_dropout.noise_shape = (None, 1, None)
    elif change == "other dtype policy":
        block._feedforward_output_dense.dtype_policy = keras.DTypePolicy("float32")
    elif change == "unfused layer norm":
        fused._remove_override(block._feedforward_layer_norm, "call", fused._fused_layer_norm_call)
    elif change == "rms layer norm":
        block._feedforward_layer_norm.rms_scaling = True
    elif change == "activity regularizer":
        block._feedforward_dropout.activity_regularizer = keras.regularizers.L2(0.0)
    try:
        assert declines(block)
        counted.update(flat=0, declined=0)
        out = _numpy(backbone(batch, training=False)["sequence_output"])
    finally:
        if handle is not None:
            handle.remove()
    assert counted["declined"] >= 1
    if change == "hook on a projection":
        assert seen  # the hook ran
    if change == "rms layer norm":
        return  # a different computation: only the path is checked
    np.testing.assert_allclose(out, expected, atol=1e-6)


def test_a_weight_the_scope_does_not_cast_sends_the_block_down_the_direct_path(counted, monkeypatch):
    # Under mixed precision a kernel kept in float32 (its variable not
    # autocast) no longer matches the block's bf16 inputs: the direct path,
    # whose fused call hands that layer to Keras, computes it.
    backbone, batch = backbone_and_batch("bert", "mixed_bfloat16", dropout=0.0)
    kernel = backbone.transformer_layers[0]._feedforward_output_dense._kernel
    monkeypatch.setattr(kernel, "_autocast", False)
    flat, direct = run_both(backbone, batch, False, monkeypatch)
    assert counted["declined"] == 1 and counted["flat"] == 1  # the other block still runs flat
    assert_identical(flat, direct)


@pytest.mark.parametrize("architecture", ["bert", "gpt2"])
@pytest.mark.parametrize("padding", [False, True])
def test_keras_explicit_attention_runs_its_softmax_and_dropout_directly_with_the_same_draws(
    architecture, padding, monkeypatch
):
    # In bf16 on a CPU, attention with dropout keeps Keras' explicit-scores
    # path (see `_UNFUSED_HALF_DROPOUT_DEVICES`); its softmax and dropout
    # layers are then called without `Layer.__call__`, with identical results.
    backbone, batch = backbone_and_batch(architecture, "mixed_bfloat16", dropout=0.3)
    if padding:
        batch["padding_mask"][1, 6:] = False
    softmax = backbone.transformer_layers[0]._self_attention_layer._softmax
    wrapped = []
    monkeypatch.setattr(type(softmax), "__call__", lambda self, *a, **k: wrapped.append(self) or keras.layers.Layer.__call__(self, *a, **k))
    outs = []
    for direct in (True, False):
        with monkeypatch.context() as patch:
            if not direct:
                patch.setattr(fused, "_keeps_keras_explicit_attention", lambda attention: False)
            wrapped.clear()
            (out, grads), _ = run_both(backbone, batch, True, monkeypatch, seed=11)
            outs.append((out, grads, len(wrapped)))
    (direct_out, direct_grads, direct_calls), (keras_out, keras_grads, keras_calls) = outs
    assert direct_calls == 0 and keras_calls > 0  # Keras' own path goes through `Layer.__call__`
    np.testing.assert_array_equal(direct_out, keras_out)
    for a, b in zip(direct_grads, keras_grads):
        np.testing.assert_array_equal(a, b)


def test_a_hooked_softmax_keeps_keras_own_attention(monkeypatch):
    backbone, batch = backbone_and_batch("bert", "mixed_bfloat16", dropout=0.3)
    attention = backbone.transformer_layers[0]._self_attention_layer
    assert fused._keeps_keras_explicit_attention(attention)
    seen = []
    handle = attention._softmax.register_forward_hook(lambda *args: seen.append(args))
    try:
        assert not fused._keeps_keras_explicit_attention(attention)
        backbone(batch, training=True)
    finally:
        handle.remove()
    assert seen  # the hook ran


@pytest.mark.parametrize("architecture", ["bert", "gpt2"])
@pytest.mark.parametrize("dtype", [None, "mixed_bfloat16"])
@pytest.mark.parametrize("padding", [False, True])
def test_joint_query_key_value_projections_train_as_the_three_do(architecture, dtype, padding, monkeypatch):
    # On a CUDA device (`_JOINT_QKV_DEVICES`) a block's query, key and value
    # projections run as one product in training too: the same outputs and
    # weight gradients; the input's gradient adds the three parts in one
    # product, which rounds differently.
    monkeypatch.setattr(fused_blocks, "_JOINT_QKV_DEVICES", ("cpu",))
    joined = []
    original = fused_blocks._joint_qkv
    monkeypatch.setattr(fused_blocks, "_joint_qkv", lambda *args: joined.append(1) or original(*args))
    backbone, batch = backbone_and_batch(architecture, dtype)
    if padding:
        batch["padding_mask"][1, 6:] = False
    for training in (True, False):
        joined.clear()
        flat, direct = run_both(backbone, batch, training, monkeypatch)
        assert len(joined) == 2  # each block, on the flat run
        np.testing.assert_array_equal(flat[0], direct[0])
        # Rounding apart: within a millionth of the largest gradient in
        # float32, and within bfloat16's own step (2**-8) in mixed precision.
        scale = max(np.abs(g).max() for g in direct[1])
        tolerance = 1e-6 if dtype is None else 2e-3
        assert len(flat[1]) == len(direct[1]) > 0
        for a, b in zip(flat[1], direct[1]):
            assert np.abs(a - b).max() <= tolerance * scale
