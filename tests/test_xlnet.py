"""Tests for XLNet (keras_transfer/xlnet.py): the HF converter, the
tokenizer, the packing and the task round trip.

The converter is exercised without `transformers` on a HuggingFace-format
directory written here by hand (config.json, model.safetensors with HF's
names and shapes, a SentencePiece model trained in the test). The tests
that compare with HF's own `XLNetModel` and `XLNetTokenizer` are skipped
when `transformers` is not installed.
"""

import io
import json
import shutil
import warnings

import keras
import keras_hub
import numpy as np
import pytest
from helpers import LABELS, TEXTS, changed, raises, snapshot

import keras_transfer as kt
from keras_transfer import xlnet

HIDDEN, LAYERS, HEADS, INNER = 16, 2, 2, 32
# Enough text for a SentencePiece vocabulary of whole words and pieces.
SENTENCES = TEXTS + [
    "a naive cafe in the city",
    "one two three four five six seven",
    'he said "hello" to them',
    "the movie was really good , the plot was not",
    "what a boring story",
    "i loved this film so much",
    "the end of the best movie",
]
# XLNet's special tokens, at the ids xlnet-base-cased gives them.
SPECIALS = {"<unk>": 0, "<s>": 1, "</s>": 2, "<cls>": 3, "<sep>": 4, "<pad>": 5, "<mask>": 6}


def train_spiece(control_symbols="<cls>,<sep>,<pad>,<mask>,<eod>,<eop>"):
    """Serialized SentencePiece unigram model with XLNet's special ids."""
    import sentencepiece

    buffer = io.BytesIO()
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(SENTENCES * 4),
        model_writer=buffer,
        vocab_size=100,
        hard_vocab_limit=False,
        model_type="unigram",
        unk_id=0,
        bos_id=1,
        eos_id=2,
        pad_id=-1,
        control_symbols=control_symbols,
        minloglevel=2,
    )
    return buffer.getvalue()


def hf_xlnet_weights(vocabulary_size, seed=0):
    """Random weights with the names and shapes of HF's `XLNetModel`."""
    rng = np.random.default_rng(seed)
    head = HIDDEN // HEADS

    def normal(*shape):
        return (0.2 * rng.standard_normal(shape)).astype("float32")

    weights = {"mask_emb": normal(1, 1, HIDDEN), "word_embedding.weight": normal(vocabulary_size, HIDDEN)}
    for i in range(LAYERS):
        p = f"layer.{i}."
        for name in "qkvor":
            weights[p + f"rel_attn.{name}"] = normal(HIDDEN, HEADS, head)
        for name in ("r_r_bias", "r_s_bias", "r_w_bias"):
            weights[p + f"rel_attn.{name}"] = normal(HEADS, head)
        weights[p + "rel_attn.seg_embed"] = normal(2, HEADS, head)
        for norm in ("rel_attn.layer_norm", "ff.layer_norm"):
            weights[p + norm + ".weight"] = 1 + normal(HIDDEN)
            weights[p + norm + ".bias"] = normal(HIDDEN)
        weights[p + "ff.layer_1.weight"] = normal(INNER, HIDDEN)
        weights[p + "ff.layer_1.bias"] = normal(INNER)
        weights[p + "ff.layer_2.weight"] = normal(HIDDEN, INNER)
        weights[p + "ff.layer_2.bias"] = normal(HIDDEN)
    return weights


def hf_xlnet_config(vocabulary_size, **overrides):
    """config.json as HF's `XLNetConfig(...).save_pretrained` writes it."""
    config = {
        "architectures": ["XLNetModel"],
        "model_type": "xlnet",
        "vocab_size": vocabulary_size,
        "d_model": HIDDEN,
        "n_layer": LAYERS,
        "n_head": HEADS,
        "d_head": HIDDEN // HEADS,
        "d_inner": INNER,
        "ff_activation": "gelu",
        "untie_r": True,
        "attn_type": "bi",
        "initializer_range": 0.02,
        "layer_norm_eps": 1e-12,
        "dropout": 0.1,
        "mem_len": None,
        "reuse_len": None,
        "bi_data": False,
        "clamp_len": -1,
        "same_length": False,
        "pad_token_id": 5,
        "bos_token_id": 1,
        "eos_token_id": 2,
    }
    config.update(overrides)
    return config


