"""HF-format BERT checkpoints load with the GELU their config names (bert.py).

The reference is HuggingFace's `BertModel` forward written out in NumPy
over the checkpoint's own weights, so the comparison needs no transformers.
"""

import json
import math

import keras
import keras_hub
import numpy as np
import pytest
from helpers import raises

import keras_transfer as kt
from keras_transfer.bert import BertBackbone


def _layer_norm(x, weights, prefix, eps=1e-12):
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * weights[prefix + ".weight"] + weights[prefix + ".bias"]


def _linear(x, weights, prefix):
    return x @ weights[prefix + ".weight"].T + weights[prefix + ".bias"]


def _gelu(x, exact):
    if exact:
        return 0.5 * x * (1 + np.vectorize(math.erf)(x / math.sqrt(2)))
    return 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3)))


def reference_bert(weights, token_ids, segment_ids, padding_mask, heads=2, exact=True):
    """HF `BertModel`'s last hidden state, in float64 NumPy."""
    w = {k: v.astype("float64") for k, v in weights.items()}
    positions = np.arange(token_ids.shape[1])
    x = (
        w["embeddings.word_embeddings.weight"][token_ids]
        + w["embeddings.position_embeddings.weight"][positions][None]
        + w["embeddings.token_type_embeddings.weight"][segment_ids]
    )
    x = _layer_norm(x, w, "embeddings.LayerNorm")
    batch, length, hidden = x.shape
    size = hidden // heads
    bias = np.where(padding_mask[:, None, None, :], 0.0, -1e9)
    layer = 0
    while f"encoder.layer.{layer}.attention.self.query.weight" in w:
        p = f"encoder.layer.{layer}."

        def split(t):
            return t.reshape(batch, length, heads, size).transpose(0, 2, 1, 3)

        q, k, v = (split(_linear(x, w, p + f"attention.self.{n}")) for n in ("query", "key", "value"))
        scores = q @ k.transpose(0, 1, 3, 2) / math.sqrt(size) + bias
        scores = np.exp(scores - scores.max(-1, keepdims=True))
        attention = (scores / scores.sum(-1, keepdims=True)) @ v
        attention = attention.transpose(0, 2, 1, 3).reshape(batch, length, hidden)
        x = _layer_norm(x + _linear(attention, w, p + "attention.output.dense"), w, p + "attention.output.LayerNorm")
        inner = _gelu(_linear(x, w, p + "intermediate.dense"), exact)
        x = _layer_norm(x + _linear(inner, w, p + "output.dense"), w, p + "output.LayerNorm")
        layer += 1
    return x


def _outputs(backbone, preprocessor, texts):
    batch = preprocessor(texts)
    out = keras.ops.convert_to_numpy(backbone(batch, training=False)["sequence_output"])
    arrays = {k: keras.ops.convert_to_numpy(v) for k, v in batch.items()}
    return out, arrays


TEXTS = ["the film was good", "bad"]


def test_hf_bert_with_gelu_matches_hf_exactly(hf_bert_checkpoint):
    path, weights = hf_bert_checkpoint
    backbone, preprocessor = kt.load_backbone(path, sequence_length=12)
    assert isinstance(backbone, BertBackbone)
    assert backbone.intermediate_activation == "gelu"
    out, batch = _outputs(backbone, preprocessor, TEXTS)
    mask = batch["padding_mask"][..., None]
    exact = reference_bert(weights, batch["token_ids"], batch["segment_ids"], batch["padding_mask"])
    tanh = reference_bert(weights, batch["token_ids"], batch["segment_ids"], batch["padding_mask"], exact=False)
    np.testing.assert_allclose(out * mask, exact * mask, atol=2e-5)
    # The two GELUs differ by more than the tolerance on this checkpoint.
    assert np.abs((tanh - exact) * mask).max() > 1e-4


def test_hf_bert_with_tanh_gelu_keeps_keras_hub_class(hf_bert_dir):
    config = json.loads((hf_bert_dir / "config.json").read_text())
    config["hidden_act"] = "gelu_new"
    (hf_bert_dir / "config.json").write_text(json.dumps(config))
    backbone, _ = kt.load_backbone(hf_bert_dir, sequence_length=12)
    assert not isinstance(backbone, BertBackbone)
    assert type(backbone) is keras_hub.models.BertBackbone


def test_the_activation_survives_saving(hf_bert_checkpoint, tmp_path):
    path, _ = hf_bert_checkpoint
    backbone, preprocessor = kt.load_backbone(path, sequence_length=12)
    before, _ = _outputs(backbone, preprocessor, TEXTS)

    backbone.save_to_preset(str(tmp_path / "preset"))
    preprocessor.tokenizer.save_to_preset(str(tmp_path / "preset"))
    reloaded, reloaded_preprocessor = kt.load_backbone(tmp_path / "preset", sequence_length=12)
    assert isinstance(reloaded, BertBackbone) and reloaded.intermediate_activation == "gelu"
    np.testing.assert_allclose(_outputs(reloaded, reloaded_preprocessor, TEXTS)[0], before, atol=1e-6)

    model = kt.TextClassifier.from_preset(path, num_classes=2, sequence_length=12)
    model.save(tmp_path / "model.keras")
    loaded = kt.load_model(tmp_path / "model.keras")
    assert loaded.backbone.intermediate_activation == "gelu"
    np.testing.assert_allclose(loaded.predict(TEXTS, verbose=0), model.predict(TEXTS, verbose=0), atol=1e-6)


def test_bad_activation_is_refused():
    with raises(ValueError, "intermediate_activation", "'relu'"):
        BertBackbone(
            vocabulary_size=10, num_layers=1, num_heads=1, hidden_dim=4,
            intermediate_dim=8, intermediate_activation="relu",
        )


@pytest.mark.parametrize("activation, exact", [("gelu", True), ("gelu_approximate", False)])
def test_the_feedforward_runs_the_chosen_gelu(activation, exact):
    keras.utils.set_random_seed(0)
    backbone = BertBackbone(
        vocabulary_size=10, num_layers=1, num_heads=1, hidden_dim=4,
        intermediate_dim=8, intermediate_activation=activation,
    )
    dense = backbone.transformer_layers[0]._feedforward_intermediate_dense
    x = np.linspace(-3, 3, 13).astype("float32")
    np.testing.assert_allclose(keras.ops.convert_to_numpy(dense.activation(x)), _gelu(x, exact), atol=1e-6)
