"""torch's fused kernels (keras_transfer.fused) compute what Keras' own do.

Every test compares a layer or model run fused against the same object run
through Keras' own `call` / `_compute_attention` (`fused.unfuse`), on the
same weights and inputs.
"""

import weakref

import keras
import keras_hub
import numpy as np
import pytest
import torch
from keras.src.models.functional import Functional
from family_models import FAMILY_CLASSES, make_backbone, make_tokenizer
from helpers import TEXTS

import keras_transfer as kt
from keras_transfer import fused, fused_blocks, fused_graph
from keras_transfer.preprocessing import TextPreprocessor
from keras_transfer.families import family_of


def _numpy(x):
    return keras.ops.convert_to_numpy(x)


def _both(model, run):
    """`run()` fused and unfused; the model is left fused."""
    fused.unfuse(model)
    unfused_out = run()
    assert fused.fuse(model) > 0
    return run(), unfused_out


def _randomize(layer, seed=0):
    """Random values for every weight, biases included (they start at 0)."""
    rng = np.random.default_rng(seed)
    for weight in layer.weights:
        weight.assign(rng.normal(0.0, 0.2, size=weight.shape).astype(weight.dtype))


def _family_batch(family):
    tokenizer = make_tokenizer(family)
    backbone = make_backbone(family, tokenizer.vocabulary_size())
    _randomize(backbone)
    fam = family_of(backbone)
    preprocessor = TextPreprocessor(tokenizer, backbone_class=fam.backbone_class, sequence_length=12)
    # Texts of different lengths, so the batch has padding (left or right).
    batch = preprocessor(["a good film", TEXTS[0], "bad"])
    return backbone, batch


@pytest.mark.parametrize("family", sorted(FAMILY_CLASSES))
def test_every_family_gives_the_same_outputs_fused(family):
    backbone, batch = _family_batch(family)

    def run():
        out = backbone(batch, training=False)
        return _numpy(out["sequence_output"] if isinstance(out, dict) else out)

    fused_out, unfused_out = _both(backbone, run)
    mask = _numpy(batch["padding_mask"])[..., None]
    assert np.isfinite(fused_out * mask).all()
    np.testing.assert_allclose(fused_out * mask, unfused_out * mask, atol=2e-5, rtol=1e-4)


def _no_dropout_bert(seed=0):
    keras.utils.set_random_seed(seed)
    return keras_hub.models.BertBackbone(
        vocabulary_size=50, num_layers=2, num_heads=2, hidden_dim=16,
        intermediate_dim=32, max_sequence_length=16, dropout=0.0,
    )


def test_gradients_are_the_same_fused():
    backbone = _no_dropout_bert()
    _randomize(backbone)
    rng = np.random.default_rng(0)
    batch = {
        "token_ids": torch.from_numpy(rng.integers(1, 50, size=(3, 10)).astype("int32")),
        "segment_ids": torch.zeros((3, 10), dtype=torch.int32),
        "padding_mask": torch.from_numpy(np.arange(10)[None, :] < np.array([[10], [6], [3]])),
    }

    def run():
        for weight in backbone.trainable_weights:
            weight.value.grad = None
        out = backbone(batch, training=True)
        loss = (out["sequence_output"] ** 2).mean() + out["pooled_output"].sum()
        loss.backward()
        return [weight.value.grad.clone().numpy() for weight in backbone.trainable_weights]

    fused_grads, unfused_grads = _both(backbone, run)
    assert len(fused_grads) == len(backbone.trainable_weights) > 10
    for a, b, weight in zip(fused_grads, unfused_grads, backbone.trainable_weights):
        np.testing.assert_allclose(a, b, atol=1e-5, rtol=1e-4, err_msg=weight.path)


def _spy_on_sdpa(monkeypatch, argument="attn_mask"):
    """Records `argument` of every `scaled_dot_product_attention` call."""
    calls = []
    real = torch.nn.functional.scaled_dot_product_attention

    def spy(*args, **kwargs):
        calls.append(kwargs.get(argument))
        return real(*args, **kwargs)

    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention", spy)
    return calls


def test_attention_with_dropout_takes_the_fused_kernel_when_dropout_does_nothing(bert_preset, monkeypatch):
    # A trainable backbone keeps its attention dropout (0.1); Keras' own path
    # then never uses the fused kernel, not even in inference.
    backbone, preprocessor = kt.load_backbone(bert_preset, sequence_length=16)
    assert backbone.transformer_layers[0]._self_attention_layer._dropout > 0
    batch = preprocessor(["a good film", "a bad awful film indeed"])
    calls = _spy_on_sdpa(monkeypatch)
    inference = backbone(batch, training=False)["sequence_output"]
    assert len(calls) == 2  # one per block
    fused.unfuse(backbone)
    calls.clear()
    keras_own = backbone(batch, training=False)["sequence_output"]
    assert not calls
    mask = _numpy(batch["padding_mask"])[..., None]
    np.testing.assert_allclose(_numpy(inference) * mask, _numpy(keras_own) * mask, atol=1e-5)

    # Training with unseeded dropout: the fused kernel applies it.
    fused.fuse(backbone)
    spy_rates = _spy_on_sdpa(monkeypatch, "dropout_p")
    backbone(batch, training=True)
    assert spy_rates == [0.1, 0.1]

    # A seeded attention dropout stays on Keras' path and its seed.
    attention = backbone.transformer_layers[0]._self_attention_layer
    attention._dropout_layer.seed = 7  # as `MultiHeadAttention(seed=7)` makes it
    spy_rates.clear()
    backbone(batch, training=True)
    assert spy_rates == [0.1]  # the other block only


def test_an_all_ones_padding_mask_goes_unmasked_to_the_kernel(bert_preset, monkeypatch):
    # On CUDA an attention mask rules out the flash kernel, and on a CPU the
    # kernel does less without one; an all-ones padding mask is dropped.
    from keras.src.backend.torch.core import get_device

    device = torch.device(get_device()).type
    monkeypatch.setattr(fused_blocks, "_MASK_DROP_DEVICES", ())  # Keras' masked attention first
    backbone, _ = kt.load_backbone(bert_preset, sequence_length=8)
    ids = torch.randint(1, 20, (2, 8), generator=torch.Generator().manual_seed(0), dtype=torch.int32)
    segments = torch.zeros((2, 8), dtype=torch.int32)
    full = {"token_ids": ids, "segment_ids": segments, "padding_mask": torch.ones((2, 8), dtype=torch.int32)}
    padded = dict(full, padding_mask=torch.tensor([[1] * 3 + [0] * 5, [1] * 8], dtype=torch.int32))
    masked_full = _numpy(backbone(full, training=False)["sequence_output"])
    masked_padded = _numpy(backbone(padded, training=False)["sequence_output"])

    monkeypatch.setattr(fused_blocks, "_MASK_DROP_DEVICES", (device,))
    reads = []
    real_all = torch.Tensor.all
    monkeypatch.setattr(torch.Tensor, "all", lambda self, *a, **k: reads.append(1) or real_all(self, *a, **k))
    masks = _spy_on_sdpa(monkeypatch)
    unmasked = _numpy(backbone(full, training=False)["sequence_output"])
    assert masks == [None, None] and len(reads) == 1  # both blocks; one read of the shared mask
    np.testing.assert_allclose(unmasked, masked_full, atol=1e-6 if device == "cpu" else 1e-4)

    masks.clear()
    again = _numpy(backbone(padded, training=False)["sequence_output"])
    assert len(masks) == 2 and all(mask is not None for mask in masks)  # real padding keeps its mask
    np.testing.assert_array_equal(again, masked_padded)

    # A step being traced (jit_compile) keeps the mask: it cannot branch on its values.
    monkeypatch.setattr(torch.compiler, "is_compiling", lambda: True)
    masks.clear()
    backbone(full, training=False)
    assert len(masks) == 2 and all(m is not None for m in masks)
    monkeypatch.undo()
    monkeypatch.setattr(fused_blocks, "_MASK_DROP_DEVICES", (device,))
    real_all = torch.Tensor.all
    monkeypatch.setattr(torch.Tensor, "all", lambda self, *a, **k: reads.append(1) or real_all(self, *a, **k))
    masks = _spy_on_sdpa(monkeypatch)

    # The same tensor changed in place is read again.
    mask = full["padding_mask"]
    backbone(full, training=False)
    reads.clear()
    mask[0, -1] = 0
    masks.clear()
    backbone(full, training=False)
    assert len(reads) == 1 and all(m is not None for m in masks)


