"""Tests for kt.load_backbone and kt.list_presets (keras_transfer/backbones.py)."""

import json
import os
import pathlib

import keras
import keras_hub
import numpy as np
import pytest
from family_models import make_tokenizer, train_sentencepiece
from helpers import (
    BERT_VOCAB,
    HIDDEN_DIM,
    MAX_SEQUENCE_LENGTH,
    NUM_LAYERS,
    hf_bert_weights,
    raises,
    requires_grad,
    write_hf_tokenizer_json,
)
from safetensors.numpy import load_file, save_file

import keras_transfer as kt

# ------------------------------------------------------------ local presets


@pytest.mark.parametrize(
    "name, backbone_class, tokenizer_class",
    [
        ("bert", keras_hub.models.BertBackbone, keras_hub.models.BertTokenizer),
        ("gpt2", keras_hub.models.GPT2Backbone, keras_hub.models.GPT2Tokenizer),
    ],
)
def test_local_keras_hub_preset(request, name, backbone_class, tokenizer_class):
    path = request.getfixturevalue(f"{name}_preset")
    backbone, preprocessor = kt.load_backbone(path)
    assert isinstance(backbone, backbone_class)
    assert isinstance(preprocessor, kt.TextPreprocessor)
    assert isinstance(preprocessor.tokenizer, tokenizer_class)
    assert preprocessor.backbone_class == backbone_class.__name__
    assert preprocessor.truncation == "head"
    # The saved weights come back: a second load gives the same values.
    again, _ = kt.load_backbone(pathlib.Path(path))
    for a, b in zip(backbone.weights, again.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    # And the preprocessor's output feeds the backbone.
    outputs = backbone(preprocessor(["good film", "awful"]))
    sequence = outputs["sequence_output"] if isinstance(outputs, dict) else outputs
    assert tuple(sequence.shape)[::2] == (2, 16)


def test_load_weights_false_builds_random_weights(bert_preset):
    loaded, _ = kt.load_backbone(bert_preset)
    random, _ = kt.load_backbone(bert_preset, load_weights=False)
    embeddings = "token_embedding"
    assert not np.allclose(
        loaded.get_layer(embeddings).embeddings.numpy(),
        random.get_layer(embeddings).embeddings.numpy(),
    )


def test_dtype_is_passed_to_the_backbone(bert_preset):
    backbone, _ = kt.load_backbone(bert_preset, dtype="bfloat16")
    assert backbone.dtype_policy.name == "bfloat16"
    assert backbone.get_layer("token_embedding").embeddings.dtype == "bfloat16"


def test_tilde_path_is_expanded(bert_preset, monkeypatch):
    home = str(pathlib.Path(bert_preset).parent)
    monkeypatch.setenv("HOME", home)
    backbone, _ = kt.load_backbone("~/" + pathlib.Path(bert_preset).name)
    assert isinstance(backbone, keras_hub.models.BertBackbone)


# ------------------------------------------------------------ HF format


def test_hf_format_directory(hf_bert_checkpoint):
    path, weights = hf_bert_checkpoint
    backbone, preprocessor = kt.load_backbone(path)
    assert isinstance(backbone, keras_hub.models.BertBackbone)
    assert backbone.num_layers == 2 and backbone.hidden_dim == 16
    assert isinstance(preprocessor.tokenizer, keras_hub.models.BertTokenizer)
    # The weights are the checkpoint's, under KerasHub's names and layouts.
    np.testing.assert_array_equal(
        backbone.get_layer("token_embedding").embeddings.numpy(),
        weights["embeddings.word_embeddings.weight"],
    )
    query = backbone.get_layer("transformer_layer_1")._self_attention_layer.query_dense
    np.testing.assert_allclose(
        query.kernel.numpy().reshape(16, 16),
        weights["encoder.layer.1.attention.self.query.weight"].T,
    )
    np.testing.assert_array_equal(
        backbone.get_layer("pooled_dense").bias.numpy(), weights["pooler.dense.bias"]
    )


def test_hf_tokenizer_strips_accents_like_hf(hf_bert_checkpoint):
    import tokenizers

    path, _ = hf_bert_checkpoint
    _, preprocessor = kt.load_backbone(path)
    hf = tokenizers.Tokenizer.from_file(os.path.join(path, "tokenizer.json"))
    texts = ["Naïve CAFÉ", "a naïve café !", "Good film, not bad."]
    packed = preprocessor(texts)
    unk = BERT_VOCAB.index("[UNK]")
    for row, text in enumerate(texts):
        expected = hf.encode(text).ids  # with [CLS] ... [SEP]
        got = packed["token_ids"][row][packed["padding_mask"][row]].tolist()
        assert got == expected
        assert unk not in got
    assert preprocessor.tokenizer.strip_accents is True


def test_hf_tokenizer_keeps_accents_when_the_checkpoint_says_so(hf_bert_dir):
    write_hf_tokenizer_json(hf_bert_dir / "tokenizer.json", BERT_VOCAB, strip_accents=False)
    _, preprocessor = kt.load_backbone(hf_bert_dir)
    assert preprocessor.tokenizer.strip_accents is False
    ids = preprocessor(["naïve"])["token_ids"][0].tolist()
    assert ids == [BERT_VOCAB.index(t) for t in ("[CLS]", "[UNK]", "[SEP]")]


def test_local_keras_hub_preset_keeps_its_saved_strip_accents(bert_preset):
    saved = json.loads((pathlib.Path(bert_preset) / "tokenizer.json").read_text())
    assert saved["config"]["strip_accents"] is False
    _, preprocessor = kt.load_backbone(bert_preset)
    assert preprocessor.tokenizer.strip_accents is False


def test_hf_sentence_transformers_pooling_becomes_the_default(hf_bert_dir):
    (hf_bert_dir / "1_Pooling").mkdir()
    (hf_bert_dir / "1_Pooling" / "config.json").write_text(
        json.dumps({"pooling_mode_cls_token": False, "pooling_mode_mean_tokens": True})
    )
    model = kt.TextClassifier.from_preset(str(hf_bert_dir), num_classes=2)
    assert model.pooling == "mean"


def test_hf_directory_without_pooling_uses_the_family_default(hf_bert_checkpoint):
    model = kt.TextClassifier.from_preset(hf_bert_checkpoint[0], num_classes=2)
    assert model.pooling == "cls"


def write_hf_roberta_dir(path, prefix="roberta.", seed=0):
    """A HuggingFace-format RoBERTa checkpoint with random weights.

    The tensors are `RobertaModel`'s, stored under `prefix` (`"roberta."`
    as the task classes save them, `""` as `RobertaModel` does), with a
    non-zero token type embedding as a fine-tuned checkpoint may have.
    Returns the weights, without the prefix.
    """
    tokenizer = make_tokenizer("roberta")
    weights = hf_bert_weights(tokenizer.vocabulary_size(), seed)
    del weights["pooler.dense.weight"], weights["pooler.dense.bias"]
    rng = np.random.default_rng(seed + 1)
    # HF RoBERTa's positions start at 2 (padding_idx + 1); one token type.
    weights["embeddings.position_embeddings.weight"] = (
        0.2 * rng.standard_normal((MAX_SEQUENCE_LENGTH + 2, HIDDEN_DIM))
    ).astype("float32")
    weights["embeddings.token_type_embeddings.weight"] = (
        0.5 * rng.standard_normal((1, HIDDEN_DIM))
    ).astype("float32")
    config = {
        "architectures": ["RobertaModel" if not prefix else "RobertaForMaskedLM"],
        "model_type": "roberta",
        "vocab_size": tokenizer.vocabulary_size(),
        "hidden_size": HIDDEN_DIM,
        "num_hidden_layers": NUM_LAYERS,
        "num_attention_heads": 2,
        "intermediate_size": 32,
        "hidden_act": "gelu",
        "hidden_dropout_prob": 0.1,
        "attention_probs_dropout_prob": 0.1,
        "max_position_embeddings": MAX_SEQUENCE_LENGTH + 2,
        "type_vocab_size": 1,
        "layer_norm_eps": 1e-5,
        "pad_token_id": tokenizer.pad_token_id,
        "bos_token_id": tokenizer.start_token_id,
        "eos_token_id": tokenizer.end_token_id,
    }
    path.mkdir(parents=True, exist_ok=True)
    (path / "config.json").write_text(json.dumps(config, indent=2))
    (path / "vocab.json").write_text(json.dumps(dict(tokenizer.vocabulary)))
    (path / "merges.txt").write_text("#version: 0.2\n" + "\n".join(tokenizer.merges) + "\n")
    save_file({prefix + name: value for name, value in weights.items()}, str(path / "model.safetensors"))
    return weights


LLAMA_CONFIG = {
    "architectures": ["LlamaModel"],
    "model_type": "llama",
    "vocab_size": 80,
    "hidden_size": HIDDEN_DIM,
    "intermediate_size": 32,
    "num_hidden_layers": NUM_LAYERS,
    "num_attention_heads": 2,
    "num_key_value_heads": 1,
    "max_position_embeddings": MAX_SEQUENCE_LENGTH,
    "rms_norm_eps": 1e-6,
    "rope_theta": 10000.0,
    "tie_word_embeddings": False,
}


def write_weights(path, weights, sharded=False):
    """`model.safetensors`, or one shard and the index a sharded save writes."""
    if not sharded:
        save_file(weights, str(path / "model.safetensors"))
        return
    shard = "model-00001-of-00001.safetensors"
    save_file(weights, str(path / shard))
    index = {"metadata": {}, "weight_map": {name: shard for name in weights}}
    (path / "model.safetensors.index.json").write_text(json.dumps(index))


@pytest.mark.parametrize("sharded", [False, True])
@pytest.mark.parametrize("prefix", ["roberta.", ""])
def test_hf_roberta_checkpoint_with_or_without_the_prefix(tmp_path, prefix, sharded):
    # A base RobertaModel saves `embeddings.…` where KerasHub reads `roberta.embeddings.…`.
    weights = write_hf_roberta_dir(tmp_path, prefix=prefix)
    if sharded:
        stored = load_file(str(tmp_path / "model.safetensors"))
        (tmp_path / "model.safetensors").unlink()
        write_weights(tmp_path, stored, sharded=True)
    backbone, preprocessor = kt.load_backbone(tmp_path)
    assert isinstance(backbone, keras_hub.models.RobertaBackbone)
    assert isinstance(preprocessor.tokenizer, keras_hub.models.RobertaTokenizer)
    np.testing.assert_array_equal(
        backbone.token_embedding.embeddings.numpy(), weights["embeddings.word_embeddings.weight"]
    )
    query = backbone.get_layer("transformer_layer_1")._self_attention_layer.query_dense
    np.testing.assert_allclose(
        query.kernel.numpy().reshape(HIDDEN_DIM, HIDDEN_DIM),
        weights["encoder.layer.1.attention.self.query.weight"].T,
    )
    backbone(preprocessor(["good film", "a great movie"]))


def test_hf_roberta_token_type_embedding_is_folded_into_positions(tmp_path):
    # HF's RobertaModel adds token_type_embeddings[0] to every token; KerasHub
    # drops the table, so outputs differed wherever it is not zero.
    weights = write_hf_roberta_dir(tmp_path)
    backbone, _ = kt.load_backbone(tmp_path)
    positions = weights["embeddings.position_embeddings.weight"][2:]
    token_type = weights["embeddings.token_type_embeddings.weight"][0]
    assert np.abs(token_type).max() > 0.1
    np.testing.assert_allclose(
        backbone.embeddings.position_embedding.position_embeddings.numpy(), positions + token_type, atol=1e-6
    )
    # load_weights=False builds random weights: nothing to fold.
    random, _ = kt.load_backbone(tmp_path, load_weights=False)
    assert not np.allclose(random.embeddings.position_embedding.position_embeddings.numpy(), positions + token_type)


def _hf_base_model_dir(transformers, family, path):
    """A base (headless) HF model of `family` saved with `save_pretrained`; its class."""
    import torch

    torch.manual_seed(0)
    if family == "roberta":
        write_hf_roberta_dir(path, prefix="")
        return transformers.RobertaModel
    path.mkdir(parents=True)
    if family == "distil_bert":
        (path / "vocab.txt").write_text("\n".join(BERT_VOCAB) + "\n")
        (path / "tokenizer_config.json").write_text(json.dumps({"do_lower_case": True}))
        config = transformers.DistilBertConfig(
            vocab_size=len(BERT_VOCAB), dim=HIDDEN_DIM, n_layers=NUM_LAYERS, n_heads=2,
            hidden_dim=32, max_position_embeddings=MAX_SEQUENCE_LENGTH, pad_token_id=0,
        )
        transformers.DistilBertModel(config).save_pretrained(path)
        return transformers.DistilBertModel
    proto = train_sentencepiece(
        pad_id=0, unk_id=1, bos_id=-1, eos_id=-1, control_symbols=["[CLS]", "[SEP]", "[MASK]"]
    )
    (path / "spiece.model").write_bytes(proto)
    config = transformers.AlbertConfig(
        vocab_size=make_tokenizer("albert").vocabulary_size(), embedding_size=8,
        hidden_size=HIDDEN_DIM, num_hidden_layers=NUM_LAYERS, num_attention_heads=2,
        intermediate_size=32, max_position_embeddings=MAX_SEQUENCE_LENGTH, pad_token_id=0,
    )
    transformers.AlbertModel(config).save_pretrained(path)
    return transformers.AlbertModel


@pytest.mark.parametrize("family", ["roberta", "distil_bert", "albert"])
def test_hf_base_model_checkpoint_matches_transformers(tmp_path, family):
    transformers = pytest.importorskip("transformers", reason="comparing with HF models needs transformers")
    import torch

    model_class = _hf_base_model_dir(transformers, family, tmp_path / family)
    backbone, preprocessor = kt.load_backbone(tmp_path / family, sequence_length=32)
    batch = preprocessor(["good film", "a great movie , really great", "bad plot"])
    outputs = backbone(batch)
    ours = keras.ops.convert_to_numpy(outputs["sequence_output"] if isinstance(outputs, dict) else outputs)
    hf = model_class.from_pretrained(tmp_path / family).eval()
    inputs = {
        "input_ids": torch.tensor(batch["token_ids"]).long(),
        "attention_mask": torch.tensor(batch["padding_mask"]).long(),
    }
    if "segment_ids" in batch:
        inputs["token_type_ids"] = torch.tensor(batch["segment_ids"]).long()
    with torch.no_grad():
        theirs = hf(**inputs).last_hidden_state.numpy()
    mask = batch["padding_mask"]
    np.testing.assert_allclose(ours[mask], theirs[mask], atol=1e-4)


@pytest.mark.parametrize("sharded", [False, True])
@pytest.mark.parametrize(
    "stored, missing, fragments",
    [
        # Saved from LlamaModel: no `model.` prefix.
        ({"embed_tokens.weight"}, "model.embed_tokens.weight",
         ("lack the `model.` prefix", "base model (LlamaModel)", "LlamaForCausalLM.from_pretrained(path).save_pretrained(path)")),
        # Prefixed, but no output layer and untied embeddings.
        ({"model.embed_tokens.weight"}, "lm_head.weight",
         ("no output layer", "tie_word_embeddings is false", "LlamaForCausalLM")),
    ],
)
def test_hf_checkpoint_saved_from_a_base_model_is_a_clear_error(tmp_path, stored, missing, fragments, sharded):
    (tmp_path / "config.json").write_text(json.dumps(LLAMA_CONFIG))
    write_weights(tmp_path, {name: np.zeros((80, HIDDEN_DIM), "float32") for name in stored}, sharded)
    with raises(
        ValueError,
        f"Cannot convert the HuggingFace checkpoint {str(tmp_path)!r}",
        f"it has no tensor {missing!r}",
        "converter for model_type 'llama'",
        *fragments,
        "convert the weights by hand",
    ):
        kt.load_backbone(tmp_path)


def test_hf_checkpoint_missing_a_tensor(hf_bert_dir):
    weights = load_file(str(hf_bert_dir / "model.safetensors"))
    del weights["encoder.layer.1.output.dense.weight"]
    write_weights(hf_bert_dir, weights)
    with raises(
        ValueError,
        "it has no tensor 'encoder.layer.1.output.dense.weight'",
        "model_type 'bert'",
        "incomplete",
        "save or download the checkpoint again",
    ):
        kt.load_backbone(hf_bert_dir)


@pytest.mark.parametrize("cut", [0.5, 0.001])
def test_hf_checkpoint_with_a_truncated_weights_file(hf_bert_dir, cut):
    weights = hf_bert_dir / "model.safetensors"
    content = weights.read_bytes()
    weights.write_bytes(content[: int(len(content) * cut)])
    with raises(ValueError, "Could not read the preset directory", "truncated or corrupted"):
        kt.load_backbone(hf_bert_dir)


@pytest.mark.parametrize("field", ["num_hidden_layers", "vocab_size", "intermediate_size"])
def test_hf_config_missing_a_field(hf_bert_dir, field):
    config = json.loads((hf_bert_dir / "config.json").read_text())
    del config[field]
    (hf_bert_dir / "config.json").write_text(json.dumps(config))
    with raises(ValueError, "Could not convert the HuggingFace checkpoint", f"'{field}'", "config.json", "save_pretrained"):
        kt.load_backbone(hf_bert_dir)


# ------------------------------------------------------------ preset names


@pytest.mark.parametrize(
    "typo, suggestion",
    [
        ("bert_base_en_uncase", "bert_base_en_uncased"),
        ("bert_tiny_en_uncasd", "bert_tiny_en_uncased"),
        ("gpt2_base_english", "gpt2_base_en"),
        ("gpt2_base_n", "gpt2_base_en"),
    ],
)
def test_preset_name_typo_suggests_the_right_name(typo, suggestion):
    with raises(ValueError, f"Unknown preset {typo!r}", "Did you mean", repr(suggestion)):
        kt.load_backbone(typo)


@pytest.mark.parametrize("name", ["zzzz_qqqq", "my_great_model_v7", "x"])
def test_unknown_preset_name_without_close_match(name):
    with pytest.raises(ValueError, match=f"Unknown preset '{name}'") as info:
        kt.load_backbone(name)
    assert "Did you mean" not in str(info.value)


def test_non_text_preset_names_its_family():
    registry = keras_hub.models.Backbone.presets
    assert registry["resnet_50_imagenet"]["metadata"]["path"] == "resnet"
    with raises(ValueError, "'resnet_50_imagenet'", "'resnet' family", "bert, distil_bert, roberta"):
        kt.load_backbone("resnet_50_imagenet")


@pytest.mark.parametrize("name", ["bert_tiny_en_uncased", "gpt2_base_en"])
def test_valid_preset_name_offline_is_a_clear_runtime_error(name):
    # conftest blocks the network: the download fails at once.
    with raises(RuntimeError, repr(name), "offline", "download"):
        kt.load_backbone(name)


def test_kaggle_handle_offline_is_a_clear_runtime_error():
    handle = "kaggle://keras/bert/keras/bert_tiny_en_uncased/3"
    with raises(RuntimeError, repr(handle), "offline"):
        kt.load_backbone(handle)


def test_hf_handle_offline_is_a_clear_runtime_error(monkeypatch):
    constants = pytest.importorskip("huggingface_hub.constants")
    # Offline mode makes huggingface_hub fail at once instead of retrying
    # for ~23 s against the blocked network; the error path is the same.
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with raises(RuntimeError, "offline"):
        kt.load_backbone("hf://google-bert/bert-base-uncased")


@pytest.mark.parametrize("value", [None, 3, 1.5, "", b"bert_base_en_uncased", ["bert"]])
def test_bad_preset_type(value):
    with raises(ValueError, "Expected `preset`", f"Received: preset={value!r}"):
        kt.load_backbone(value)


# ------------------------------------------------------------ paths


@pytest.mark.parametrize("path", ["./nope/", "nope/inner", "../definitely_not_here", "~/no_such_dir_xyz"])
def test_missing_directory_is_file_not_found(path, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path))
    with raises(FileNotFoundError, "No preset directory", path):
        kt.load_backbone(path)


