"""Every supported backbone family, end to end (keras_transfer/families.py,
and the family-specific parts of preprocessing.py, layers.py and
freezing.py).

Each family gets a tiny random backbone (2 blocks, hidden size 16) and its
real KerasHub tokenizer, saved as a local preset (tests/family_models.py).
"""

import dataclasses

import keras
import keras_hub
import numpy as np
import pytest
from family_models import DECODERS, FAMILY_CLASSES, make_tokenizer, save_family_preset
from helpers import LABELS, TEXTS, changed, raises, snapshot

import keras_transfer as kt
from keras_transfer.families import FAMILIES, Family, family_of
from keras_transfer.freezing import describe

FAMILY_NAMES = list(FAMILY_CLASSES)

# The top block of each tiny backbone, and the layers above the blocks that
# train with it (BERT-style poolers stay frozen under "cls" pooling).
TOP_BLOCK = {
    "albert": "group_1_inner_layer_0",
    "deberta_v3": "disentangled_attention_encoder_layer_1",
    "gemma": "decoder_block_1",
}
ABOVE = {
    "gpt2": {"layer_norm"},
    "qwen": {"sequence_output_layernorm"},
    "llama": {"sequence_output_layernorm"},
    "llama3": {"sequence_output_layernorm"},
    "mistral": {"sequence_output_layernorm"},
    "gemma": {"final_normalization"},
}
TAKES_SEGMENT_IDS = {"bert", "albert", "electra"}


@pytest.fixture(scope="session")
def family_presets(tmp_path_factory):
    """`get(family)`: the family's tiny local preset, built on first use."""
    built = {}

    def get(family):
        if family not in built:
            path = tmp_path_factory.mktemp(f"tiny_{family}_preset")
            built[family] = save_family_preset(family, path, seed=len(built))
        return built[family]

    return get


def fit(model, **kwargs):
    kwargs.setdefault("batch_size", 5)  # two steps an epoch: fast, and batched
    kwargs.setdefault("verbose", 0)
    return model.fit(TEXTS, LABELS, **kwargs)


# ------------------------------------------------------------ the whole cycle


@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_round_trip(family_presets, family, tmp_path):
    """from_preset → fit (cached, uncached) → evaluate → predict → unfreeze
    the top block → fit → save → kt.load_model, for every family."""
    model = kt.TextClassifier.from_preset(
        family_presets(family), num_classes=2, sequence_length=32
    )
    assert family_of(model.backbone).name == family
    assert type(model.backbone).__name__ == FAMILY_CLASSES[family]
    assert model.pooling == ("last" if family in DECODERS else "cls")
    assert model.backbone.trainable_weights == []
    # The preprocessor's keys are exactly the backbone's inputs.
    assert set(model.preprocessor(TEXTS[:2])) == set(model.backbone.input)

    # Frozen: the head trains on cached features.
    backbone = snapshot(model.backbone)
    head = snapshot(model.get_layer("logits"))
    history = fit(model, epochs=2, cache_features=True)
    assert np.isfinite(history.history["loss"]).all()
    assert changed(head, model.get_layer("logits")) == set(head)
    assert changed(backbone, model.backbone) == set()
    metrics = model.evaluate(TEXTS, LABELS, verbose=0, return_dict=True)
    assert 0 <= metrics["accuracy"] <= 1 and np.isfinite(metrics["loss"])
    logits = model.predict(TEXTS, verbose=0)
    assert logits.shape == (len(TEXTS), 2) and np.isfinite(logits).all()

    # unfreeze(top=1), then the uncached path (the backbone runs at every
    # step): only the top block (and the final norm above it) trains; the
    # embeddings and the lower block stay put.
    kt.unfreeze(model, top=1)
    assert describe(model.backbone) == "embeddings frozen, block 1 of 0-1 trains"
    model.compile(learning_rate=1e-2)
    backbone = snapshot(model.backbone)
    head = snapshot(model.get_layer("logits"))
    fit(model, epochs=1, cache_features=False)
    assert changed(head, model.get_layer("logits")) == set(head)
    moved = {path.split("/")[0] for path in changed(backbone, model.backbone)}
    assert moved == {TOP_BLOCK.get(family, "transformer_layer_1")} | ABOVE.get(family, set())

    model.save(tmp_path / "model.keras")
    reloaded = kt.load_model(tmp_path / "model.keras")
    assert type(reloaded.backbone) is type(model.backbone)
    assert type(reloaded.preprocessor.tokenizer) is type(model.preprocessor.tokenizer)
    np.testing.assert_allclose(
        reloaded.predict(TEXTS, verbose=0), model.predict(TEXTS, verbose=0), atol=1e-6
    )
    assert kt.frozen_state(reloaded) == kt.frozen_state(model)
    assert [v.path for v in reloaded.trainable_weights] == [v.path for v in model.trainable_weights]


# ------------------------------------------------------------ packing