def write_xlnet_dir(path, spiece, weights=None, config=None, weights_format="safetensors"):
    """Writes a HuggingFace-format XLNet checkpoint directory."""
    import torch
    from safetensors.torch import save_file

    path.mkdir(parents=True, exist_ok=True)
    vocabulary_size = _vocabulary_size(spiece)
    config = config or hf_xlnet_config(vocabulary_size)
    weights = hf_xlnet_weights(config["vocab_size"]) if weights is None else weights
    (path / "config.json").write_text(json.dumps(config, indent=2))
    (path / "spiece.model").write_bytes(spiece)
    tensors = {k: torch.from_numpy(v) for k, v in weights.items()}
    if weights_format == "safetensors":
        save_file(tensors, str(path / "model.safetensors"))
    elif weights_format == "bin":
        torch.save(tensors, path / "pytorch_model.bin")
    return path


def _vocabulary_size(spiece):
    import sentencepiece

    return sentencepiece.SentencePieceProcessor(model_proto=spiece).vocab_size()


@pytest.fixture(scope="module")
def spiece():
    return train_spiece()


@pytest.fixture(scope="module")
def xlnet_checkpoint(spiece, tmp_path_factory):
    """(directory, HF weights) of a hand-written tiny HF-format XLNet."""
    path = tmp_path_factory.mktemp("tiny_hf_xlnet") / "model"
    weights = hf_xlnet_weights(_vocabulary_size(spiece))
    write_xlnet_dir(path, spiece, weights)
    return path, weights


@pytest.fixture
def xlnet_dir(xlnet_checkpoint, tmp_path):
    """A private copy of the tiny HF-format XLNet that a test may edit."""
    target = tmp_path / "hf_xlnet"
    shutil.copytree(xlnet_checkpoint[0], target)
    return target


def numpy(x):
    return keras.ops.convert_to_numpy(x)


# ------------------------------------------------------------ tokenizer


def test_tokenizer_special_tokens_come_from_the_vocabulary(spiece):
    tokenizer = kt.XLNetTokenizer(spiece)
    assert isinstance(tokenizer, keras_hub.tokenizers.SentencePieceTokenizer)
    for token, attribute in [
        ("<unk>", "unk_token_id"),
        ("<s>", "start_token_id"),
        ("</s>", "end_token_id"),
        ("<cls>", "cls_token_id"),
        ("<sep>", "sep_token_id"),
        ("<pad>", "pad_token_id"),
        ("<mask>", "mask_token_id"),
    ]:
        assert getattr(tokenizer, attribute) == SPECIALS[token], token
        assert tokenizer.id_to_token(SPECIALS[token]) == token


def test_tokenizer_with_special_tokens_elsewhere(spiece):
    # The ids are read from the vocabulary, not assumed.
    proto = train_spiece("<pad>,<mask>,<sep>,<cls>")
    tokenizer = kt.XLNetTokenizer(proto)
    assert (tokenizer.pad_token_id, tokenizer.mask_token_id) == (3, 4)
    assert (tokenizer.sep_token_id, tokenizer.cls_token_id) == (5, 6)


def test_tokenizer_refuses_a_vocabulary_without_xlnet_tokens():
    with raises(ValueError, "<cls>"):
        kt.XLNetTokenizer(train_spiece("<sep>,<pad>,<mask>"))