def test_path_to_a_file_is_file_not_found(tmp_path):
    file = tmp_path / "model.bin"
    file.write_bytes(b"\x00")
    with raises(FileNotFoundError, "No preset directory"):
        kt.load_backbone(str(file))


def test_directory_without_config(tmp_path):
    (tmp_path / "model.safetensors").write_bytes(b"")
    with raises(ValueError, "no config.json", str(tmp_path)):
        kt.load_backbone(str(tmp_path))


@pytest.mark.parametrize(
    "content",
    [
        "",
        "{",
        '{"class_name": "BertBackbone", "config": {',
        "not json at all",
    ],
)
def test_corrupted_config(tmp_path, content):
    (tmp_path / "config.json").write_text(content)
    with raises(ValueError, "is not valid JSON", "corrupted"):
        kt.load_backbone(str(tmp_path))


def test_binary_config(tmp_path):
    (tmp_path / "config.json").write_bytes(b"\xff\xfe\x00garbage\x80")
    with raises(ValueError, "is not valid JSON", "corrupted"):
        kt.load_backbone(str(tmp_path))


@pytest.mark.parametrize("content", ["{}", '{"hidden_size": 16}', "[]", '"bert"'])
def test_config_of_unknown_kind(tmp_path, content):
    (tmp_path / "config.json").write_text(content)
    with raises(ValueError, "neither a KerasHub preset config", "model_type"):
        kt.load_backbone(str(tmp_path))


