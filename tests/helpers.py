"""Small helpers shared by the test modules, and the tiny models' recipes.

Nothing here imports Keras at module level: conftest.py imports this file
before it has chosen the backend.
"""

import re

import numpy as np
import pytest

# Texts every tiny tokenizer can read, of different lengths so that
# length bucketing reorders them.
TEXTS = [
    "good film",
    "awful film",
    "a great movie , really great !",
    "bad plot",
    "loved it",
    "boring acting , very boring",
    "fun",
    "the worst film ever",
    "a good story and good acting",
    "not fun",
]
LABELS = [1, 0, 1, 0, 1, 0, 1, 0, 1, 0]


def compiled_classifier(preset, sequence_length=16):
    """A two-class `TextClassifier` over `preset`, compiled with the task defaults."""
    import keras_transfer as kt

    model = kt.TextClassifier.from_preset(preset, num_classes=2, sequence_length=sequence_length)
    model.compile(learning_rate=1e-3)
    return model


def labelled_batch(model, size=4):
    """The first `size` of TEXTS, preprocessed by `model`, and their labels."""
    return model.preprocessor(TEXTS[:size]), np.array(LABELS[:size])


def raises(error, *fragments):
    """`pytest.raises` that checks every fragment appears in the message."""
    pattern = "".join(f"(?=.*{re.escape(fragment)})" for fragment in fragments)
    return pytest.raises(error, match=re.compile(pattern, re.DOTALL))


def snapshot(layer):
    """{path: copy of the value} for every weight of a layer or model."""
    return {v.path: np.array(v.numpy(), copy=True) for v in layer.weights}


def changed(before, layer):
    """Paths of the weights of `layer` whose value differs from `before`."""
    now = snapshot(layer)
    assert now.keys() == before.keys()
    return {path for path in now if not np.array_equal(now[path], before[path])}


def trainable_layer_names(backbone):
    """Direct sub-layers of a backbone that hold at least one trainable weight."""
    return {
        layer.name
        for layer in backbone.layers
        if any(v.trainable for v in layer.weights) and layer.trainable
    }


def requires_grad(variable):
    """Whether torch computes a gradient for a Keras variable."""
    return bool(variable.value.requires_grad)


def dropout_rates(layer):
    """Rates of every Dropout and MultiHeadAttention under `layer`."""
    import keras

    rates = []
    for sub in layer._flatten_layers(include_self=True, recursive=True):
        if isinstance(sub, keras.layers.Dropout):
            rates.append(sub.rate)
        if isinstance(sub, keras.layers.MultiHeadAttention):
            rates.append(sub._dropout)
    return rates


# ------------------------------------------------------------ tiny models

HIDDEN_DIM = 16
NUM_LAYERS = 2
MAX_SEQUENCE_LENGTH = 64

# Words the tests use, so that WordPiece maps them to themselves.
BERT_WORDS = [
    "good", "bad", "film", "great", "awful", "a", "the", "movie", "is",
    "was", "not", "very", "and", "it", "i", "this", "plot", "acting",
    "boring", "loved", "hated", "fun", "story", "one", "two", "three",
    "four", "five", "six", "seven", "eight", "nine", "ten", "what", "an",
    "end", "of", "naive", "cafe", "ever", "worst", "best", "so", "really",
    "!", ".", ",", "?", "'",
]
BERT_PIECES = ["##s", "##ing", "##ed", "##ly", "##y", "##er"]
BERT_VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + BERT_WORDS + BERT_PIECES

# Byte-level BPE: printable ASCII is its own byte symbol, a space before a
# word becomes "Ġ". Merges build whole words, "Ġ"-prefixed forms first.
GPT2_WORDS = [
    "good", "bad", "film", "great", "awful", "movie", "the", "a", "is",
    "was", "not", "very", "boring", "fun", "loved", "hated", "plot",
    "acting", "story",
]


def gpt2_vocabulary_and_merges():
    vocabulary = {"<|endoftext|>": 0}
    for code in range(33, 127):
        vocabulary[chr(code)] = len(vocabulary)
    vocabulary["Ġ"] = len(vocabulary)
    merges = []
    for piece in ["Ġ" + w for w in GPT2_WORDS] + GPT2_WORDS:
        current = piece[0]
        for char in piece[1:]:
            merge = f"{current} {char}"
            if merge not in merges:
                merges.append(merge)
            current += char
            vocabulary.setdefault(current, len(vocabulary))
    return vocabulary, merges