def test_a_causal_mask_alone_takes_the_kernels_causal_path(gpt2_preset, monkeypatch):
    # GPT-2 without padding: the only mask left is the causal one, and the
    # kernel applies it itself (flash attention on CUDA) instead of a mask
    # built from it. Padding keeps the built mask.
    backbone, _ = kt.load_backbone(gpt2_preset, sequence_length=8)
    ids = torch.randint(1, 40, (2, 8), generator=torch.Generator().manual_seed(0), dtype=torch.int32)
    full = {"token_ids": ids, "padding_mask": torch.ones((2, 8), dtype=torch.int32)}
    padded = dict(full, padding_mask=torch.tensor([[0] * 3 + [1] * 5, [1] * 8], dtype=torch.int32))
    fused.unfuse(backbone)
    keras_full = _numpy(backbone(full, training=False))
    keras_padded = _numpy(backbone(padded, training=False))
    fused.fuse(backbone)

    masks = _spy_on_sdpa(monkeypatch)
    causal = _spy_on_sdpa(monkeypatch, "is_causal")
    np.testing.assert_allclose(_numpy(backbone(full, training=False)), keras_full, atol=1e-5)
    assert masks == [None, None] and causal == [True, True]  # both blocks

    masks.clear(), causal.clear()
    out = _numpy(backbone(padded, training=False))
    assert all(m is not None for m in masks) and causal == [False, False]
    kept = _numpy(padded["padding_mask"])[..., None].astype(bool)
    np.testing.assert_allclose(out * kept, keras_padded * kept, atol=1e-5)

    # Training (dropout on): the kernel's causal path with the dropout rate.
    rates = _spy_on_sdpa(monkeypatch, "dropout_p")
    causal.clear()
    backbone(full, training=True)
    assert causal == [True, True] and rates == [0.1, 0.1]

    # Keras' own `_compute_attention` (here its einsum path, since the layer
    # has dropout) builds the causal mask from the same flag.
    attentions = [block._self_attention_layer for block in backbone.transformer_layers]
    for attention in attentions:
        assert fused._remove_override(attention, "_compute_attention", fused._fused_compute_attention)
    masks.clear()
    np.testing.assert_allclose(_numpy(backbone(full, training=False)), keras_full, atol=1e-5)
    assert not masks  # Keras' einsum path, not the kernel

    # A subclass with its own `_compute_attention` may not know the flag: the built mask.
    attention = attentions[0]
    keras_own = keras.layers.MultiHeadAttention._compute_attention
    subclass = type("OwnAttention", (type(attention),), {"_compute_attention": lambda *a, **k: keras_own(*a, **k)})
    monkeypatch.setattr(attention, "__class__", subclass)
    assert not fused_blocks._takes_causal_flag(attention)
    assert fused_blocks._takes_causal_flag(attentions[1])


def test_causal_attention_with_left_padding_stays_finite(gpt2_preset, monkeypatch):
    backbone, preprocessor = kt.load_backbone(gpt2_preset, sequence_length=12)
    batch = preprocessor(["a", "the end of a long story"])
    assert not _numpy(batch["padding_mask"]).all()
    calls = _spy_on_sdpa(monkeypatch)

    def run():
        return _numpy(backbone(batch, training=False))

    fused_out, unfused_out = _both(backbone, run)
    assert calls and all(mask is not None and mask.dtype == torch.float32 for mask in calls)
    assert np.isfinite(fused_out).all()
    mask = _numpy(batch["padding_mask"])[..., None]
    np.testing.assert_allclose(fused_out * mask, unfused_out * mask, atol=1e-5)


@pytest.mark.parametrize(
    "equation, bias_axes, plan",
    [
        ("ab,bc->ac", "c", (1, 1)),
        ("abc,cde->abde", "de", (1, 2)),  # query/key/value projections
        ("abcd,cde->abe", "e", (2, 1)),  # attention output projection
        ("btd,dnh->btnh", None, (1, 2)),
        ("abc,cde->abde", "e", None),  # bias over part of the output axes
        ("abc,dc->abd", None, None),  # kernel stored (out, in)
        ("abc,cd->acd", None, None),  # output axes reordered
        ("...b,bc->...c", None, None),  # ellipsis
        ("ab,bc->abc", None, None),  # nothing contracted
    ],
)
def test_einsum_plans(equation, bias_axes, plan):
    assert fused._einsum_plan(equation, bias_axes) == plan


@pytest.mark.parametrize(
    "equation, output_shape, bias_axes, input_shape",
    [
        ("abc,cde->abde", (None, 4, 3), "de", (2, 5, 6)),
        ("abcd,cde->abe", (None, 7), "e", (2, 5, 4, 3)),
        ("abc,cde->abde", (None, 4, 3), "e", (2, 5, 6)),  # falls back
        ("abc,dc->abd", (None, 4), None, (2, 5, 6)),  # falls back
    ],
)
def test_einsum_dense_layers_agree(equation, output_shape, bias_axes, input_shape):
    keras.utils.set_random_seed(0)
    layer = keras.layers.EinsumDense(
        equation, output_shape=output_shape, bias_axes=bias_axes,
        activation="gelu", bias_initializer="random_normal",
    )
    x = np.random.default_rng(0).normal(size=input_shape).astype("float32")
    layer(x)
    fusable = fused._einsum_plan(equation, bias_axes) is not None
    out, reference = _both(layer, lambda: _numpy(layer(x))) if fusable else (None, None)
    if not fusable:
        assert fused.fuse(layer) == 0 and not fused.is_fused(layer)
        return
    assert fused.is_fused(layer)
    np.testing.assert_allclose(out, reference, atol=1e-5, rtol=1e-5)


def test_dense_with_lora_agrees():
    keras.utils.set_random_seed(0)
    layer = keras.layers.Dense(5, activation="relu")
    x = np.random.default_rng(0).normal(size=(3, 4, 6)).astype("float32")
    layer(x)
    layer.enable_lora(2)
    layer.lora_kernel_b.assign(np.ones((2, 5), "float32"))  # a nonzero adapter
    out, reference = _both(layer, lambda: _numpy(layer(x)))
    np.testing.assert_allclose(out, reference, atol=1e-5)


def test_integer_inputs_take_keras_own_path():
    layer = keras.layers.Dense(3)
    x = np.arange(8, dtype="int32").reshape(2, 4)
    layer(x.astype("float32"))
    out, reference = _both(layer, lambda: _numpy(layer(x)))
    np.testing.assert_allclose(out, reference)


def test_mixed_bfloat16_agrees(bert_preset):
    model = kt.TextClassifier.from_preset(bert_preset, num_classes=2, sequence_length=16, dtype="mixed_bfloat16")
    batch = model.preprocessor(["a good film", "bad"])
    out, reference = _both(model, lambda: _numpy(model.predict_on_batch(batch)))
    np.testing.assert_allclose(out, reference, atol=2e-2)


def test_task_models_run_fused_also_after_loading(bert_preset, tmp_path):
    model = kt.TextClassifier.from_preset(bert_preset, num_classes=2, sequence_length=16)
    logits = model.get_layer("logits")
    attention = model.backbone.transformer_layers[0]._self_attention_layer
    assert fused.is_fused(logits) and fused.is_fused(attention)
    assert fused.is_fused(attention._query_dense) and fused.is_fused(attention._output_dense)
    texts = ["a good film", "a bad awful film indeed"]
    before = model.predict(texts, verbose=0)
    path = tmp_path / "model.keras"
    model.save(path)
    assert "_kt_fused" not in (tmp_path / "model.keras").read_bytes().decode("latin-1")
    loaded = kt.load_model(path)
    assert fused.is_fused(loaded.get_layer("logits"))
    assert fused.is_fused(loaded.backbone.transformer_layers[0]._self_attention_layer)
    np.testing.assert_allclose(loaded.predict(texts, verbose=0), before, atol=1e-6)