@pytest.mark.parametrize("content", ["null", "42", "true"])
def test_config_that_is_json_but_not_an_object(tmp_path, content):
    (tmp_path / "config.json").write_text(content)
    with raises(ValueError, "config.json"):
        kt.load_backbone(str(tmp_path))


def test_local_preset_of_an_unsupported_family(tmp_path):
    vocabulary = {"<pad>": 0, "</s>": 1, "g": 2, "o": 3, "d": 4, "oo": 5}
    backbone = keras_hub.models.OPTBackbone(
        vocabulary_size=len(vocabulary),
        num_layers=1,
        num_heads=2,
        hidden_dim=8,
        intermediate_dim=16,
        max_sequence_length=16,
    )
    backbone.save_to_preset(str(tmp_path))
    keras_hub.models.OPTTokenizer(vocabulary=vocabulary, merges=["o o"]).save_to_preset(str(tmp_path))
    with raises(ValueError, "OPTBackbone", "Supported families", "bert (BertBackbone)"):
        kt.load_backbone(str(tmp_path))


# ------------------------------------------------------------ arguments


@pytest.mark.parametrize("sequence_length", [0, 2, -8, 1.5, 64.0, "128", None, True, False])
def test_bad_sequence_length(bert_preset, sequence_length):
    with raises(ValueError, "`sequence_length`", "at least 3", f"sequence_length={sequence_length!r}"):
        kt.load_backbone(bert_preset, sequence_length=sequence_length)


