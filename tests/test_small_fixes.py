"""Small fixes: QA refusing SentencePiece presets early, QA spans of
whitespace tokens, validation epochs in `plot_history`, singular counts in
messages."""

import os

import keras
import numpy as np
import pytest
from family_models import save_family_preset
from helpers import raises

import keras_transfer as kt
from keras_transfer import qa


@pytest.fixture(scope="module")
def albert_preset(tmp_path_factory):
    return save_family_preset("albert", tmp_path_factory.mktemp("tiny_albert"))


# --- QuestionAnswerer refuses tokenizers without offsets when built ---------------


def test_question_answerer_from_preset_refuses_sentencepiece_before_loading_weights(albert_preset, tmp_path):
    # A copy without its weights file: the refusal must come before loading.
    import shutil

    copy = shutil.copytree(albert_preset, tmp_path / "albert")
    os.remove(copy / "model.weights.h5")
    with raises(ValueError, "character offset", "AlbertTokenizer", "WordPiece", "SentencePiece"):
        kt.QuestionAnswerer.from_preset(str(copy), sequence_length=32, stride=4, max_question_length=8)
    # A KerasHub preset name is judged offline, without a download.
    with raises(ValueError, "character offset", "AlbertTokenizer"):
        kt.QuestionAnswerer.from_preset("albert_base_en_uncased")


def test_question_answerer_constructor_refuses_sentencepiece_preprocessor(albert_preset, tmp_path):
    backbone, preprocessor = kt.load_backbone(albert_preset, sequence_length=32)
    with raises(ValueError, "character offset", "AlbertTokenizer", "WordPiece", "SentencePiece"):
        kt.QuestionAnswerer(backbone, preprocessor, stride=4, max_question_length=8)
    # Token ids need no offsets: without a preprocessor the model builds, and
    # one saved with its preprocessor attached afterwards loads again.
    model = kt.QuestionAnswerer(backbone, stride=4, max_question_length=8)
    model.preprocessor = preprocessor
    model.save(tmp_path / "qa.keras")
    loaded = kt.load_model(tmp_path / "qa.keras")
    assert type(loaded.preprocessor.tokenizer).__name__ == "AlbertTokenizer"
    with raises(ValueError, "character offset", "AlbertTokenizer"):
        loaded.answer(["what ?"], ["the film was good"])


def test_question_answerer_from_preset_still_builds_supported_families(bert_preset, gpt2_preset):
    for preset in (bert_preset, gpt2_preset):
        model = kt.QuestionAnswerer.from_preset(preset, sequence_length=24, stride=6, max_question_length=8)
        (answer,) = model.answer(["what was good ?"], ["the film was good"])
        assert answer["text"]


# --- QA spans of whitespace-only tokens -------------------------------------------


def test_whitespace_tokens_never_start_or_end_an_answer(gpt2_preset):
    _, preprocessor = kt.load_backbone(gpt2_preset, sequence_length=32)
    context = "the film  was good"  # the second space is a token of its own, "Ġ"
    (window,) = qa.make_windows(preprocessor, ["what ?"], [context], stride=2, max_question_length=4)
    spans = window.offsets
    blank = [i for i in range(len(spans)) if spans[i, 0] >= 0 and spans[i, 0] == spans[i, 1]]
    assert blank, "the tiny GPT-2 vocabulary should give a whitespace-only token"
    (position,) = blank
    for end_on in (position, position + 1):  # the blank token alone, or blank + "was"
        start_logits = np.zeros(len(window.token_ids))
        end_logits = np.zeros(len(window.token_ids))
        start_logits[position] = end_logits[end_on] = 10.0
        (answer,) = qa.decode([start_logits], [end_logits], [window], [context])
        assert answer["text"] and answer["text"] == answer["text"].strip()
        assert context[answer["start"] : answer["end"]] == answer["text"]
        _, start, end = qa.best_span(start_logits, end_logits, window)
        assert start != position and end != position
    # A window whose context is whitespace alone has no span to give.
    (blank_only,) = qa.make_windows(preprocessor, ["what ?"], ["  "], stride=2, max_question_length=4)
    n = len(blank_only.token_ids)
    assert qa.best_span(np.zeros(n), np.zeros(n), blank_only) is None
    (answer,) = qa.decode([np.zeros(n)], [np.zeros(n)], [blank_only], ["  "])
    assert (answer["text"], answer["start"], answer["end"]) == ("", 0, 0)