def test_fuse_is_idempotent_and_unfuse_restores(bert_preset):
    backbone, _ = kt.load_backbone(bert_preset, sequence_length=16)
    dense = backbone.transformer_layers[0]._feedforward_output_dense
    assert fused.is_fused(dense)
    count = fused.fuse(backbone)
    assert fused.fuse(backbone) == count
    assert fused.unfuse(backbone) == count
    assert not fused.is_fused(dense) and "call" not in dense.__dict__
    assert fused.unfuse(backbone) == 0


def test_train_on_batch_does_not_trace_the_model_again(bert_preset, monkeypatch):
    # Keras traces the whole model symbolically at every train_on_batch
    # while any layer it tracks (the preprocessor, the tokenizer) is unbuilt.
    model = kt.TextClassifier.from_preset(bert_preset, num_classes=2, sequence_length=16)
    assert all(layer.built for layer in model._flatten_layers())
    batch = model.preprocessor(["a good film", "bad"])
    model.train_on_batch(batch, np.array([1, 0]))
    traced = []
    real = keras.src.backend.compute_output_spec
    monkeypatch.setattr(keras.src.backend, "compute_output_spec", lambda *a, **k: traced.append(1) or real(*a, **k))
    model.train_on_batch(batch, np.array([1, 0]))
    model.test_on_batch(batch, np.array([1, 0]))
    assert not traced


def _count_layer_calls(monkeypatch):
    calls = []
    real = keras.layers.Layer.__call__

    def counting(self, *args, **kwargs):
        calls.append(type(self).__name__)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(keras.layers.Layer, "__call__", counting)
    return calls


@pytest.mark.parametrize("preset", ["bert_preset", "gpt2_preset"])
def test_transformer_blocks_skip_layer_call_overhead(preset, request, monkeypatch):
    backbone, preprocessor = kt.load_backbone(request.getfixturevalue(preset), sequence_length=16)
    block = backbone.transformer_layers[0]
    assert fused.is_fused(block) and fused.is_fused(block._self_attention_layer_norm)
    batch = preprocessor(["a good film", "a bad awful film indeed"])
    calls = _count_layer_calls(monkeypatch)
    backbone(batch, training=False)
    direct = list(calls)
    fused.unfuse(backbone)
    calls.clear()
    backbone(batch, training=False)
    # Neither the blocks (called by the backbone's graph) nor their dozen
    # sub-layer calls go through Layer.__call__.
    blocks = len(backbone.transformer_layers)
    kind = type(block).__name__
    assert calls.count("EinsumDense") == 4 * blocks and "EinsumDense" not in direct
    assert calls.count(kind) == blocks and kind not in direct
    assert len(direct) <= len(calls) - 11 * blocks


@pytest.mark.parametrize("architecture", ["bert", "gpt2"])
def test_training_with_dropout_draws_the_same_random_numbers(architecture):
    # Two identical BERTs with dropout, one on Keras' own path, from the same
    # torch RNG state (unseeded Keras dropout on torch uses torch's global
    # generator): the direct calls and the fused kernel's attention dropout
    # must draw the same masks in the same order.
    def make():
        keras.utils.set_random_seed(3)
        sizes = dict(vocabulary_size=50, num_layers=2, num_heads=2, hidden_dim=16, intermediate_dim=32)
        if architecture == "bert":
            backbone = keras_hub.models.BertBackbone(max_sequence_length=16, dropout=0.3, **sizes)
        else:
            backbone = keras_hub.models.GPT2Backbone(max_sequence_length=16, dropout=0.3, **sizes)
        _randomize(backbone)
        return backbone

    def run(backbone, training):
        out = backbone(batch, training=training)
        return _numpy(out["sequence_output"] if isinstance(out, dict) else out) * rows

    fast, reference = make(), make()
    fused.fuse(fast)
    fused.unfuse(reference)
    assert fused.is_fused(fast.transformer_layers[0]._self_attention_layer)
    assert not fused.is_fused(reference.transformer_layers[0]._self_attention_layer)
    padding = np.arange(10)[None, :] < np.array([[10], [4]])
    batch = {"token_ids": np.arange(1, 21, dtype="int32").reshape(2, 10), "padding_mask": padding}
    if architecture == "bert":
        batch["segment_ids"] = np.zeros((2, 10), "int32")
    rows = padding[..., None]
    for step in range(2):
        torch.manual_seed(step)
        a = run(fast, True)
        torch.manual_seed(step)
        b = run(reference, True)
        np.testing.assert_allclose(a, b, atol=1e-5, rtol=1e-4)
    assert np.abs(run(fast, False) - a).max() > 1e-2  # dropout really was on


@pytest.mark.parametrize("normalize_first", [False, True])
def test_encoder_block_agrees_also_where_it_falls_back(normalize_first):
    keras.utils.set_random_seed(0)
    block = keras_hub.layers.TransformerEncoder(
        intermediate_dim=12, num_heads=2, normalize_first=normalize_first, dropout=0.0,
    )
    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.normal(size=(2, 5, 8)).astype("float32"))
    padding = torch.from_numpy(np.arange(5)[None, :] < np.array([[5], [3]]))
    block(x, padding_mask=padding)
    _randomize(block)
    fused.fuse(block)
    assert fused.is_fused(block)

    def masked_input():
        y = x.clone()
        keras.src.backend.set_keras_mask(y, padding)
        return y

    runs = {
        "padding mask": lambda: _numpy(block(x, padding_mask=padding)),
        "no mask": lambda: _numpy(block(x)),
        "Keras mask on the input": lambda: _numpy(block(masked_input())),
        "attention scores": lambda: [_numpy(t) for t in block(x, padding_mask=padding, return_attention_scores=True)],
    }
    for name, run in runs.items():
        out, reference = _both(block, run)
        for a, b in zip(keras.tree.flatten(out), keras.tree.flatten(reference)):
            rows = _numpy(padding)[:, :, None] if a.ndim == 3 else 1
            np.testing.assert_allclose(a * rows, b * rows, atol=1e-5, rtol=1e-5, err_msg=name)


@pytest.mark.filterwarnings("ignore:You passed `rms_scaling=True`")
@pytest.mark.parametrize(
    "kwargs, shape, fusable",
    [
        ({}, (2, 5, 6), True),
        ({"axis": [-2, -1]}, (2, 5, 6), True),
        ({"center": False, "scale": False}, (2, 5, 6), True),
        ({"axis": [0, 2]}, (2, 5, 6), False),  # not the trailing axes: Keras' path
        ({"rms_scaling": True}, (2, 5, 6), False),
    ],
)
def test_layer_normalization_agrees(kwargs, shape, fusable):
    layer = keras.layers.LayerNormalization(epsilon=1e-5, **kwargs)
    x = np.random.default_rng(0).normal(2.0, 3.0, size=shape).astype("float32")
    layer(x)
    _randomize(layer)
    out, reference = _both(layer, lambda: _numpy(layer(x)))
    np.testing.assert_allclose(out, reference, atol=1e-5, rtol=1e-5)
    calls = []
    real = torch.nn.functional.layer_norm
    torch.nn.functional.layer_norm = lambda *a, **k: calls.append(1) or real(*a, **k)
    try:
        layer(x)
    finally:
        torch.nn.functional.layer_norm = real
    assert bool(calls) == fusable


def test_layer_normalization_in_mixed_precision_computes_in_float32():
    layer = keras.layers.LayerNormalization(dtype="mixed_bfloat16")
    x = np.random.default_rng(0).normal(5.0, 0.01, size=(2, 3, 64)).astype("float32")
    layer(x)
    _randomize(layer)
    out, reference = _both(layer, lambda: layer(x))
    assert out.dtype == reference.dtype == torch.bfloat16
    np.testing.assert_array_equal(_numpy(out.float()), _numpy(reference.float()))


_RECORDED = []


class _Record(keras.layers.Layer):
    """Doubles its input and keeps a weak reference to what it returned."""

    def call(self, x):
        y = x * 2.0
        _RECORDED.append(weakref.ref(y))
        return y


class _Probe(keras.layers.Layer):
    """Notes whether the recorded tensors are still alive when it runs."""

    def call(self, x):
        self.alive = [ref() is not None for ref in _RECORDED]
        return x