@pytest.mark.parametrize("truncation", ["middle", "HEAD", None, "head+middle"])
def test_bad_truncation(bert_preset, truncation):
    with raises(ValueError, f"Unknown truncation {truncation!r}", "'head', 'tail', 'head+tail'"):
        kt.load_backbone(bert_preset, truncation=truncation)


@pytest.mark.parametrize("sequence_length, expected", [(3, 3), (64, 64), (65, 64), (10_000, 64)])
def test_sequence_length_is_capped_at_the_backbone_maximum(preset, sequence_length, expected):
    backbone, preprocessor = kt.load_backbone(preset, sequence_length=sequence_length)
    assert backbone.max_sequence_length == MAX_SEQUENCE_LENGTH
    assert preprocessor.sequence_length == expected
    batch = preprocessor(["good film " * 100, "bad"])
    assert batch["token_ids"].shape == (2, expected)
    # The capped batch runs through the backbone (positions fit).
    backbone(batch)


def test_default_sequence_length_is_the_backbone_maximum(preset):
    _, preprocessor = kt.load_backbone(preset)
    assert preprocessor.sequence_length == MAX_SEQUENCE_LENGTH


# ------------------------------------------------------------ list_presets


def test_list_presets_lists_text_presets_only():
    presets = kt.list_presets()
    assert "bert_base_en_uncased" in presets
    assert "gpt2_base_en" in presets
    assert "resnet_50_imagenet" not in presets
    assert {info["family"] for info in presets.values()} <= {f.name for f in kt.families.FAMILIES.values()}
    info = presets["bert_base_en_uncased"]
    assert set(info) == {"family", "params", "description"}
    assert info["family"] == "bert"
    assert presets["gpt2_base_en"]["family"] == "gpt2"
    assert isinstance(info["params"], int) and info["params"] > 100_000_000
    assert list(presets) == sorted(presets)