# KerasHub's own packing for each family: its text classifier preprocessor
# (ELECTRA has none in KerasHub and packs as BERT does), or, for decoders,
# its causal LM preprocessor (which has no text pairs).
KERAS_HUB_PREPROCESSORS = {
    "bert": "BertTextClassifierPreprocessor",
    "distil_bert": "DistilBertTextClassifierPreprocessor",
    "roberta": "RobertaTextClassifierPreprocessor",
    "xlm_roberta": "XLMRobertaTextClassifierPreprocessor",
    "albert": "AlbertTextClassifierPreprocessor",
    "deberta_v3": "DebertaV3TextClassifierPreprocessor",
    "electra": "BertTextClassifierPreprocessor",
    "gpt2": "GPT2CausalLMPreprocessor",
    "qwen": "QwenCausalLMPreprocessor",
    "llama": "LlamaCausalLMPreprocessor",
    "llama3": "Llama3CausalLMPreprocessor",
    "mistral": "MistralCausalLMPreprocessor",
    "gemma": "GemmaCausalLMPreprocessor",
}


def _unpadded(batch, row=0):
    """{key: the real (unpadded) positions of one row} of a padded batch."""
    mask = np.asarray(batch["padding_mask"])[row].astype(bool)
    return {key: np.asarray(value)[row][mask].tolist() for key, value in batch.items()}


@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_packing_matches_keras_hub(family):
    tokenizer = make_tokenizer(family)
    ours = kt.TextPreprocessor(tokenizer, FAMILY_CLASSES[family], sequence_length=32)
    theirs = getattr(keras_hub.models, KERAS_HUB_PREPROCESSORS[family])(tokenizer, sequence_length=32)
    a, b = "a great movie", "bad plot"
    ids_a = np.asarray(tokenizer([a])[0]).tolist()
    ids_b = np.asarray(tokenizer([b])[0]).tolist()

    single = ours([a])
    if family in DECODERS:
        expected, _, _ = theirs([a])  # (x, y, sample_weight): x is the packed text
    else:
        expected = theirs([a])
    assert _unpadded(single) == _unpadded(expected)
    assert set(single) == set(expected)  # segment ids exactly where KerasHub gives them
    assert ("segment_ids" in single) == (family in TAKES_SEGMENT_IDS)

    pair = ours([(a, b)])
    if family in DECODERS:
        # Decoders: no pairs in KerasHub. Documented packing:
        # `<start> a <end> b <end>` (no start token where there is none).
        start = [] if tokenizer.start_token_id is None else [tokenizer.start_token_id]
        end = [tokenizer.end_token_id]
        assert _unpadded(pair)["token_ids"] == start + ids_a + end + ids_b + end
    else:
        assert _unpadded(pair) == _unpadded(theirs(x=([a], [b])))
    # Short texts: KerasHub's pad id at the padding positions too.
    batch = ours([a, "fun"])
    pad = np.asarray(theirs(["fun"])[0]["token_ids"] if family in DECODERS else theirs(["fun"])["token_ids"])[0, -1]
    assert batch["token_ids"][1, -1] == pad


def test_roberta_style_pairs_have_a_double_separator():
    tokenizer = make_tokenizer("roberta")
    packed = kt.TextPreprocessor(tokenizer, "RobertaBackbone")([("good", "bad")])
    s, e = tokenizer.start_token_id, tokenizer.end_token_id
    ids = packed["token_ids"][0].tolist()
    assert ids[0] == s and ids[-1] == e
    assert ids.count(e) == 3 and ids[ids.index(e) + 1] == e  # <s> a </s></s> b </s>
    assert "segment_ids" not in packed


@pytest.mark.parametrize("family", ["bert", "albert", "electra"])
def test_pair_segment_ids(family):
    tokenizer = make_tokenizer(family)
    batch = kt.TextPreprocessor(tokenizer, FAMILY_CLASSES[family])([("good film", "bad")])
    row = _unpadded(batch)
    first = row["token_ids"].index(tokenizer.sep_token_id) + 1  # [CLS] a [SEP]
    assert row["segment_ids"] == [0] * first + [1] * (len(row["token_ids"]) - first)


# ------------------------------------------------------------ padding side


@pytest.mark.parametrize("family", DECODERS)
def test_last_pooling_reads_the_last_real_token(family_presets, family):
    """A decoder's pooled vector of a padded row equals its unpadded one."""
    backbone, preprocessor = kt.load_backbone(family_presets(family))
    short, long = "good film", "a great movie , really great !"
    padded = preprocessor([short, long])
    assert not padded["padding_mask"][0].all()  # the short text is padded
    alone = preprocessor([short])
    pooling = kt.layers.Pooling("last")
    a = pooling(backbone(padded), padded["padding_mask"])[0]
    b = pooling(backbone(alone), alone["padding_mask"])[0]
    np.testing.assert_allclose(keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b), atol=1e-5)


def _features():
    """(2, 4, 3) features where position t of row r holds 10 * r + t."""
    x = np.arange(4, dtype="float32")[None, :, None] + np.array([0.0, 10.0])[:, None, None]
    return np.repeat(x, 3, axis=2)