@pytest.mark.parametrize(
    "messy, clean",
    [
        ("  a  naïve\tcafé \n", "a naive cafe"),
        ("he said ``hello'' to them", 'he said "hello" to them'),
        ("ｆｕｎ", "fun"),  # full-width letters: NFKD folds them
    ],
)
def test_tokenizer_normalizes_as_xlnet(spiece, messy, clean):
    tokenizer = kt.XLNetTokenizer(spiece)
    assert xlnet.normalize_xlnet_text(messy) == clean
    assert list(tokenizer(messy)) == list(tokenizer(clean))
    assert tokenizer.unk_token_id not in list(tokenizer(messy))


def test_tokenizer_keeps_accents_and_lowercases_when_told(spiece):
    assert xlnet.normalize_xlnet_text("Café", strip_accents=False) == "Café"
    assert xlnet.normalize_xlnet_text("Café", lowercase=True) == "cafe"
    tokenizer = kt.XLNetTokenizer(spiece, lowercase=True)
    assert list(tokenizer("GOOD Film")) == list(tokenizer("good film"))
    assert kt.XLNetTokenizer(spiece)(["A b"])[0] != tokenizer(["A b"])[0]


def test_tokenizer_config_round_trip(spiece):
    tokenizer = kt.XLNetTokenizer(spiece, lowercase=True, strip_accents=False)
    config = keras.layers.serialize(tokenizer)
    assert config["registered_name"] == "keras_transfer>XLNetTokenizer"
    restored = keras.layers.deserialize(config)
    restored.set_proto(spiece)  # the vocabulary travels as an asset
    assert type(restored) is kt.XLNetTokenizer
    assert (restored.lowercase, restored.strip_accents) == (True, False)
    assert restored.cls_token_id == tokenizer.cls_token_id
    assert restored(["Naïve FILM"]) == tokenizer(["Naïve FILM"])


# ------------------------------------------------------------ converter


def test_converter_maps_every_weight(xlnet_checkpoint):
    path, weights = xlnet_checkpoint
    backbone, tokenizer = kt.convert_xlnet_checkpoint(path)
    assert isinstance(backbone, keras_hub.models.XLNetBackbone)
    assert isinstance(tokenizer, kt.XLNetTokenizer)
    assert (backbone.num_layers, backbone.num_heads, backbone.hidden_dim) == (LAYERS, HEADS, HIDDEN)
    assert backbone.intermediate_dim == INNER and backbone.dropout == 0.1
    assert backbone.vocabulary_size == tokenizer.vocabulary_size()
    mapping = xlnet.weight_map(backbone)
    # Every backbone weight comes from exactly one HF tensor, and every HF
    # tensor of the encoder is used.
    assert sorted(id(v) for v, _, _ in mapping) == sorted(id(v) for v in backbone.weights)
    assert sorted(name for _, name, _ in mapping) == sorted(weights)
    for variable, name, transpose in mapping:
        expected = weights[name].T if transpose else weights[name]
        np.testing.assert_array_equal(numpy(variable), expected, err_msg=name)
    # Spot checks of the layouts, independent of `weight_map`.
    block = backbone.get_layer("xlnet_encoder_1")
    np.testing.assert_array_equal(
        numpy(block.feedforward_intermediate_dense.kernel), weights["layer.1.ff.layer_1.weight"].T
    )
    np.testing.assert_array_equal(numpy(block.content_attention_bias), weights["layer.1.rel_attn.r_w_bias"])
    np.testing.assert_array_equal(numpy(block.positional_attention_bias), weights["layer.1.rel_attn.r_r_bias"])
    np.testing.assert_array_equal(
        numpy(block.relative_attention._encoding_dense.kernel), weights["layer.1.rel_attn.r"]
    )