def test_list_presets_all_families():
    presets = kt.list_presets(all_families=True)
    assert presets["resnet_50_imagenet"]["family"] == "resnet"
    assert set(kt.list_presets()) < set(presets)


def test_list_presets_of_one_family():
    bert = kt.list_presets("bert")
    assert bert and {info["family"] for info in bert.values()} == {"bert"}
    assert set(bert) < set(kt.list_presets())
    assert kt.list_presets(True) == kt.list_presets(all_families=True)  # the old positional form
    with raises(ValueError, "Unknown family 'resnet'", "bert"):
        kt.list_presets("resnet")
    with raises(ValueError, "`all_families`"):
        kt.list_presets(all_families="yes")


def test_every_listed_preset_passes_the_name_check():
    # A listed name must never be refused as unknown or unsupported: with
    # the network blocked it gets as far as the download.
    for name in list(kt.list_presets())[:3]:
        with pytest.raises(RuntimeError, match="offline"):
            kt.load_backbone(name)


# ------------------------------------------------------------ frozen presets


@pytest.mark.parametrize("name", ["bert", "gpt2"])
def test_backbone_saved_frozen_reloads_frozen(request, tmp_path, name):
    source = request.getfixturevalue(f"{name}_preset")
    backbone, preprocessor = kt.load_backbone(source)
    kt.freeze(backbone)
    backbone.save_to_preset(str(tmp_path))
    preprocessor.tokenizer.save_to_preset(str(tmp_path))

    reloaded, _ = kt.load_backbone(str(tmp_path))
    assert reloaded.trainable is False
    assert reloaded.trainable_weights == []
    assert all(not v.trainable for v in reloaded.weights)
    assert not any(requires_grad(v) for v in reloaded.weights)
    # In inference mode: no dropout even when called with training=True.
    batch = preprocessor(["good film", "the plot"])
    a = keras.ops.convert_to_numpy(_sequence(reloaded(batch, training=True)))
    b = keras.ops.convert_to_numpy(_sequence(reloaded(batch, training=False)))
    np.testing.assert_array_equal(a, b)


def test_backbone_saved_trainable_reloads_trainable(bert_preset):
    backbone, _ = kt.load_backbone(bert_preset)
    assert backbone.trainable
    assert all(v.trainable for v in backbone.weights)
    assert all(requires_grad(v) for v in backbone.weights)


def _sequence(outputs):
    return outputs["sequence_output"] if isinstance(outputs, dict) else outputs