def _graph_model():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((6,))
    recorded = _Record()(inputs)
    hidden = keras.layers.Dense(5, bias_initializer="random_normal")(recorded)
    skip = keras.layers.Dense(5)(inputs)  # `inputs` has two readers
    merged = keras.layers.Add()([hidden, skip])
    probed = _Probe(name="probe")(merged)
    return keras.Model(inputs, [probed, hidden])  # `hidden` is read and an output


def test_functional_models_free_intermediate_outputs_after_their_last_use():
    model = _graph_model()
    x = np.random.default_rng(0).normal(size=(3, 6)).astype("float32")

    def run():
        _RECORDED.clear()
        with torch.no_grad():
            return [_numpy(t) for t in model(x)]

    out, reference = _both(model, run)
    for a, b in zip(out, reference):
        np.testing.assert_allclose(a, b, atol=1e-6)
    assert fused.is_fused(model)
    run()
    assert model.get_layer("probe").alive == [False]  # freed once the Dense had read it
    fused.unfuse(model)
    run()
    assert model.get_layer("probe").alive == [True]  # Keras holds it to the end


class _Scaled(keras.layers.Layer):
    def call(self, x, mask=None, scale=1.0, offset=None):
        y = x * scale
        return y if mask is None else y * keras.ops.cast(mask, y.dtype)[..., None]


