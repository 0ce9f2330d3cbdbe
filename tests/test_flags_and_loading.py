"""True/False flags given as anything else, the quiet reload of a model
saved before it trained, and data readers given no path."""

import warnings

import keras
import numpy as np
import pytest

import keras_transfer as kt
from helpers import LABELS, TEXTS, raises

# --- `compile` must be True or False ------------------------------------------------------

SENTENCE_TASKS = {
    "TextClassifier": dict(num_classes=2),
    "TextPairClassifier": dict(num_classes=2),
    "MultiLabelClassifier": dict(num_classes=3),
    "TextRegressor": dict(),
    "TokenClassifier": dict(num_tags=3, tag_scheme=None),
    "QuestionAnswerer": dict(stride=4, max_question_length=4),
}


@pytest.mark.parametrize("name", sorted(SENTENCE_TASKS))
def test_from_preset_refuses_a_compile_flag_that_is_not_a_bool_before_loading(name):
    """"no" is true to Python: it used to compile the model. The preset
    does not exist, so the error shows the flag is checked before loading."""
    cls = getattr(kt, name)
    with raises(ValueError, "Expected `compile` to be True or False", "compile='no'"):
        cls.from_preset("no_such_preset", compile="no", **SENTENCE_TASKS[name])


def test_translator_from_preset_refuses_a_compile_flag_that_is_not_a_bool():
    with raises(ValueError, "Expected `compile` to be True or False", "compile=1"):
        kt.Translator.from_preset("no_such_preset", compile=1)


@pytest.mark.parametrize("name", sorted(SENTENCE_TASKS))
def test_constructors_refuse_a_compile_flag_that_is_not_a_bool(bert_preset, name):
    backbone, preprocessor = kt.load_backbone(bert_preset, sequence_length=16)
    cls = getattr(kt, name)
    with raises(ValueError, "Expected `compile` to be True or False", "compile='no'"):
        cls(backbone=backbone, preprocessor=preprocessor, compile="no", **SENTENCE_TASKS[name])
    model = cls(backbone=backbone, preprocessor=preprocessor, compile=np.False_, **SENTENCE_TASKS[name])
    assert not model.compiled  # a NumPy bool is a bool


def test_translator_constructor_refuses_a_compile_flag_that_is_not_a_bool(gpt2_preset):
    import keras_hub

    backbone = keras_hub.models.Backbone.from_preset(gpt2_preset)
    with raises(ValueError, "Expected `compile` to be True or False", "compile='no'"):
        kt.Translator(backbone, compile="no")


def test_numpy_bools_are_accepted_as_compile_flags(bert_preset):
    model = kt.TextClassifier.from_preset(bert_preset, num_classes=2, sequence_length=16, compile=np.False_)
    assert not model.compiled
    model = kt.TextClassifier.from_preset(bert_preset, num_classes=2, sequence_length=16, compile=np.True_)
    assert model.compiled


def test_load_model_refuses_a_compile_flag_that_is_not_a_bool(bert_preset, tmp_path):
    kt.TextClassifier.from_preset(bert_preset, num_classes=2, sequence_length=16).save(tmp_path / "m.keras")
    with raises(ValueError, "Expected `compile` to be True or False", "compile='no'"):
        kt.load_model(tmp_path / "m.keras", compile="no")
    assert isinstance(kt.load_model(tmp_path / "m.keras", compile=np.False_), kt.TextClassifier)


# --- Reloading a model compiled but never trained -----------------------------------------


def _skipped_optimizer_loads(record):
    return [str(w.message) for w in record if "Skipping variable loading" in str(w.message)]


def _load_recording(load):
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        model = load()
    return model, _skipped_optimizer_loads(record)


def test_a_model_saved_before_training_reloads_without_an_optimizer_warning(bert_preset, tmp_path):
    """Its optimizer was never built, so the file holds only its step count;
    loading used to build the new optimizer first, and Keras skipped the
    load with "it has N variables whereas the saved optimizer has 1"."""
    path = tmp_path / "m.keras"
    kt.TextClassifier.from_preset(bert_preset, num_classes=2, sequence_length=16).save(path)
    for load in (lambda: kt.load_model(path), lambda: keras.saving.load_model(path)):
        model, skipped = _load_recording(load)
        assert skipped == []
        assert model.compiled and not model.optimizer.built
        model.fit(TEXTS, LABELS, batch_size=4, verbose=0)  # builds it, as for the model saved
        assert int(model.optimizer.iterations.numpy()) == 3


