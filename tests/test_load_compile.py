"""Loading without compiling, tasks used uncompiled, NumPy bools as flags,
and counts of one in messages.

`Task.from_config` used to build every task compiled with the defaults,
so `kt.load_model(path, compile=False)` and a model saved uncompiled came
back compiled (Keras then warned that the optimizer's saved variables did
not match). An uncompiled model is expected to work as a compiled one
does: `fit` and `evaluate` compile it with `compile()`'s defaults,
`predict` needs no compiling.
"""

import warnings

import keras
import numpy as np
import pytest

import keras_transfer as kt
from helpers import LABELS, TEXTS, raises


def _classifier(preset, compile=True):
    return kt.TextClassifier.from_preset(preset, num_classes=2, sequence_length=16, compile=compile)


def _load_quietly(path, **kwargs):
    """`kt.load_model`, and the texts of the warnings it gave."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = kt.load_model(path, **kwargs)
    return model, [str(w.message) for w in caught]


@pytest.fixture(scope="module")
def trained_file(bert_preset, tmp_path_factory):
    model = _classifier(bert_preset)
    model.fit(TEXTS, LABELS, epochs=1, batch_size=4, verbose=0)
    path = str(tmp_path_factory.mktemp("trained") / "model.keras")
    model.save(path)
    return path, model.predict(TEXTS, verbose=0)


# --- load_model(compile=...) ----------------------------------------------------------


def test_load_model_compile_false_gives_an_uncompiled_model(trained_file):
    path, expected = trained_file
    model, caught = _load_quietly(path, compile=False)
    assert not model.compiled
    assert getattr(model, "optimizer", None) is None
    assert not any("Skipping variable loading" in message for message in caught), caught
    np.testing.assert_allclose(model.predict(TEXTS, verbose=0), expected, atol=1e-6)
    assert model.backbone.trainable_weights == []  # the frozen state still comes back


def test_load_model_compile_true_still_restores_the_trained_optimizer(trained_file):
    path, _ = trained_file
    model, caught = _load_quietly(path)
    assert model.compiled
    assert int(keras.ops.convert_to_numpy(model.optimizer.iterations)) == 3  # 10 texts, batches of 4
    assert not any("Skipping variable loading" in message for message in caught), caught


def test_a_model_saved_uncompiled_reloads_uncompiled_without_warnings(bert_preset, tmp_path):
    model = _classifier(bert_preset, compile=False)
    path = str(tmp_path / "uncompiled.keras")
    model.save(path)
    loaded, caught = _load_quietly(path)
    assert not loaded.compiled
    assert not any("Skipping variable loading" in message for message in caught), caught
    np.testing.assert_allclose(
        loaded.predict(TEXTS, verbose=0), model.predict(TEXTS, verbose=0), atol=1e-6
    )
    history = loaded.fit(TEXTS, LABELS, epochs=1, batch_size=4, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    assert loaded.optimizer.learning_rate is not None  # compiled with the defaults by fit


# --- evaluate on a model never compiled -----------------------------------------------


def test_evaluate_compiles_an_uncompiled_model_with_the_defaults(bert_preset):
    model = _classifier(bert_preset, compile=False)
    metrics = model.evaluate(TEXTS, LABELS, batch_size=4, verbose=0, return_dict=True)
    assert set(metrics) == {"loss", "accuracy"}  # the task's loss and metrics
    assert np.isfinite(metrics["loss"])
    model.compile()
    expected = model.evaluate(TEXTS, LABELS, batch_size=4, verbose=0, return_dict=True)
    assert metrics == pytest.approx(expected)


def test_a_model_loaded_uncompiled_evaluates(trained_file):
    path, _ = trained_file
    model = kt.load_model(path, compile=False)
    metrics = model.evaluate(TEXTS, LABELS, verbose=0, return_dict=True)
    assert set(metrics) == {"loss", "accuracy"}


def test_fit_after_evaluate_compiles_for_what_trains_then(bert_preset):
    """`evaluate` compiled for the frozen backbone (the head's rate); the
    user never chose it, so `fit` after `kt.unfreeze` compiles again (the
    fine-tuning rate) instead of refusing the unfrozen backbone."""
    model = _classifier(bert_preset, compile=False)
    model.evaluate(TEXTS, LABELS, verbose=0)
    kt.unfreeze(model)
    model.fit(TEXTS, LABELS, epochs=1, batch_size=4, verbose=0)
    schedule = model.optimizer._learning_rate
    assert schedule.peak_learning_rate == pytest.approx(5e-5)


def test_fit_keeps_a_compile_of_the_users_after_evaluate(bert_preset):
    model = _classifier(bert_preset, compile=False)
    model.compile(learning_rate=1e-3)
    optimizer = model.optimizer
    model.evaluate(TEXTS, LABELS, verbose=0)
    model.fit(TEXTS, LABELS, epochs=1, batch_size=4, verbose=0)
    assert model.optimizer is optimizer


def test_translator_evaluates_uncompiled(gpt2_preset):
    model = kt.Translator.from_preset(
        gpt2_preset, prompt="{source} =", source_length=12, target_length=8, compile=False
    )
    sources, targets = ["a dog runs", "a man walks"], ["ein hund", "ein mann"]
    metrics = model.evaluate(sources, targets, verbose=0, return_dict=True)
    assert np.isfinite(metrics["loss"])


# --- NumPy bools as flags -------------------------------------------------------------


def test_regressor_takes_a_numpy_bool_for_standardize(bert_preset):
    backbone, preprocessor = kt.load_backbone(bert_preset, sequence_length=16)
    model = kt.TextRegressor(backbone, preprocessor=preprocessor, standardize=np.bool_(False))
    assert model.standardize is False
    assert model.get_config()["standardize"] is False  # JSON-safe when saved
    with raises(ValueError, "Expected `standardize` to be True or False", "standardize='yes'"):
        kt.TextRegressor(backbone, preprocessor=preprocessor, standardize="yes")


def test_question_answerer_takes_a_numpy_bool_for_allow_unanswerable(bert_preset):
    backbone, preprocessor = kt.load_backbone(bert_preset, sequence_length=24)
    model = kt.QuestionAnswerer(
        backbone, preprocessor=preprocessor, stride=6, max_question_length=8,
        allow_unanswerable=np.True_,
    )
    assert model.allow_unanswerable is True
    with raises(ValueError, "Expected `allow_unanswerable` to be True or False", "allow_unanswerable='no'"):
        kt.QuestionAnswerer(
            backbone, preprocessor=preprocessor, stride=6, max_question_length=8, allow_unanswerable="no"
        )


# --- A count of one is singular -------------------------------------------------------


def test_counts_of_one_are_singular_in_squad_and_qa_data_messages():
    with raises(ValueError, "Got 1 question but 2 contexts."):
        kt.datasets.QAData(questions=["q ?"], contexts=["a", "b"])
    with raises(ValueError, "Got 2 questions but 1 context."):
        kt.datasets.QAData(questions=["q ?", "r ?"], contexts=["a"])
    with raises(ValueError, "Got 2 questions but 1 id."):
        kt.datasets.QAData(questions=["q ?", "r ?"], contexts=["a", "b"], ids=["x"])
    with raises(ValueError, "Got 1 question but 2 titles."):
        kt.datasets.QAData(questions=["q ?"], contexts=["a"], titles=["t", "u"])
    with raises(ValueError, "Got 1 context but 2 answers."):
        kt.datasets.QAData(questions=["q ?"], contexts=["a"], answers=["a", "a"])
    with raises(ValueError, "Got 1 prediction but 2 references."):
        kt.metrics.squad_scores(["a"], [["a"], ["b"]])
    with raises(ValueError, "Got 2 predictions but 1 reference."):
        kt.metrics.squad_scores(["a", "b"], [["a"]])


def test_counts_of_one_are_singular_in_the_question_answerers_messages(bert_preset):
    backbone, preprocessor = kt.load_backbone(bert_preset, sequence_length=24)
    model = kt.QuestionAnswerer(
        backbone, preprocessor=preprocessor, stride=6, max_question_length=8, compile=False
    )
    with raises(ValueError, "Got 1 question but 2 contexts."):
        model.answer(["q ?"], ["a", "b"])
    with raises(ValueError, "1 of the 1 question has no answer"):
        model.fit(questions=["q ?"], contexts=["the film"], answers=[None], verbose=0)
    with raises(ValueError, "2 of the 3 questions have no answer"):
        model.fit(questions=["q ?"] * 3, contexts=["the film"] * 3, answers=[None, None, "film"], verbose=0)


def test_counts_of_one_are_singular_in_translation_messages(gpt2_preset, tmp_path):
    with raises(ValueError, "1 source but 2 targets."):
        kt.datasets.ParallelData(["a"], ["b", "c"])
    with raises(ValueError, "2 sources but 1 target."):
        kt.datasets.ParallelData(["a", "b"], ["c"])
    source, target = tmp_path / "p.en", tmp_path / "p.de"
    source.write_text("A dog.", encoding="utf-8")
    target.write_text("Ein Hund.\nEin Mann.", encoding="utf-8")
    with raises(ValueError, "has 1 line but", "has 2", "not aligned"):
        kt.datasets.read_parallel(source, target)
    model = kt.Translator.from_preset(gpt2_preset, prompt="{source} =", source_length=12, target_length=8)
    with raises(ValueError, "Got 1 source but 2 targets."):
        model.fit(["a dog"], ["ein hund", "ein mann"], verbose=0)
    with raises(ValueError, "Got 1 hypothesis but 2 references:"):
        kt.metrics.bleu(["a"], ["a", "b"])
    with raises(ValueError, "Got 2 hypotheses but 1 reference:"):
        kt.metrics.bleu(["a", "b"], ["a"])


def test_counts_of_one_are_singular_in_entity_metric_messages():
    with raises(ValueError, "Got 1 true tag sequence but 2 predicted ones."):
        kt.metrics.entity_scores([["O"]], [["O"], ["O"]])
    with raises(ValueError, "Got 2 true tag sequences but 1 predicted one."):
        kt.metrics.entity_scores([["O"], ["O"]], [["O"]])


def test_one_weight_trainable_after_compile_is_singular(bert_preset):
    model = _classifier(bert_preset)
    model.fit(TEXTS, LABELS, epochs=1, batch_size=4, verbose=0, cache_features=False)
    # One weight of the backbone made trainable behind the optimizer's back.
    model.backbone.trainable = True
    for variable in model.backbone.weights[1:]:
        variable.trainable = False
    assert len(model.trainable_weights) == len(model.optimizer._trainable_variables) + 1
    with raises(ValueError, "1 weight became trainable after `compile()`", "cannot update it."):
        model.fit(TEXTS, LABELS, epochs=1, batch_size=4, verbose=0, cache_features=False)