def _same_structure(a, b):
    """Equal, with the same container types and (dict) key order all the way down."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return list(a) == list(b) and all(_same_structure(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(map(_same_structure, a, b))
    return a is b or a == b


class _Pair(keras.layers.Layer):
    def call(self, pair, extra=None):
        return pair["first"] + pair["second"][0]


def test_graph_argument_fillers_fill_in_what_keras_does(bert_preset):
    # Every node of a task model, its backbone and a graph with constants,
    # tensors and None among keyword arguments, a list and a dict argument:
    # the filler gives Keras' `fill_in` result, container types and key
    # order included; a node with a nested container has no filler (Keras' own).
    inputs = keras.Input((4, 3))
    mask = keras.Input((4,), dtype="int32")
    scaled = _Scaled()(inputs, mask=mask, scale=2.0, offset=None)
    merged = keras.layers.Add()([scaled, inputs])
    graph = keras.Model([inputs, mask], _Scaled()(merged, scale=0.5))
    nested = _Pair()({"second": [inputs, None], "first": merged}, extra=(1, "a"))
    graph_nested = keras.Model([inputs, mask], nested)
    task = kt.TextClassifier.from_preset(bert_preset, num_classes=2, sequence_length=8)
    nodes = [
        node
        for model in (graph, graph_nested, task, task.backbone)
        for nodes_at_depth in model._nodes_by_depth.values()
        for node in nodes_at_depth
        if node.operation and not node.is_input
    ]
    values = {}
    for node in nodes:
        for x in (*node.input_tensors, *node.outputs):
            values.setdefault(id(x), object())  # a distinct stand-in per graph tensor
    fillers = [fused_graph._argument_filler(node.arguments) for node in nodes]
    kinds = {}
    for node, fill_in in zip(nodes, fillers):
        kinds.setdefault(type(node.operation).__name__, set()).add(fill_in is not None)
    assert kinds["Add"] == {True}  # a list of tensors
    assert kinds["BertBackbone"] == {True}  # a dict of tensors
    assert kinds["_Pair"] == {False}  # a list inside a dict: Keras' own `fill_in`
    assert kinds["_Scaled"] == {True} and kinds["TransformerEncoder"] == {True}
    for node, fill_in in zip(nodes, fillers):
        if fill_in is not None:
            assert _same_structure(fill_in(values), node.arguments.fill_in(values)), node.operation.name
    x = np.random.default_rng(0).normal(size=(2, 4, 3)).astype("float32")
    m = np.array([[1, 1, 0, 0], [1, 1, 1, 1]], "int32")
    out, reference = _both(graph, lambda: _numpy(graph([x, m])))
    np.testing.assert_allclose(out, reference, atol=1e-6)


def test_inputs_that_need_no_change_skip_keras_standardization(bert_preset, monkeypatch):
    backbone, _ = kt.load_backbone(bert_preset, sequence_length=8)
    assert fused._has_override(backbone, "_standardize_inputs", fused_graph._standardize_inputs)
    keras_own = lambda inputs: Functional._standardize_inputs(backbone, inputs)  # noqa: E731
    ids = torch.randint(1, 20, (2, 8), dtype=torch.int32)
    # Given in an order other than the model's (sorted) one.
    exact = {"token_ids": ids, "segment_ids": torch.zeros_like(ids), "padding_mask": torch.ones_like(ids)}
    checks = []
    monkeypatch.setattr(Functional, "_maybe_warn_inputs_struct_mismatch", lambda *a, **k: checks.append(1))
    flat = backbone._standardize_inputs(exact)
    assert not checks  # Keras' path not taken
    assert [id(x) for x in flat] == [id(x) for x in keras_own(exact)]  # the same tensors, same order
    checks.clear()
    others = [
        dict(exact, token_ids=ids.long()),  # Keras casts to the input's int32
        dict(exact, padding_mask=torch.ones(2, 8, 1, dtype=torch.int32)),  # Keras squeezes the rank
        {k: v.numpy() for k, v in exact.items()},  # NumPy arrays
        dict(exact, extra=ids),  # a name the model does not have
    ]
    for inputs in others:
        checks.clear()
        flat = backbone._standardize_inputs(inputs)
        assert checks  # Keras' own path
        for got, want in zip(flat, keras_own(inputs)):
            assert got.dtype == want.dtype and torch.equal(got, want)
    out = backbone(others[0])["sequence_output"]  # and the model runs on what Keras made of them
    np.testing.assert_allclose(_numpy(out), _numpy(backbone(exact)["sequence_output"]), atol=1e-6)


def test_inputs_that_need_no_change_skip_keras_input_checks_and_others_keep_them(bert_preset, monkeypatch):
    model = kt.TextClassifier.from_preset(bert_preset, num_classes=2, sequence_length=8)
    assert fused._has_override(model, "_assert_input_compatibility", fused_graph._assert_input_compatibility)
    ids = torch.randint(1, 20, (2, 8), dtype=torch.int32)
    exact = {"token_ids": ids, "segment_ids": torch.zeros_like(ids), "padding_mask": torch.ones_like(ids)}
    checked = []
    keras_check = keras.src.layers.input_spec.assert_input_compatibility
    monkeypatch.setattr(
        keras.src.layers.input_spec, "assert_input_compatibility",
        lambda *args, **kwargs: checked.append(1) or keras_check(*args, **kwargs),
    )
    model(exact)
    assert not checked  # nothing for Keras to check
    model(dict(exact, token_ids=ids.long()))
    assert checked  # a dtype Keras converts: Keras' checks
    # A wrong rank still gets Keras' error, at the boundary.
    with pytest.raises(ValueError, match="expected ndim=2|incompatible"):
        model(dict(exact, token_ids=ids[0]))
    # An input that fixes a dimension keeps Keras' shape check.
    inputs = {"features": keras.Input((4,), name="features")}
    fixed = keras.Model(inputs, keras.layers.Dense(2)(inputs["features"]))
    fused.fuse(fixed)
    fixed({"features": torch.zeros(2, 4)})
    with pytest.raises(ValueError, match="incompatible"):
        fixed({"features": torch.zeros(2, 5)})


def test_task_models_free_intermediate_outputs(bert_preset):
    model = kt.TextClassifier.from_preset(bert_preset, num_classes=2, sequence_length=16)
    assert fused.is_fused(model) and fused.is_fused(model.backbone)
    batch = model.preprocessor(["a good film", "bad"])
    out, reference = _both(model, lambda: _numpy(model.predict_on_batch(batch)))
    np.testing.assert_allclose(out, reference, atol=1e-6)
    # Symbolic calls (building a model on the backbone) take the same path.
    features = model.backbone(model.backbone.input)
    assert features["sequence_output"].shape[-1] == model.backbone.hidden_dim


def test_decoder_block_with_a_cache_takes_keras_own_path():
    keras.utils.set_random_seed(0)
    block = keras_hub.layers.TransformerDecoder(intermediate_dim=12, num_heads=2, dropout=0.0)
    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.normal(size=(2, 5, 8)).astype("float32"))
    block(x)
    _randomize(block)
    fused.fuse(block)
    assert fused.is_fused(block)
    cache = torch.from_numpy(rng.normal(size=(2, 2, 5, 2, 4)).astype("float32"))

    def run():
        full = _numpy(block(x))
        step, new_cache = block(x[:, :1], self_attention_cache=cache, self_attention_cache_update_index=0)
        return full, _numpy(step), _numpy(new_cache)

    out, reference = _both(block, run)
    for a, b in zip(out, reference):
        np.testing.assert_allclose(a, b, atol=1e-5, rtol=1e-5)


def test_half_precision_attention_dropout_on_a_cpu_stays_on_keras_path(bert_preset, monkeypatch):
    # torch's CPU kernel applies dropout in its unfused math path, which in
    # bf16 is slower than Keras' own attention; float32 takes the kernel.
    backbone, preprocessor = kt.load_backbone(bert_preset, sequence_length=16, dtype="mixed_bfloat16")
    batch = preprocessor(["a good film", "bad"])
    rates = _spy_on_sdpa(monkeypatch, "dropout_p")
    backbone(batch, training=True)
    assert all(not rate for rate in rates)
    backbone(batch, training=False)
    assert len(rates) >= 2 and not rates[-1]  # inference still takes the kernel


def _encoder_model(training_in_graph):
    """inputs -> two KerasHub encoder blocks (dropout 0.5); the first one's
    `training` fixed when the graph was built, as `block(x, training=...)` does."""
    keras.utils.set_random_seed(5)
    inputs = keras.Input((6, 8))
    first = keras_hub.layers.TransformerEncoder(16, 2, dropout=0.5)
    second = keras_hub.layers.TransformerEncoder(16, 2, dropout=0.5)
    x = first(inputs, training=training_in_graph) if training_in_graph is not None else first(inputs)
    return keras.Model(inputs, second(x))


@pytest.mark.parametrize("training_in_graph", [None, False])
@pytest.mark.parametrize("training", [True, False])
def test_blocks_called_by_the_graph_resolve_training_as_keras_does(training_in_graph, training):
    fast, reference = _encoder_model(training_in_graph), _encoder_model(training_in_graph)
    fused.fuse(fast)
    fused.unfuse(reference)
    x = np.random.default_rng(0).normal(size=(2, 6, 8)).astype("float32")
    torch.manual_seed(1)
    a = _numpy(fast(x, training=training))
    torch.manual_seed(1)
    b = _numpy(reference(x, training=training))
    np.testing.assert_allclose(a, b, atol=1e-5, rtol=1e-4)
    if training:  # dropout really was on (in the second block at least)
        assert np.abs(a - _numpy(fast(x, training=False))).max() > 1e-2


def _leaf_model(training_in_graph):
    """token ids -> Embedding -> Dropout(0.5) (its `training` maybe fixed in the
    graph) -> LayerNormalization -> Dense -> Dropout -> Dense."""
    keras.utils.set_random_seed(5)
    inputs = keras.Input((6,), dtype="int32")
    x = keras.layers.Embedding(20, 8)(inputs)
    dropout = keras.layers.Dropout(0.5)
    x = dropout(x, training=training_in_graph) if training_in_graph is not None else dropout(x)
    x = keras.layers.LayerNormalization()(x)
    x = keras.layers.Dropout(0.5)(keras.layers.Dense(16, activation="relu")(x))
    return keras.Model(inputs, keras.layers.Dense(3)(x))


def _nested_model(training_in_graph):
    """dict inputs -> a submodel (Embedding + Dense of the float input, summed by
    an `Add`, Dropout(0.5); two outputs) -> an `Add` of its outputs under
    mixed_bfloat16 (float32 inputs: cast) -> Dense; the submodel's `training`
    maybe fixed in the graph."""
    keras.utils.set_random_seed(5)
    ids, extra = keras.Input((6,), dtype="int32", name="ids"), keras.Input((6, 4), name="extra")
    embedded = keras.layers.Embedding(20, 8)(ids)
    summed = keras.layers.Add()([embedded, keras.layers.Dense(8)(extra)])
    dropped = keras.layers.Dropout(0.5)(summed)
    inner = keras.Model({"ids": ids, "extra": extra}, {"dropped": dropped, "summed": summed})
    outer_ids, outer_extra = keras.Input((6,), dtype="int32", name="ids"), keras.Input((6, 4), name="extra")
    features = {"ids": outer_ids, "extra": outer_extra}
    parts = inner(features, training=training_in_graph) if training_in_graph is not None else inner(features)
    merged = keras.layers.Add(dtype="mixed_bfloat16")((parts["dropped"], parts["summed"]))
    return keras.Model(features, keras.layers.Dense(3)(merged))


GRAPH_MODELS = {
    # builder, inputs, whether the call's `training` reaches a dropout when the graph fixed one
    "plain layers": (_leaf_model, lambda rng: rng.integers(0, 20, size=(4, 6)).astype("int32"), True),
    "submodel and merges": (
        _nested_model,
        lambda rng: {"ids": rng.integers(0, 20, size=(4, 6)).astype("int32"), "extra": rng.normal(size=(4, 6, 4)).astype("float32")},
        False,  # the submodel's dropout is the only one
    ),
}


@pytest.mark.parametrize("graph", sorted(GRAPH_MODELS))
@pytest.mark.parametrize("training_in_graph", [None, False])
@pytest.mark.parametrize("training", [True, False])
def test_layers_called_by_the_graph_match_keras(graph, training_in_graph, training, monkeypatch):
    build, make_inputs, dropout_despite_fixed = GRAPH_MODELS[graph]
    fast, reference = build(training_in_graph), build(training_in_graph)
    fused.fuse(fast)
    fused.unfuse(reference)
    x = make_inputs(np.random.default_rng(0))
    torch.manual_seed(1)  # unseeded Keras dropout draws from torch's generator
    b = reference(x, training=training)
    through_call = _count_layer_calls(monkeypatch)
    torch.manual_seed(1)
    a = fast(x, training=training)
    assert through_call == ["Functional"]  # the outer model only: every layer inside ran directly
    assert a.dtype == b.dtype
    np.testing.assert_allclose(_numpy(a), _numpy(b), atol=1e-6)
    if training and (training_in_graph is None or dropout_despite_fixed):  # the dropout really was on
        assert np.abs(_numpy(a) - _numpy(fast(x, training=False))).max() > 1e-2


def test_an_embedding_that_makes_a_mask_goes_through_layer_call(monkeypatch):
    inputs = keras.Input((5,), dtype="int32")
    embedded = keras.layers.Embedding(10, 4, mask_zero=True)(inputs)
    model = keras.Model(inputs, keras.layers.LayerNormalization()(embedded))
    fused.fuse(model)
    out = model(np.array([[1, 2, 0, 0, 0]], "int32"))
    assert fused_graph._is_plain_leaf(model.layers[1]) is False
    mask = keras.src.backend.get_keras_mask(out)
    np.testing.assert_array_equal(_numpy(mask), [[True, True, False, False, False]])  # as Keras makes it


def test_blocks_with_torch_hooks_go_through_layer_call(bert_preset):
    backbone, preprocessor = kt.load_backbone(bert_preset, sequence_length=16)
    batch = preprocessor(["a good film", "a bad awful film indeed"])
    expected = _numpy(backbone(batch, training=False)["sequence_output"])
    seen = []
    block = backbone.transformer_layers[0]
    hooked = [block, block._self_attention_layer._query_dense, block._feedforward_layer_norm]
    handles = [layer.register_forward_hook(lambda *args: seen.append(args)) for layer in hooked]
    try:
        actual = _numpy(backbone(batch, training=False)["sequence_output"])
    finally:
        for handle in handles:
            handle.remove()
    assert len(seen) == 3  # the hooks ran, as they do without keras_transfer
    np.testing.assert_array_equal(actual, expected)


def test_train_steps_rebuild_torch_parameters_only_when_the_variables_change(bert_preset):
    model = kt.TextClassifier.from_preset(bert_preset, num_classes=2, sequence_length=16)
    x, y = model.preprocessor(TEXTS[:4]), np.array([0, 1, 1, 0])
    model.train_on_batch(x, y)
    params = model._torch_params
    model.train_on_batch(x, y)
    assert model._torch_params is params  # Keras would have built a new one
    assert {id(p) for p in model.parameters()} == {id(v.value) for v in model.variables}
    model.enable_lora(rank=2)
    model.compile(learning_rate=1e-3)
    model.train_on_batch(x, y)
    assert model._torch_params is not params
    names = [name for name, _ in model.named_parameters()]
    assert any("lora" in name for name in names)
    assert {id(p) for p in model.parameters()} == {id(v.value) for v in model.variables}


def test_frozen_weights_keep_their_compute_dtype_cast_until_they_change():
    from keras.src.backend import AutocastScope

    frozen = keras.Variable(np.ones((2, 3), "float32"), name="frozen", trainable=False)
    training = keras.Variable(np.ones((2, 3), "float32"), name="training")
    with AutocastScope("bfloat16"):
        first = fused._value(frozen)
        assert first.dtype == torch.bfloat16 and fused._value(frozen) is first  # kept
        assert fused._value(training) is not fused._value(training)  # trains: cast afresh
        with AutocastScope("float16"):
            assert fused._value(frozen).dtype == torch.float16  # another dtype: cast again
    frozen.assign(np.full((2, 3), 3.0, "float32"))  # written in place (outside the scope, as
    # Keras' assign inside an autocast scope writes into a temporary cast)
    with AutocastScope("bfloat16"):
        assert torch.equal(fused._value(frozen), torch.full((2, 3), 3.0, dtype=torch.bfloat16))
        frozen._value = torch.full((2, 3), 5.0)  # replaced
        assert torch.equal(fused._value(frozen), torch.full((2, 3), 5.0, dtype=torch.bfloat16))
        with torch.inference_mode():
            fused._value(frozen)
        assert not fused._value(frozen).is_inference()  # nothing kept from inference mode
        frozen.trainable = True  # unfrozen: the kept copy goes
        assert fused._value(frozen).requires_grad and "_kt_frozen_cast" not in frozen.__dict__


def test_a_frozen_mixed_precision_backbone_reuses_its_casts_and_follows_new_weights(bert_preset):
    model = kt.TextClassifier.from_preset(bert_preset, num_classes=2, sequence_length=16, dtype="mixed_bfloat16")
    batch = model.preprocessor(["a good film", "bad"])
    out, reference = _both(model, lambda: _numpy(model.predict_on_batch(batch)))
    np.testing.assert_array_equal(out, reference)  # the same casts of the same weights
    kernel = model.backbone.transformer_layers[0]._self_attention_layer._output_dense._kernel
    assert "_kt_frozen_cast" in kernel.__dict__
    kept = kernel._kt_frozen_cast[3]
    model.predict_on_batch(batch)
    assert kernel._kt_frozen_cast[3] is kept
    # New weights (as `load_weights` or `set_weights` write them) show at once.
    kernel.assign(_numpy(kernel) * 2.0)
    changed = _numpy(model.predict_on_batch(batch))
    fused.unfuse(model)
    np.testing.assert_array_equal(changed, _numpy(model.predict_on_batch(batch)))
    assert not np.array_equal(changed, out)
    # Unfrozen, the backbone trains through fresh casts.
    fused.fuse(model)
    kt.unfreeze(model)
    model.compile(learning_rate=1e-3)
    model.fit(["a good film", "bad"] * 2, [1, 0] * 2, epochs=1, batch_size=4, verbose=0, cache_features=False)
    assert "_kt_frozen_cast" not in kernel.__dict__


def test_variable_reads_match_keras_value_property():
    from keras.src.backend import AutocastScope, StatelessScope

    weight = keras.Variable(np.ones((2, 3), "float32"), name="w")
    count = keras.Variable(np.arange(3, dtype="int32"), name="count", trainable=False)
    no_autocast = keras.Variable(np.ones(2, "float32"), autocast=False)
    for scope in (None, AutocastScope("bfloat16"), AutocastScope("float16"), AutocastScope(None)):
        with scope or AutocastScope(None):
            for variable in (weight, count, no_autocast):
                got, want = fused._value(variable), variable.value
                assert got.dtype == want.dtype and torch.equal(got, want)
    replacement = torch.full((2, 3), 7.0)
    with StatelessScope(state_mapping=[(weight, replacement)]):
        assert torch.equal(fused._value(weight), replacement)


def _linear_projection(x, kernel, bias, contracted, produced):
    """A projection as `torch.nn.functional.linear` computes it: the kernel
    flattened to (inputs, outputs) and transposed, the input's contracted
    axes flattened (the fused call's arithmetic before `addmm`)."""
    batch_shape = x.shape[: x.ndim - contracted]
    weight = kernel.reshape(int(np.prod(kernel.shape[:contracted])), -1).t()
    y = torch.nn.functional.linear(
        x.reshape(batch_shape + (weight.shape[1],)), weight, None if bias is None else bias.reshape(-1)
    )
    return y.reshape(batch_shape + kernel.shape[contracted:])


def _strided(shape, layout, dtype):
    if layout == "contiguous":
        x = torch.randn(shape)
    elif layout == "transposed":  # every axis reversed in memory
        x = torch.randn(tuple(reversed(shape))).permute(*reversed(range(len(shape))))
    else:  # every other element of the last axis
        x = torch.randn(shape[:-1] + (2 * shape[-1],))[..., ::2]
    return x.to(dtype).requires_grad_()


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("plan", [(1, 1), (1, 2), (2, 1)])
@pytest.mark.parametrize("batch_shape", [(5,), (2, 7), (2, 3, 4)])
@pytest.mark.parametrize("layout", ["contiguous", "transposed", "sliced"])
@pytest.mark.parametrize("with_bias", [True, False])
@pytest.mark.parametrize("kernel_layout", ["contiguous", "transposed"])
def test_projection_computes_what_linear_computes_bit_for_bit(
    dtype, plan, batch_shape, layout, with_bias, kernel_layout
):
    # `_project` calls the `addmm` / `mm` that `linear` makes of a flattened
    # input itself; outputs and every gradient are the same bits.
    torch.manual_seed(0)
    contracted, produced = plan
    inputs = (6,) if contracted == 1 else (3, 4)
    outputs = (8,) if produced == 1 else (2, 5)
    x = _strided(batch_shape + inputs, layout, dtype)
    kernel = _strided(inputs + outputs, kernel_layout, dtype)
    bias = torch.randn(outputs, dtype=dtype, requires_grad=True) if with_bias else None
    wrt = [x, kernel] + ([bias] if with_bias else [])

    expected = _linear_projection(x, kernel, bias, contracted, produced)
    got = fused._project(x, kernel, bias, contracted, produced)
    assert got.shape == expected.shape == batch_shape + outputs
    assert torch.equal(got, expected)
    upstream = torch.randn_like(expected)
    for a, b in zip(torch.autograd.grad(got, wrt, upstream), torch.autograd.grad(expected, wrt, upstream)):
        assert torch.equal(a, b)


def _graph_nodes(tensor):
    seen, stack = set(), [tensor.grad_fn]
    while stack:
        node = stack.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        stack.extend(next_node for next_node, _ in node.next_functions)
    return [type(node).__name__ for node in seen]


@pytest.mark.parametrize("plan", [(1, 1), (1, 2), (2, 1)])
def test_a_trainable_projection_adds_no_transposes_to_the_backward_graph(plan):
    # `linear(x, kernel.t(), bias)` transposes the kernel twice (in the
    # call and inside `linear`): two autograd nodes per projection that
    # the backward pass walks for nothing.
    contracted, produced = plan
    inputs = (6,) if contracted == 1 else (3, 4)
    outputs = (8,) if produced == 1 else (2, 5)
    x = torch.randn((2, 7) + inputs, requires_grad=True)
    kernel = torch.randn(inputs + outputs, requires_grad=True)
    bias = torch.randn(outputs, requires_grad=True)
    nodes = _graph_nodes(fused._project(x, kernel, bias, contracted, produced))
    assert "AddmmBackward0" in nodes
    assert "TBackward0" not in nodes
    # The input's flattening and the output's view, plus the kernel's and
    # bias's flattening where the einsum has several axes.
    views = sum(name in ("ViewBackward0", "UnsafeViewBackward0", "ReshapeAliasBackward0") for name in nodes)
    assert views == 2 + (2 if produced > 1 else 1 if contracted > 1 else 0)


def test_sublayers_are_read_as_attribute_access_reads_them():
    block = keras_hub.layers.TransformerEncoder(intermediate_dim=8, num_heads=2)
    block.build((None, 4, 6))
    attention = block._self_attention_layer
    assert fused._sublayer(block, "_self_attention_layer") is attention
    for name in fused_blocks._ATTENTION_PROJECTIONS:
        assert fused._sublayer(attention, name) is getattr(attention, name)
    for name in fused_blocks._BLOCK_SUBLAYERS:
        assert fused._sublayer(block, name) is getattr(block, name)
    assert fused._sublayer(block, "no_such_layer") is None
    block.plain_attribute = "not a layer"  # an attribute outside torch's modules
    assert fused._sublayer(block, "plain_attribute") == "not a layer"


def test_graph_nodes_run_the_operation_keras_maps_them_to():
    inputs = keras.Input((3,))
    dense = keras.layers.Dense(2)
    model = keras.Model(inputs, dense(inputs))
    node = next(n for n in model._nodes_by_depth[0] if n.operation is dense)
    assert fused_graph._operation_for_node(model, node) is dense is model._get_operation_for_node(node)
    # Where Keras maps operations to stand-ins (JAX's NNX), the stand-in runs.
    stand_in = keras.layers.Dense(2)
    model._nnx_op_mapping = {id(dense): stand_in}
    assert fused_graph._operation_for_node(model, node) is stand_in is model._get_operation_for_node(node)
    model._nnx_op_mapping = {}
    assert fused_graph._operation_for_node(model, node) is dense is model._get_operation_for_node(node)


@pytest.fixture
def no_kept_masks():
    fused._mask_memo.clear()
    yield
    fused._mask_memo.clear()


def _counting(monkeypatch, module, name):
    """Counts the calls of `module.name`, which still runs."""
    calls = []
    original = getattr(module, name)

    def counted(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(module, name, counted)
    return calls


@pytest.mark.parametrize("preset_name", ["bert_preset", "gpt2_preset"])
def test_a_padded_batchs_attention_mask_is_made_once_per_forward_pass(preset_name, request, monkeypatch, no_kept_masks):
    model = kt.TextClassifier.from_preset(request.getfixturevalue(preset_name), num_classes=2, sequence_length=12)
    batch = model.preprocessor(["a good film", TEXTS[0], "bad"])  # padded rows
    blocks = len(model.backbone.transformer_layers)
    assert blocks > 1
    expected = _numpy(model.predict_on_batch(batch))
    fused._mask_memo.clear()
    made = _counting(monkeypatch, fused, "_additive_mask")
    got = _numpy(model.predict_on_batch(batch))
    np.testing.assert_array_equal(got, expected)
    assert len(made) == 1  # not once per block
    # Without the memo (every block makes its own): the same numbers.
    monkeypatch.setattr(fused, "_memoized_mask", lambda kind, sources, extra, make: make())
    np.testing.assert_array_equal(_numpy(model.predict_on_batch(batch)), expected)
    assert len(made) == 1 + blocks


def test_kept_masks_follow_their_sources(no_kept_masks):
    padding = torch.tensor([[1, 1, 0], [1, 1, 1]], dtype=torch.int32)
    calls = []

    def make():
        calls.append(1)
        return padding.clone()

    first = fused._memoized_mask("test", (padding, None), ("float32",), make)
    assert fused._memoized_mask("test", (padding, None), ("float32",), make) is first
    assert len(calls) == 1
    padding[0, 2] = 1  # written in place: made again
    assert torch.equal(fused._memoized_mask("test", (padding, None), ("float32",), make), padding)
    assert len(calls) == 2
    fused._memoized_mask("test", (padding.clone(), None), ("float32",), make)  # another tensor, equal values
    fused._memoized_mask("test", (padding, None), ("bfloat16",), make)  # another dtype
    fused._memoized_mask("test", (padding, torch.ones(2, 3, 3)), ("bfloat16",), make)  # another source
    assert len(calls) == 5
    with torch.inference_mode():  # nothing made in inference mode serves outside it, nor the reverse
        kept = fused._memoized_mask("test", (padding, None), ("bfloat16",), make)
        assert kept.is_inference()
    assert not fused._memoized_mask("test", (padding, None), ("bfloat16",), make).is_inference()
    assert len(calls) == 7
    fused._memoized_mask("test", (np.ones((2, 3)), None), ("bfloat16",), make)  # not a tensor: no memo
    fused._memoized_mask("test", (np.ones((2, 3)), None), ("bfloat16",), make)
    assert len(calls) == 9


def test_masks_are_made_afresh_while_torch_compile_traces(monkeypatch, no_kept_masks):
    padding = torch.ones(2, 3, dtype=torch.int32)
    monkeypatch.setattr(torch.compiler, "is_compiling", lambda: True)
    made = [fused._memoized_mask("test", (padding,), (), lambda: padding.clone()) for _ in range(2)]
    assert made[0] is not made[1]
    assert fused._mask_memo == {}


def test_masks_of_inference_tensors_are_kept_for_one_forward_pass_only(no_kept_masks):
    # Tensors made inside `torch.inference_mode()` have no version counter
    # and can be written in place there: outside a forward pass nothing of
    # theirs is kept, inside one it is kept until the pass ends.
    calls = []

    def make():
        calls.append(1)
        return torch.zeros(())

    with torch.inference_mode():
        padding = torch.ones(2, 3, dtype=torch.int32)
        fused._memoized_mask("test", (padding,), (), make)
        fused._memoized_mask("test", (padding,), (), make)
        assert len(calls) == 2
        for _ in range(2):  # two forward passes: made once in each
            fused._forward_passes[0] += 1
            fused._forward_passes[1] += 1
            try:
                kept = fused._memoized_mask("test", (padding,), (), make)
                assert fused._memoized_mask("test", (padding,), (), make) is kept
            finally:
                fused._forward_passes[1] -= 1
        assert len(calls) == 4
    assert fused._forward_passes[1] == 0


@pytest.mark.parametrize("preset_name", ["bert_preset", "gpt2_preset"])
def test_padded_batches_predict_inside_torch_inference_mode(preset_name, request, monkeypatch, no_kept_masks):
    model = kt.TextClassifier.from_preset(request.getfixturevalue(preset_name), num_classes=2, sequence_length=12)
    batch = model.preprocessor(["a good film", TEXTS[0], "bad"])  # padded rows
    expected = _numpy(model.predict_on_batch(batch))
    made = _counting(monkeypatch, fused, "_additive_mask")
    with torch.inference_mode():
        np.testing.assert_allclose(_numpy(model.predict_on_batch(batch)), expected, rtol=1e-5, atol=1e-6)
        assert len(made) == 1  # still once per forward pass, not once per block
        inputs = {name: torch.as_tensor(_numpy(value)) for name, value in batch.items()}  # inference tensors
        np.testing.assert_allclose(_numpy(model(inputs)), expected, rtol=1e-5, atol=1e-6)
        # The same mask tensor written in place between calls (a serving
        # loop reusing its buffers): the second call sees the new mask.
        unpadded = {name: value.clone() for name, value in inputs.items()}
        unpadded["padding_mask"][:] = True
        inputs["padding_mask"].copy_(unpadded["padding_mask"])
        np.testing.assert_allclose(_numpy(model(inputs)), _numpy(model(unpadded)), rtol=1e-5, atol=1e-6)
    assert fused._forward_passes[1] == 0


@pytest.mark.parametrize("preset_name", ["bert_preset", "gpt2_preset"])
def test_frozen_query_key_value_projections_run_as_one_product_with_the_same_numbers(
    preset_name, request, monkeypatch
):
    model = kt.TextClassifier.from_preset(
        request.getfixturevalue(preset_name), num_classes=2, sequence_length=12, dtype="mixed_bfloat16"
    )
    _randomize(model.backbone)
    batch = model.preprocessor(["a good film", TEXTS[0], "bad"])
    query = model.backbone.transformer_layers[0]._self_attention_layer._query_dense
    fused_out = _numpy(model.predict_on_batch(batch))
    assert "_kt_frozen_qkv" in query.__dict__  # the one-product path ran
    weight, bias, shape = query._kt_frozen_qkv[3]
    assert weight.dtype == torch.bfloat16 and weight.shape == (shape[0], 3 * shape[1] * shape[2])
    with monkeypatch.context() as patch:
        patch.setattr(fused_blocks, "_frozen_qkv", lambda layers, target, x: None)
        np.testing.assert_array_equal(_numpy(model.predict_on_batch(batch)), fused_out)
    assert "_kt_frozen_qkv" not in query.__dict__  # not taken: let go
    np.testing.assert_array_equal(_numpy(model.predict_on_batch(batch)), fused_out)
    weight = query._kt_frozen_qkv[3][0]
    last_weight = model.backbone.transformer_layers[-1]._self_attention_layer._query_dense._kt_frozen_qkv[3][0]
    # New weights show at once.
    value_kernel = model.backbone.transformer_layers[-1]._self_attention_layer._value_dense._kernel
    value_kernel.assign(_numpy(value_kernel) * 3.0)
    changed = _numpy(model.predict_on_batch(batch))
    last_query = model.backbone.transformer_layers[-1]._self_attention_layer._query_dense
    assert last_query._kt_frozen_qkv[3][0] is not last_weight
    assert query._kt_frozen_qkv[3][0] is weight  # the unchanged block's kept
    with monkeypatch.context() as patch:
        patch.setattr(fused_blocks, "_frozen_qkv", lambda layers, target, x: None)
        np.testing.assert_array_equal(_numpy(model.predict_on_batch(batch)), changed)
    assert not np.array_equal(changed, fused_out)


def test_the_one_product_path_is_left_where_it_would_change_the_numbers(bert_preset):
    model = kt.TextClassifier.from_preset(bert_preset, num_classes=2, sequence_length=12, dtype="mixed_bfloat16")
    layers = [
        getattr(model.backbone.transformer_layers[0]._self_attention_layer, name)
        for name in ("_query_dense", "_key_dense", "_value_dense")
    ]
    x = torch.zeros(2, 4, layers[0]._kernel.shape[0], dtype=torch.bfloat16)
    assert fused_blocks._frozen_qkv(layers, torch.bfloat16, x) is not None  # frozen, cast: one product
    assert fused_blocks._frozen_qkv(layers, None, x) is None  # nothing to cast: no copy is made
    assert fused_blocks._frozen_qkv(layers, torch.bfloat16, x[..., :-1]) is None  # the direct path's error
    kt.unfreeze(model)  # weights that train: their gradients need the three products
    assert fused_blocks._frozen_qkv(layers, torch.bfloat16, x) is None
    kt.freeze(model)
    layers[1].activation = keras.activations.get("relu")
    assert fused_blocks._frozen_qkv(layers, torch.bfloat16, x) is None
    # A block whose input takes a gradient keeps the three products (the
    # input's gradient would add the three parts in another order).
    layers[1].activation = None
    query = layers[0]
    batch = model.preprocessor(["a good film", "bad"])
    with torch.enable_grad():
        query.__dict__.pop("_kt_frozen_qkv", None)
        model(batch, training=False)  # a frozen backbone: nothing to differentiate
        assert "_kt_frozen_qkv" in query.__dict__
        query.__dict__.pop("_kt_frozen_qkv")
        model.backbone.token_embedding.trainable = True  # the blocks' inputs take gradients now
        model(batch, training=False)
        assert "_kt_frozen_qkv" not in query.__dict__


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32, torch.float64])
def test_layer_norms_compute_in_the_dtype_torch_promotes_to(dtype):
    assert fused._promoted_to_float32(dtype) is torch.promote_types(dtype, torch.float32)
    assert fused._promoted_to_float32(dtype) is fused._promoted_to_float32(dtype)