def hf_bert_weights(vocabulary_size, seed=0):
    """Random weights with the names and shapes of HF's `BertModel`."""
    rng = np.random.default_rng(seed)
    h, i = HIDDEN_DIM, 32

    def normal(*shape):
        return (0.2 * rng.standard_normal(shape)).astype("float32")

    weights = {
        "embeddings.word_embeddings.weight": normal(vocabulary_size, h),
        "embeddings.position_embeddings.weight": normal(MAX_SEQUENCE_LENGTH, h),
        "embeddings.token_type_embeddings.weight": normal(2, h),
        "embeddings.LayerNorm.weight": 1 + normal(h),
        "embeddings.LayerNorm.bias": normal(h),
        "pooler.dense.weight": normal(h, h),
        "pooler.dense.bias": normal(h),
    }
    for layer in range(NUM_LAYERS):
        p = f"encoder.layer.{layer}."
        for name in ("query", "key", "value"):
            weights[p + f"attention.self.{name}.weight"] = normal(h, h)
            weights[p + f"attention.self.{name}.bias"] = normal(h)
        weights[p + "attention.output.dense.weight"] = normal(h, h)
        weights[p + "attention.output.dense.bias"] = normal(h)
        weights[p + "attention.output.LayerNorm.weight"] = 1 + normal(h)
        weights[p + "attention.output.LayerNorm.bias"] = normal(h)
        weights[p + "intermediate.dense.weight"] = normal(i, h)
        weights[p + "intermediate.dense.bias"] = normal(i)
        weights[p + "output.dense.weight"] = normal(h, i)
        weights[p + "output.dense.bias"] = normal(h)
        weights[p + "output.LayerNorm.weight"] = 1 + normal(h)
        weights[p + "output.LayerNorm.bias"] = normal(h)
    return weights


def write_hf_tokenizer_json(path, vocabulary, lowercase=True, strip_accents=None):
    """tokenizer.json as HF's BertTokenizerFast writes it."""
    import tokenizers
    from tokenizers import models, normalizers, pre_tokenizers, processors

    tokenizer = tokenizers.Tokenizer(
        models.WordPiece(
            {token: i for i, token in enumerate(vocabulary)},
            unk_token="[UNK]",
            continuing_subword_prefix="##",
        )
    )
    tokenizer.normalizer = normalizers.BertNormalizer(
        clean_text=True,
        handle_chinese_chars=True,
        strip_accents=strip_accents,
        lowercase=lowercase,
    )
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    cls, sep = vocabulary.index("[CLS]"), vocabulary.index("[SEP]")
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls), ("[SEP]", sep)],
    )
    tokenizer.save(str(path))


def write_hf_bert_dir(path, vocabulary=BERT_VOCAB, seed=0):
    """Writes a HuggingFace-format BERT checkpoint; returns its weights."""
    import json

    import torch
    from safetensors.torch import save_file

    path.mkdir(parents=True, exist_ok=True)
    config = {
        "architectures": ["BertModel"],
        "model_type": "bert",
        "vocab_size": len(vocabulary),
        "hidden_size": HIDDEN_DIM,
        "num_hidden_layers": NUM_LAYERS,
        "num_attention_heads": 2,
        "intermediate_size": 32,
        "hidden_act": "gelu",
        "hidden_dropout_prob": 0.1,
        "attention_probs_dropout_prob": 0.1,
        "max_position_embeddings": MAX_SEQUENCE_LENGTH,
        "type_vocab_size": 2,
        "initializer_range": 0.02,
        "layer_norm_eps": 1e-12,
        "pad_token_id": 0,
    }
    (path / "config.json").write_text(json.dumps(config, indent=2))
    (path / "vocab.txt").write_text("\n".join(vocabulary) + "\n")
    (path / "tokenizer_config.json").write_text(
        json.dumps({"do_lower_case": True, "tokenizer_class": "BertTokenizer"})
    )
    write_hf_tokenizer_json(path / "tokenizer.json", vocabulary)
    weights = hf_bert_weights(len(vocabulary), seed)
    save_file({k: torch.from_numpy(v) for k, v in weights.items()}, str(path / "model.safetensors"))
    return weights