@pytest.mark.parametrize("weights_format", ["bin", "prefixed"])
def test_converter_reads_torch_files_and_head_models(spiece, xlnet_checkpoint, tmp_path, weights_format):
    _, weights = xlnet_checkpoint
    if weights_format == "prefixed":
        # XLNetLMHeadModel / XLNetForSequenceClassification checkpoints.
        heads = {"lm_loss.bias": np.zeros(_vocabulary_size(spiece), "float32")}
        path = write_xlnet_dir(
            tmp_path / "m", spiece, {**{"transformer." + k: v for k, v in weights.items()}, **heads}
        )
    else:
        path = write_xlnet_dir(tmp_path / "m", spiece, weights, weights_format="bin")
    backbone, _ = kt.convert_xlnet_checkpoint(path)
    for variable, name, transpose in xlnet.weight_map(backbone):
        expected = weights[name].T if transpose else weights[name]
        np.testing.assert_array_equal(numpy(variable), expected, err_msg=name)


def test_load_weights_false_needs_no_weight_file(xlnet_dir):
    (xlnet_dir / "model.safetensors").unlink()
    backbone, _ = kt.convert_xlnet_checkpoint(xlnet_dir, load_weights=False)
    assert backbone.num_layers == LAYERS
    with raises(ValueError, "has no weights", "model.safetensors", "load_weights=False"):
        kt.convert_xlnet_checkpoint(xlnet_dir)


def test_converter_dtype(xlnet_checkpoint):
    backbone, _ = kt.convert_xlnet_checkpoint(xlnet_checkpoint[0], dtype="bfloat16")
    assert backbone.token_embedding.embeddings.dtype == "bfloat16"


@pytest.mark.parametrize(
    "overrides, fragments",
    [
        ({"attn_type": "uni"}, ["attn_type='uni'"]),
        ({"bi_data": True}, ["bi_data=True"]),
        ({"same_length": True}, ["same_length=True"]),
        ({"clamp_len": 512}, ["clamp_len=512"]),
        ({"layer_norm_eps": 1e-5}, ["layer_norm_eps=1e-05"]),
        ({"ff_activation": "gelu_new"}, ["ff_activation='gelu_new'"]),
        ({"d_head": 4}, ["d_head=4"]),
    ],
)
def test_converter_refuses_settings_keras_hub_lacks(xlnet_dir, overrides, fragments):
    config = json.loads((xlnet_dir / "config.json").read_text())
    config.update(overrides)
    (xlnet_dir / "config.json").write_text(json.dumps(config))
    with raises(ValueError, "does not implement", *fragments):
        kt.convert_xlnet_checkpoint(xlnet_dir)