@pytest.mark.parametrize("source", [torch.float32, torch.bfloat16, torch.float16, torch.int32])
@pytest.mark.parametrize("target", [torch.float32, torch.bfloat16, torch.float16, torch.float64, torch.int64])
def test_casts_are_torchs_to(source, target):
    x = (torch.arange(-6, 6) * 1.37).to(source)
    if source.is_floating_point:
        x.requires_grad_()
    expected, got = x.to(target), fused._to(x, target)
    assert got.dtype == target and torch.equal(got, expected)
    assert type(got.grad_fn) is type(expected.grad_fn)


@pytest.mark.parametrize(
    "activation",
    [keras.activations.linear, keras.activations.gelu, "gelu_approximate", keras.activations.relu],
)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_activations_make_the_torch_call_keras_makes(activation, dtype):
    if activation == "gelu_approximate":
        from keras_hub.src.utils.keras_utils import gelu_approximate as activation
    x = torch.linspace(-4, 4, 101).to(dtype).requires_grad_()
    expected, got = activation(x), fused._activate(activation, x)
    assert got.dtype == expected.dtype and torch.equal(got, expected)
    upstream = torch.randn_like(expected)
    assert torch.equal(*(torch.autograd.grad(y, x, upstream)[0] for y in (got, expected)))