@pytest.mark.parametrize(
    "mask, first, last",
    [
        ([[1, 1, 0, 0], [1, 1, 1, 1]], [0, 10], [1, 13]),  # right padding
        ([[0, 0, 1, 1], [1, 1, 1, 1]], [2, 10], [3, 13]),  # left padding
        ([[0, 1, 0, 0], [0, 0, 0, 1]], [1, 13], [1, 13]),  # one real token
    ],
)
def test_pooling_either_padding_side(mask, first, last):
    features, mask = _features(), np.array(mask, dtype=bool)
    pooled_last = keras.ops.convert_to_numpy(kt.layers.Pooling("last")(features, mask))
    pooled_cls = keras.ops.convert_to_numpy(kt.layers.Pooling("cls")(features, mask))
    np.testing.assert_array_equal(pooled_last[:, 0], last)
    np.testing.assert_array_equal(pooled_cls[:, 0], first)
    # Without a mask, "cls" is position 0.
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(kt.layers.Pooling("cls")(features))[:, 0], [0, 10])


def test_collate_pads_on_the_left_for_left_padding_families(monkeypatch):
    tokenizer = make_tokenizer("bert")
    family = FAMILIES["BertBackbone"]
    monkeypatch.setitem(FAMILIES, "BertBackbone", dataclasses.replace(family, padding_side="left"))
    pairs = [("good", "bad"), ("a good story and good acting", "fun")]
    batch = kt.TextPreprocessor(tokenizer, "BertBackbone")(pairs)
    monkeypatch.setitem(FAMILIES, "BertBackbone", family)
    right = kt.TextPreprocessor(tokenizer, "BertBackbone")(pairs[:1])
    width = batch["token_ids"].shape[1]
    n = right["token_ids"].shape[1]  # 5: [CLS] good [SEP] bad [SEP]
    assert width > n
    np.testing.assert_array_equal(batch["token_ids"][0, width - n :], right["token_ids"][0])
    np.testing.assert_array_equal(batch["segment_ids"][0, width - n :], right["segment_ids"][0])
    assert batch["token_ids"][0, : width - n].tolist() == [tokenizer.pad_token_id] * (width - n)
    assert batch["padding_mask"][0].tolist() == [False] * (width - n) + [True] * n
    assert batch["padding_mask"][1].all()


def test_decoder_padding_id_is_zero_when_the_tokenizer_has_none():
    tokenizer = make_tokenizer("qwen")
    preprocessor = kt.TextPreprocessor(tokenizer, "QwenBackbone")
    batch = preprocessor(["fun", "a great movie"])
    assert batch["token_ids"][0, -1] == 0 and not batch["padding_mask"][0, -1]


def test_family_padding_side_is_checked():
    with raises(ValueError, "padding_side", "'right' or 'left'", "'middle'"):
        Family("x", "XBackbone", True, "last", False, None, "end_token_id", padding_side="middle")


# ------------------------------------------------------------ family table


def test_every_family_is_known_to_keras_hub():
    for name, cls in FAMILY_CLASSES.items():
        assert FAMILIES[cls].name == name
    presets = keras_hub.models.Backbone.presets
    paths = {info.get("metadata", {}).get("path") for info in presets.values()}
    for family in FAMILIES.values():
        assert hasattr(keras_hub.models, family.backbone_class), family
    for name in FAMILY_CLASSES:
        assert name in paths, name  # what list_presets filters on
    listed = kt.list_presets()
    for name in ["roberta_base_en", "deberta_v3_small_en", "albert_base_en_uncased",
                 "electra_small_discriminator_uncased_en", "xlm_roberta_base_multi",
                 "distil_bert_base_en_uncased", "qwen2.5_0.5b_en", "gemma_2b_en"]:
        assert name in listed


def test_unsupported_family_error_lists_the_supported_ones():
    with raises(ValueError, "FNetBackbone", "Supported families", "roberta (RobertaBackbone)",
                "deberta_v3 (DebertaV3Backbone)", "qwen (QwenBackbone)"):
        family_of(keras_hub.models.FNetBackbone)
    with raises(ValueError, "'f_net' family", "Supported text families", "albert", "electra"):
        kt.load_backbone("f_net_base_en")
    # A family's subclass counts as the family; Qwen2Backbone is QwenBackbone.
    assert family_of(keras_hub.models.Qwen2Backbone).name == "qwen"
    assert family_of(keras_hub.models.XLMRobertaBackbone).name == "xlm_roberta"


@pytest.mark.parametrize("family", ["albert", "electra"])
def test_pooled_output_of_encoders_with_a_pooler(family_presets, family):
    model = kt.TextClassifier.from_preset(family_presets(family), num_classes=2, pooling="pooled", freeze=1)
    assert "pooled_dense" in {l.name for l in model.backbone.layers if l.trainable}
    assert np.isfinite(model.predict(TEXTS[:2], verbose=0)).all()