def test_best_span_unchanged_without_whitespace_tokens(bert_preset):
    _, preprocessor = kt.load_backbone(bert_preset, sequence_length=32)
    (window,) = qa.make_windows(
        preprocessor, ["what ?"], ["the film was good and the plot was boring"], stride=2, max_question_length=4
    )
    rng = np.random.default_rng(0)
    context = np.flatnonzero(window.offsets[:, 0] >= 0)
    for _ in range(5):
        s_logits, e_logits = rng.normal(size=(2, len(window.token_ids)))
        expected = max(
            (s_logits[s] + e_logits[e], s, e) for s in context for e in context if s <= e < s + 30
        )
        score, start, end = qa.best_span(s_logits, e_logits, window)
        assert (start, end) == expected[1:] and score == pytest.approx(expected[0])


# --- plot_history and validation_freq ---------------------------------------------


def _x(figure, panel=0):
    return [[float(x) for x in line.get_xdata()] for line in figure.axes[panel].lines]


@pytest.mark.parametrize("freeze", [True, False])  # cached features, and the whole model
def test_plot_history_puts_validation_at_the_validated_epochs(bert_preset, freeze):
    texts, labels = ["the film was good", "the plot was boring", "fun story"], [1, 0, 1]
    model = kt.TextClassifier.from_preset(bert_preset, num_classes=2, sequence_length=16, freeze=freeze)
    history = model.fit(texts, labels, validation_data=(texts, labels), validation_freq=2, epochs=4, verbose=0)
    assert history.validation_epochs == [2, 4]
    assert sorted(history.history) == ["accuracy", "loss", "val_accuracy", "val_loss"]  # as Keras makes it
    assert len(history.history["val_loss"]) == 2
    assert _x(kt.plot_history(history)) == [[1, 2, 3, 4], [2, 4]]
    # Resumed from epoch 1: epochs 2..4 ran, epoch 3 validated (the second point).
    history = model.fit(
        texts, labels, validation_data=(texts, labels), validation_freq=[3], epochs=4, initial_epoch=1, verbose=0
    )
    assert history.validation_epochs == [3]
    assert _x(kt.plot_history(history)) == [[1, 2, 3], [2]]
    history = model.fit(texts, labels, epochs=1, verbose=0)
    assert history.validation_epochs == []


def test_plot_history_of_a_plain_keras_history():
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile("sgd", "mse")
    x, y = np.ones((4, 2)), np.ones(4)
    history = model.fit(x, y, validation_data=(x, y), validation_freq=2, epochs=4, verbose=0)
    assert not hasattr(history, "validation_epochs")
    # Nothing says which epochs were validated: their own indexes, no crash.
    assert _x(kt.plot_history(history)) == [[1, 2, 3, 4], [1, 2]]
    history.params["validation_freq"] = 2  # recoverable: Keras' own rule
    assert _x(kt.plot_history(history)) == [[1, 2, 3, 4], [2, 4]]
    history.params["validation_freq"] = [1, 4]
    assert _x(kt.plot_history(history)) == [[1, 2, 3, 4], [1, 4]]
    assert _x(kt.plot_history(history.history)) == [[1, 2, 3, 4], [1, 2]]  # the bare dict


# --- Singular counts -----------------------------------------------------------------


def test_counts_of_one_are_singular(bert_preset):
    model = kt.TextClassifier.from_preset(bert_preset, num_classes=2, sequence_length=16, freeze=True)
    with raises(ValueError, "Got 1 text but 2 labels"):
        model.fit(["the film was good"], [1, 0], verbose=0)
    with raises(ValueError, "Got 2 texts but 1 label in"):
        model.fit(["the film was good", "fun"], [1], verbose=0)
    with raises(ValueError, "Got 1 true label but 2 predictions"):
        kt.metrics.confusion_matrix([0], [0, 1])
    with raises(ValueError, "Got 1 true label row but 2 predicted rows"):
        kt.metrics.multilabel_report([[1, 0]], [[1, 0], [0, 1]])
    with raises(ValueError, "has 1 column;", "expected 2"):
        kt.metrics.multilabel_report([[1, 0]], [[1]])
    labeller = kt.MultiLabelClassifier.from_preset(bert_preset, num_classes=1, sequence_length=16, freeze=True)
    with raises(ValueError, "has 2 columns but the model has 1 label."):
        labeller.fit(["the film was good"], [[1, 0]], verbose=0)