def test_converter_errors_name_the_problem(xlnet_dir, spiece, tmp_path):
    with raises(FileNotFoundError, "No XLNet checkpoint directory"):
        kt.convert_xlnet_checkpoint(tmp_path / "nowhere")
    # A weight of the wrong shape: config and weights disagree.
    weights = hf_xlnet_weights(_vocabulary_size(spiece))
    weights["layer.1.ff.layer_1.weight"] = weights["layer.1.ff.layer_1.weight"][:8]
    bad = write_xlnet_dir(tmp_path / "bad_shape", spiece, weights)
    with raises(ValueError, "layer.1.ff.layer_1.weight", "(8, 16)", "implies (32, 16)"):
        kt.convert_xlnet_checkpoint(bad)
    # A missing weight.
    weights = hf_xlnet_weights(_vocabulary_size(spiece))
    del weights["layer.0.rel_attn.seg_embed"]
    bad = write_xlnet_dir(tmp_path / "missing", spiece, weights)
    with raises(ValueError, "lacks 1 XLNet weights", "layer.0.rel_attn.seg_embed"):
        kt.convert_xlnet_checkpoint(bad)
    # A vocabulary larger than the embedding table.
    config = hf_xlnet_config(20)
    bad = write_xlnet_dir(tmp_path / "small_vocab", spiece, hf_xlnet_weights(20), config=config)
    with raises(ValueError, "vocab_size is 20", "does not belong"):
        kt.convert_xlnet_checkpoint(bad)
    # Not an XLNet config.
    (xlnet_dir / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with raises(ValueError, "not an XLNet config", "model_type='bert'"):
        kt.convert_xlnet_checkpoint(xlnet_dir)
    # No vocabulary.
    (xlnet_dir / "config.json").write_text(json.dumps(hf_xlnet_config(_vocabulary_size(spiece))))
    (xlnet_dir / "spiece.model").unlink()
    with raises(ValueError, "no spiece.model"):
        kt.convert_xlnet_checkpoint(xlnet_dir)


def test_batched_left_padding_gives_each_text_its_own_output(xlnet_checkpoint):
    """KerasHub's own mask layer mixes up the masks of a padded batch."""
    backbone, _ = kt.convert_xlnet_checkpoint(xlnet_checkpoint[0])
    token_ids = np.array([[9, 10, 11, 12, 13, 4, 3], [5, 5, 20, 21, 22, 4, 3], [5, 5, 5, 5, 30, 4, 3]])
    padding_mask = (token_ids != 5).astype("int32")
    segment_ids = np.where(token_ids == 3, 2, 0)
    batch = numpy(
        backbone({"token_ids": token_ids, "padding_mask": padding_mask, "segment_ids": segment_ids})
    )
    for row in range(3):
        real = padding_mask[row].astype(bool)
        alone = numpy(
            backbone(
                {
                    "token_ids": token_ids[row : row + 1, real],
                    "padding_mask": padding_mask[row : row + 1, real],
                    "segment_ids": segment_ids[row : row + 1, real],
                }
            )
        )
        np.testing.assert_allclose(batch[row, real], alone[0], atol=1e-5)


# ------------------------------------------------------------ loading and packing


def test_load_backbone_routes_xlnet_directories(xlnet_checkpoint):
    path, weights = xlnet_checkpoint
    backbone, preprocessor = kt.load_backbone(str(path), sequence_length=32)
    assert isinstance(backbone, kt.XLNetBackbone)
    assert isinstance(preprocessor.tokenizer, kt.XLNetTokenizer)
    assert preprocessor.backbone_class == "XLNetBackbone"
    assert preprocessor.sequence_length == 32
    np.testing.assert_array_equal(numpy(backbone.token_embedding.embeddings), weights["word_embedding.weight"])
    random, _ = kt.load_backbone(path, load_weights=False)
    assert not np.allclose(numpy(random.token_embedding.embeddings), weights["word_embedding.weight"])


def test_converted_model_saves_as_a_keras_hub_preset(xlnet_checkpoint, tmp_path):
    backbone, preprocessor = kt.load_backbone(xlnet_checkpoint[0])
    backbone.save_to_preset(str(tmp_path / "preset"))
    preprocessor.tokenizer.save_to_preset(str(tmp_path / "preset"))
    again, again_preprocessor = kt.load_backbone(tmp_path / "preset")
    assert isinstance(again, kt.XLNetBackbone)
    assert isinstance(again_preprocessor.tokenizer, kt.XLNetTokenizer)
    texts = ["good film", "the worst film ever"]
    batch, again_batch = preprocessor(texts), again_preprocessor(texts)
    for key in batch:
        np.testing.assert_array_equal(batch[key], again_batch[key])
    np.testing.assert_array_equal(numpy(backbone(batch)), numpy(again(again_batch)))


def test_packing_puts_sep_cls_at_the_end_and_pads_left(xlnet_checkpoint):
    _, preprocessor = kt.load_backbone(xlnet_checkpoint[0])
    tokenizer = preprocessor.tokenizer
    sep, cls, pad = tokenizer.sep_token_id, tokenizer.cls_token_id, tokenizer.pad_token_id
    short, long = list(tokenizer("good film")), list(tokenizer("a great movie , really great !"))
    batch = preprocessor(["good film", "a great movie , really great !"])
    assert set(batch) == {"token_ids", "padding_mask", "segment_ids"}
    width = len(long) + 2
    padding = width - len(short) - 2
    np.testing.assert_array_equal(batch["token_ids"][0], [pad] * padding + short + [sep, cls])
    np.testing.assert_array_equal(batch["token_ids"][1], long + [sep, cls])
    np.testing.assert_array_equal(batch["padding_mask"][0], [False] * padding + [True] * (len(short) + 2))
    np.testing.assert_array_equal(batch["segment_ids"][1], [0] * (len(long) + 1) + [2])
    # Pairs: `a <sep> b <sep> <cls>`, segments 0, 1 and 2.
    pair = preprocessor([("good film", "bad plot")])
    a, b = short, list(tokenizer("bad plot"))
    np.testing.assert_array_equal(pair["token_ids"][0], a + [sep] + b + [sep, cls])
    np.testing.assert_array_equal(pair["segment_ids"][0], [0] * (len(a) + 1) + [1] * (len(b) + 1) + [2])


def test_truncation_keeps_sep_and_cls(xlnet_checkpoint):
    _, preprocessor = kt.load_backbone(xlnet_checkpoint[0], sequence_length=6)
    tokenizer = preprocessor.tokenizer
    batch = preprocessor(["a great movie , really great !"])
    ids = list(tokenizer("a great movie , really great !"))
    np.testing.assert_array_equal(batch["token_ids"][0], ids[:4] + [tokenizer.sep_token_id, tokenizer.cls_token_id])
    pair = preprocessor([("a great movie , really great !", "the worst film ever")])
    assert pair["token_ids"].shape == (1, 6)
    assert list(pair["token_ids"][0][-1:]) == [tokenizer.cls_token_id]


# ------------------------------------------------------------ task round trip


def test_text_classifier_fit_save_load(xlnet_checkpoint, tmp_path):
    model = kt.TextClassifier.from_preset(str(xlnet_checkpoint[0]), num_classes=2, freeze=1)
    assert model.pooling == "last"  # XLNet reads a text at its final <cls>
    assert "block 1 of 0-1 trains" in kt.freezing.describe(model.backbone)
    frozen_block = snapshot(model.backbone.get_layer("xlnet_encoder_0"))
    top_block = snapshot(model.backbone.get_layer("xlnet_encoder_1"))
    history = model.fit(TEXTS, LABELS, batch_size=4, epochs=1, seed=0, verbose=0)
    assert np.isfinite(history.history["loss"]).all()
    assert not changed(frozen_block, model.backbone.get_layer("xlnet_encoder_0"))
    assert changed(top_block, model.backbone.get_layer("xlnet_encoder_1"))
    metrics = model.evaluate(TEXTS, LABELS, batch_size=4, return_dict=True, verbose=0)
    assert set(metrics) >= {"loss", "accuracy"}
    predictions = model.predict(TEXTS, batch_size=4, verbose=0)
    assert predictions.shape == (len(TEXTS), 2)
    # Left padding and batching do not change a text's prediction.
    np.testing.assert_allclose(model.predict(TEXTS[2:3], verbose=0), predictions[2:3], atol=1e-5)

    model.save(tmp_path / "xlnet.keras")
    reloaded = kt.load_model(tmp_path / "xlnet.keras")
    assert isinstance(reloaded.backbone, kt.XLNetBackbone)
    assert isinstance(reloaded.preprocessor.tokenizer, kt.XLNetTokenizer)
    np.testing.assert_allclose(reloaded.predict(TEXTS, batch_size=4, verbose=0), predictions, atol=1e-6)
    assert kt.frozen_state(reloaded) == kt.frozen_state(model)
    # The reloaded model keeps training, with the bottom block still frozen.
    frozen_block = snapshot(reloaded.backbone.get_layer("xlnet_encoder_0"))
    reloaded.fit(TEXTS[:4], LABELS[:4], batch_size=4, epochs=1, verbose=0)
    assert not changed(frozen_block, reloaded.backbone.get_layer("xlnet_encoder_0"))


def test_full_fine_tuning_trains_every_used_weight(xlnet_checkpoint):
    model = kt.TextClassifier.from_preset(xlnet_checkpoint[0], num_classes=2, freeze=False)
    before = snapshot(model.backbone)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.fit(TEXTS[:4], LABELS[:4], batch_size=4, epochs=1, verbose=0)
    assert not [w for w in caught if "Gradients do not exist" in str(w.message)]
    # Only `mask_emb` (used by XLNet's pretraining query stream) stays put.
    unchanged = set(before) - changed(before, model.backbone)
    assert unchanged == {"encoder_block_attn_mask_layer/mask_emb"}


# ------------------------------------------------------------ against HF transformers


@pytest.fixture(scope="module")
def hf_xlnet(spiece, tmp_path_factory):
    """(directory, model) of a tiny random HF `XLNetModel` saved with
    `save_pretrained`, with the test's SentencePiece vocabulary."""
    transformers = pytest.importorskip(
        "transformers", reason="comparing with HF XLNet needs transformers (not a CI dependency)"
    )
    import torch

    torch.manual_seed(0)
    config = transformers.XLNetConfig(
        vocab_size=_vocabulary_size(spiece), d_model=HIDDEN, n_layer=LAYERS, n_head=HEADS, d_inner=INNER
    )
    model = transformers.XLNetModel(config).eval()
    path = tmp_path_factory.mktemp("hf_xlnet") / "model"
    model.save_pretrained(path)
    (path / "spiece.model").write_bytes(spiece)
    return path, model


def hf_tokenizer(path):
    transformers = pytest.importorskip("transformers", reason="needs transformers")
    return transformers.XLNetTokenizer.from_pretrained(str(path))


HF_STRINGS = [
    "good film",
    "A  naïve café in the city",
    "he said ``hello'' to them",
    "the movie was really good , the plot was not",
    "   loved it   ",
    "Ｆｕｎ ? 123",
]


def test_tokenizer_ids_equal_hf(hf_xlnet):
    path, _ = hf_xlnet
    reference = hf_tokenizer(path)
    _, preprocessor = kt.load_backbone(path)
    for text in HF_STRINGS:
        expected = reference(text, add_special_tokens=False)["input_ids"]
        assert list(preprocessor.tokenizer(text)) == expected, text
    # Packed and padded batches too: the same ids, mask and segments.
    for texts in [HF_STRINGS, [("good film", "he said ``hello''"), ("bad plot", "what a boring story")]]:
        expected = reference(
            [t if isinstance(t, str) else t[0] for t in texts],
            [t[1] for t in texts] if not isinstance(texts[0], str) else None,
            padding=True,
            return_token_type_ids=True,
        )
        batch = preprocessor(texts)
        np.testing.assert_array_equal(batch["token_ids"], expected["input_ids"])
        np.testing.assert_array_equal(batch["padding_mask"], np.array(expected["attention_mask"], bool))
        real = batch["padding_mask"]
        np.testing.assert_array_equal(batch["segment_ids"][real], np.array(expected["token_type_ids"])[real])


@pytest.mark.parametrize(
    "texts",
    [
        ["good film", "a great movie , really great !", "fun"],
        [("bad plot", "loved it"), ("the worst film ever", "what a boring story , very boring")],
    ],
)
def test_backbone_matches_hf_xlnet_model_on_left_padded_batch(hf_xlnet, texts):
    import torch

    path, reference = hf_xlnet
    backbone, preprocessor = kt.load_backbone(path)
    assert backbone.dropout == reference.config.dropout
    batch = preprocessor(texts)
    assert not batch["padding_mask"].all()  # some rows are padded on the left
    with torch.no_grad():
        expected = reference(
            input_ids=torch.from_numpy(batch["token_ids"]).long(),
            attention_mask=torch.from_numpy(batch["padding_mask"]).float(),
            token_type_ids=torch.from_numpy(batch["segment_ids"]).long(),
        ).last_hidden_state.numpy()
    outputs = numpy(backbone(batch, training=False))
    real = batch["padding_mask"]
    np.testing.assert_allclose(outputs[real], expected[real], atol=1e-5)