def test_cli_predict_on_a_model_saved_before_training_is_quiet(bert_preset, tmp_path, capsys):
    from keras_transfer import cli

    path = tmp_path / "m.keras"
    kt.TextClassifier.from_preset(bert_preset, num_classes=2, sequence_length=16).save(path)
    capsys.readouterr()
    _, skipped = _load_recording(lambda: cli.main(["predict", "--model", str(path), "a good film"]))
    assert skipped == []
    captured = capsys.readouterr()
    assert "Skipping variable loading" not in captured.out + captured.err


def test_a_reloaded_untrained_model_still_refuses_an_unfreeze_before_its_first_fit(bert_preset, tmp_path):
    """`compile()` chose the head's rate for the frozen backbone; unfrozen
    after a reload, the model must not train the backbone at that rate."""
    kt.TextClassifier.from_preset(bert_preset, num_classes=2, sequence_length=16).save(tmp_path / "m.keras")
    model = kt.load_model(tmp_path / "m.keras")
    kt.unfreeze(model)
    with raises(ValueError, "unfrozen after `compile()`", "model.compile()"):
        model.fit(TEXTS, LABELS, verbose=0)


def test_a_trained_model_reloads_its_optimizer_state_exactly(bert_preset, tmp_path):
    model = kt.TextClassifier.from_preset(bert_preset, num_classes=2, sequence_length=16)
    model.fit(TEXTS, LABELS, batch_size=4, epochs=2, verbose=0)
    model.save(tmp_path / "m.keras")
    reloaded, skipped = _load_recording(lambda: kt.load_model(tmp_path / "m.keras"))
    assert skipped == []
    assert int(reloaded.optimizer.iterations.numpy()) == 6
    assert len(reloaded.optimizer.variables) == len(model.optimizer.variables) > 1
    for saved, loaded in zip(model.optimizer.variables, reloaded.optimizer.variables):
        np.testing.assert_array_equal(
            keras.ops.convert_to_numpy(loaded), keras.ops.convert_to_numpy(saved), err_msg=saved.path
        )


def test_a_genuine_optimizer_mismatch_still_warns(bert_preset, tmp_path):
    """Trained with the backbone frozen, then unfrozen and saved: the file's
    optimizer state covers the head only, and the reloaded model trains
    more weights. Keras' warning must still say so."""
    model = kt.TextClassifier.from_preset(bert_preset, num_classes=2, sequence_length=16)
    model.fit(TEXTS, LABELS, batch_size=4, verbose=0)
    kt.unfreeze(model)
    model.save(tmp_path / "m.keras")
    _, skipped = _load_recording(lambda: kt.load_model(tmp_path / "m.keras"))
    assert len(skipped) == 1


# --- Data readers given no path -------------------------------------------------------------


@pytest.mark.parametrize(
    "read, name",
    [
        (lambda: kt.datasets.read_conll(None), "path"),
        (lambda: kt.datasets.read_squad(None), "path"),
        (lambda: kt.datasets.multi30k(None), "path"),
        (lambda: kt.datasets.read_parallel(None, "train.de"), "source_path"),
        (lambda: kt.datasets.read_parallel("train.en", None), "target_path"),
        (lambda: kt.datasets.read_csv(None), "path"),
        (lambda: kt.datasets.read_jsonl(None), "path"),
        (lambda: kt.datasets.read_folder(None), "path"),
    ],
    ids=["conll", "squad", "multi30k", "parallel_source", "parallel_target", "csv", "jsonl", "folder"],
)
def test_readers_given_no_path_say_so(read, name):
    """Not Python's "expected str, bytes or os.PathLike object, not NoneType"."""
    with raises(ValueError, f"expected `{name}` to be a str or pathlib.Path", f"{name}=None", "Fix: pass the location"):
        read()