def test_a_decoders_causal_mask_is_kept_per_shape_and_device(monkeypatch, no_kept_masks):
    # Without padding or attention masks a decoder's mask depends on the
    # sequence's shape (and the device it is made on) alone.
    keras.utils.set_random_seed(0)
    block = keras_hub.layers.TransformerDecoder(intermediate_dim=12, num_heads=2, dropout=0.0)
    block(torch.zeros(1, 3, 8))
    _randomize(block)
    fused.fuse(block)
    monkeypatch.setattr(fused_blocks, "_takes_causal_flag", lambda attention: False)  # the built mask's path
    for length in (3, 5, 3):
        x = torch.from_numpy(np.random.default_rng(length).normal(size=(2, length, 8)).astype("float32"))
        got = _numpy(block(x))
        assert fused._mask_memo["decoder"][3].shape[-1] == length
        fused.unfuse(block)
        np.testing.assert_allclose(got, _numpy(block(x)), rtol=1e-5, atol=1e-5)
        fused.fuse(block)


def test_kept_query_key_value_weights_are_let_go_once_the_block_trains_or_takes_lora(bert_preset):
    model = kt.TextClassifier.from_preset(bert_preset, num_classes=2, sequence_length=12, dtype="mixed_bfloat16")
    x, y = model.preprocessor(["a good film", "bad"]), np.array([1, 0])
    queries = [block._self_attention_layer._query_dense for block in model.backbone.transformer_layers]
    model.predict_on_batch(x)
    assert all("_kt_frozen_qkv" in query.__dict__ for query in queries)
    kt.unfreeze(model)  # fine-tuning: the kept bf16 copies would be dead weight
    model.compile(learning_rate=1e-3)
    model.train_on_batch(x, y)
    assert not any("_kt_frozen_qkv" in query.__dict__ for query in queries)
    kt.freeze(model)
    model.predict_on_batch(x)
    assert all("_kt_frozen_qkv" in query.__dict__ for query in queries)
    fused.unfuse(model)  # Keras' own paths: nothing of the fused ones kept
    assert not any("_kt_frozen_qkv" in query.__dict__ for query in queries)
    fused.fuse(model)
    model.predict_on_batch(x)
    assert all("_kt_frozen_qkv" in query.__dict__ for query in queries)
    query_kernels = [query._kernel for query in queries]
    from keras.src.backend import AutocastScope

    with AutocastScope("bfloat16"):  # a kept cast, as the three-product path keeps one
        for kernel in query_kernels:
            fused._value(kernel)
    assert all("_kt_frozen_cast" in kernel.__dict__ for kernel in query_kernels)
    model.enable_lora(rank=2)  # LoRA blocks take the direct path
    model.predict_on_batch(x)
    assert not any("_kt_frozen_qkv" in query.__dict__ for query in queries)
    # LoRA's `kernel` property casts the frozen kernel afresh: no kept cast of it either.
    assert not any("_kt_frozen_cast" in kernel.__dict__ for kernel in query_kernels)
