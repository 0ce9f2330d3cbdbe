"""Round trips: what a user saved comes back unchanged.

Every task, over a BERT-style and a GPT-2-style tiny preset, in a trained
state of its own (frozen head on cached features, `fine_tune`, `unfreeze`,
tuned thresholds, a learned target scale, LoRA, mixed bfloat16), saved
with `model.save` and loaded with `kt.load_model` and with Keras'
`load_model`: the same predictions on raw text, the same weights training,
the same config, `evaluate` giving the same numbers, and a further `fit`
taking the same steps as the original model's (so the optimizer's state
came back). Then the other ways weights travel: `save_weights` into a
freshly built model, checkpoints, `save_to_preset`, and loading under
another global dtype policy.
"""

import h5py
import keras
import keras_hub
import numpy as np
import pytest
from helpers import LABELS, TEXTS, raises

import keras_transfer as kt
from keras_transfer import lora
from keras_transfer.datasets.squad import QAData
from keras_transfer.seq2seq import Seq2SeqPreprocessor
from keras_transfer.tasks.translator import Translator

TARGETS = [8.0, 2.0, 9.0, 3.0, 7.0, 1.0, 6.0, 2.5, 9.5, 4.0]
LABEL_SETS = [["a"], ["b"], ["a", "c"], [], ["c"], ["a", "b"], ["b"], [], ["a"], ["c"]]
PAIRS = list(zip(TEXTS, TEXTS[::-1]))
WORDS = [["one", "good", "film"], ["the", "movie", "two"], ["a", "bad", "plot"], ["fun", "film"]]
TAGS = [["B-PER", "O", "B-LOC"], ["O", "B-LOC", "B-PER"], ["O", "O", "O"], ["O", "B-LOC"]]
CONTEXT = "the film was good and the plot was boring"
QA = QAData(["plot ?", "film ?"], [CONTEXT] * 2, ["boring", "good"])
SOURCES = ["good film", "bad plot", "fun story"]
TRANSLATIONS = ["great movie", "awful story", "good acting"]


def _flat(value):
    """Every number in nested predictions (dicts, lists, arrays, answers)."""
    if isinstance(value, dict):
        return np.concatenate([_flat(v) for k, v in sorted(value.items()) if k != "text"] or [np.zeros(0)])
    if isinstance(value, (list, tuple)):
        return np.concatenate([_flat(v) for v in value] or [np.zeros(0)])
    if isinstance(value, str):
        return np.zeros(0)
    return np.ravel(np.asarray(value, dtype="float64"))


# Per task: a trained model, its data, and what "the same predictions" means.
def _classifier(preset):
    model = kt.TextClassifier.from_preset(
        preset, label_names=["neg", "pos"], sequence_length=24, truncation="head+tail", pooling="mean", dropout=0.3
    )
    model.fit(TEXTS, LABELS, epochs=1, batch_size=4, verbose=0)  # frozen: cached features
    return model, (TEXTS, LABELS), lambda m: (m.predict(TEXTS, verbose=0), m.predict_labels(TEXTS))


def _pairs(preset):
    model = kt.TextPairClassifier.from_preset(preset, label_names=["different", "same"], sequence_length=24)
    y = ["same", "different"] * 5
    model.fine_tune(PAIRS, y, head_epochs=1, epochs=1, unfreeze=1, batch_size=4, verbose=0)
    return model, (PAIRS, y), lambda m: m.predict(PAIRS, verbose=0)


def _multi_label(preset):
    model = kt.MultiLabelClassifier.from_preset(preset, label_names=["a", "b", "c"], sequence_length=16)
    kt.unfreeze(model, top=1)
    model.compile(learning_rate=1e-3)
    model.fit(TEXTS, LABEL_SETS, epochs=1, batch_size=4, verbose=0)
    model.tune_thresholds(TEXTS, LABEL_SETS)
    return model, (TEXTS, LABEL_SETS), lambda m: (m.predict(TEXTS, verbose=0), m.thresholds, str(m.predict_labels(TEXTS)))


def _regressor(preset):
    model = kt.TextRegressor.from_preset(preset, sequence_length=16, hidden_units=(8,))
    model.fit(TEXTS, TARGETS, epochs=1, batch_size=4, verbose=0)
    return model, (TEXTS, TARGETS), lambda m: (m.predict(TEXTS, verbose=0), m.target_mean, m.target_std)


def _tagger(preset):
    model = kt.TokenClassifier.from_preset(
        preset, tag_names=["O", "B-PER", "I-PER", "B-LOC", "I-LOC"], sequence_length=16, freeze=1, dropout=0.2
    )
    model.fit(WORDS, TAGS, epochs=1, batch_size=2, verbose=0)
    return model, (WORDS, TAGS), lambda m: (str(m.predict_tags(WORDS)), m.predict_entities(["one went to the film"]))


def _reader(preset):
    model = kt.QuestionAnswerer.from_preset(preset, sequence_length=16, stride=2, max_question_length=4, freeze=False)
    model.fit(QA, epochs=1, batch_size=2, verbose=0)
    return model, (QA, None), lambda m: (m.answer(QA), str(m.answer(QA)))


def _translator(preset):
    model = Translator.from_preset(preset, prompt="{source} =", source_length=12, target_length=8)
    model.compile(learning_rate=3e-2, warmup=0.0)
    model.fit(SOURCES, TRANSLATIONS, batch_size=2, epochs=1, seed=0, verbose=0)
    return model, (SOURCES, TRANSLATIONS), lambda m: str(m.translate(SOURCES))


TASKS = {
    "classifier": _classifier,
    "pairs": _pairs,
    "multi_label": _multi_label,
    "regressor": _regressor,
    "tagger": _tagger,
    "reader": _reader,
}


def _config(model):
    config = model.get_config()
    config.pop("backbone")
    config.pop("preprocessor")
    return config


def _trainable(model):
    return sorted(v.path for v in model.trainable_weights)


def _optimizer_state(model):
    return {v.path: np.array(v.numpy()) for v in model.optimizer.variables}


def _evaluate(model, x, y):
    return model.evaluate(x, y, batch_size=4, verbose=0, return_dict=True)


def _one_more_epoch(model, x, y):
    keras.utils.set_random_seed(7)
    model.fit(x, y, epochs=1, batch_size=4, shuffle=False, verbose=0)


def _assert_same(after, before, atol=0.0):
    """Predictions equal: texts exactly, numbers within `atol`."""
    after, before = (after, before) if isinstance(before, tuple) else ((after,), (before,))
    for a, b in zip(after, before):
        if isinstance(b, str):
            assert a == b
        else:
            np.testing.assert_allclose(_flat(a), _flat(b), rtol=0, atol=atol)


def check_round_trip(model, x, y, predictions, path, loader):
    """Saves `model`, loads it with `loader` and checks everything came back."""
    expected = predictions(model)
    trainable, config = _trainable(model), _config(model)
    scores = _evaluate(model, x, y)
    preprocessing = model.preprocessor.get_config()
    model.save(path)
    loaded = loader(path)
    assert type(loaded) is type(model)
    _assert_same(predictions(loaded), expected)
    assert _trainable(loaded) == trainable
    assert _config(loaded) == config
    assert loaded.preprocessor.get_config() == preprocessing
    assert type(loaded.optimizer) is type(model.optimizer)
    assert loaded.optimizer.get_config() | {"name": None} == model.optimizer.get_config() | {"name": None}
    state, loaded_state = _optimizer_state(model), _optimizer_state(loaded)
    assert loaded_state.keys() == state.keys()
    for name in state:
        np.testing.assert_array_equal(loaded_state[name], state[name], err_msg=name)
    assert _evaluate(loaded, x, y) == pytest.approx(scores, abs=1e-6)
    # Training goes on from the same point: one more epoch each, same result.
    _one_more_epoch(model, x, y)
    _one_more_epoch(loaded, x, y)
    assert _evaluate(loaded, x, y) == pytest.approx(_evaluate(model, x, y), abs=1e-5)
    return loaded


LOADERS = {"kt": kt.load_model, "keras": keras.models.load_model}


@pytest.mark.parametrize("loader", sorted(LOADERS))
@pytest.mark.parametrize("task", sorted(TASKS))
def test_every_task_comes_back_the_same(task, loader, preset, tmp_path):
    model, (x, y), predictions = TASKS[task](preset)
    check_round_trip(model, x, y, predictions, tmp_path / "model.keras", LOADERS[loader])


@pytest.mark.parametrize("loader", sorted(LOADERS))
def test_decoder_only_translator_comes_back_the_same(loader, gpt2_preset, tmp_path):
    model, (x, y), predictions = _translator(gpt2_preset)
    check_round_trip(model, x, y, predictions, tmp_path / "model.keras", LOADERS[loader])


def test_encoder_decoder_translator_with_a_frozen_encoder_comes_back_the_same(tmp_path):
    import tokenizers

    bpe = tokenizers.ByteLevelBPETokenizer()
    bpe.train_from_iterator(
        SOURCES + TRANSLATIONS, vocab_size=300, min_frequency=1, special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
    )
    bpe.save_model(str(tmp_path))
    merges = [line for line in (tmp_path / "merges.txt").read_text().split("\n")[1:] if line]
    tokenizer = keras_hub.models.BartTokenizer(vocabulary=bpe.get_vocab(), merges=merges)
    keras.utils.set_random_seed(0)
    backbone = keras_hub.models.BartBackbone(
        vocabulary_size=tokenizer.vocabulary_size(), num_layers=1, num_heads=2, hidden_dim=16,
        intermediate_dim=32, dropout=0.0, max_sequence_length=32,
    )
    backbone.save_to_preset(str(tmp_path / "bart"))
    tokenizer.save_to_preset(str(tmp_path / "bart"))
    model = Translator.from_preset(str(tmp_path / "bart"), freeze="encoder", source_length=12, target_length=10)
    model.fit(SOURCES, TRANSLATIONS, batch_size=3, epochs=1, seed=0, verbose=0)
    loaded = check_round_trip(
        model, SOURCES, TRANSLATIONS, lambda m: str(m.translate(SOURCES)), tmp_path / "m.keras", kt.load_model
    )
    assert not any("encoder" in v.path and "decoder" not in v.path for v in loaded.trainable_weights)


@pytest.mark.parametrize("loader", sorted(LOADERS))
def test_lora_and_mixed_bfloat16_models_come_back_the_same(loader, bert_preset, tmp_path):
    model = kt.TextClassifier.from_preset(bert_preset, num_classes=2, sequence_length=16, dtype="mixed_bfloat16")
    model.enable_lora(rank=2)
    model.compile(learning_rate=1e-2)
    model.fit(TEXTS, LABELS, epochs=1, batch_size=4, verbose=0)
    expected = model.predict(TEXTS, verbose=0)
    model.save(tmp_path / "lora.keras")
    loaded = LOADERS[loader](tmp_path / "lora.keras")
    # Keras saves the adapters merged into the kernel: the same function,
    # rounded once more in bfloat16 (a last-bit difference at most).
    np.testing.assert_allclose(loaded.predict(TEXTS, verbose=0), expected, rtol=1e-2, atol=1e-3)
    assert lora.lora_config(loaded) == lora.lora_config(model)
    assert _trainable(loaded) == _trainable(model)
    policies = lambda m: [(type(layer).__name__, layer.dtype_policy.name) for layer in m.backbone._flatten_layers()]  # noqa: E731
    assert policies(loaded) == policies(model)
    assert {str(v.dtype) for v in loaded.weights} == {str(v.dtype) for v in model.weights}


# --- Weights without a config ---------------------------------------------------


def test_regressor_weights_keep_the_target_scale_in_a_fresh_model(bert_preset, tmp_path):
    model, _, _ = _regressor(bert_preset)
    model.save_weights(tmp_path / "r.weights.h5")
    fresh = kt.TextRegressor.from_preset(bert_preset, sequence_length=16, hidden_units=(8,))
    fresh.load_weights(tmp_path / "r.weights.h5")
    # Predictions in the targets' units, not standardised ones.
    np.testing.assert_array_equal(fresh.predict(TEXTS, verbose=0), model.predict(TEXTS, verbose=0))
    assert (fresh.target_mean, fresh.target_std) == (model.target_mean, model.target_std)
    # Its next fit keeps that scale rather than learning another from new targets.
    fresh.fit(TEXTS, [0.0, 1.0] * 5, epochs=1, verbose=0)
    assert fresh.target_mean == model.target_mean
    # And a later save of the fresh model keeps it too.
    fresh.save(tmp_path / "fresh.keras")
    assert kt.load_model(tmp_path / "fresh.keras").target_mean == model.target_mean


def test_regressor_weights_into_a_model_built_without_standardising(bert_preset, tmp_path):
    model, _, _ = _regressor(bert_preset)
    model.save_weights(tmp_path / "r.weights.h5")
    plain = kt.TextRegressor.from_preset(bert_preset, sequence_length=16, hidden_units=(8,), standardize=False)
    plain.load_weights(tmp_path / "r.weights.h5")
    np.testing.assert_array_equal(plain.predict(TEXTS, verbose=0), model.predict(TEXTS, verbose=0))
    assert plain.standardize and plain.target_mean == model.target_mean
    # The other way: a regressor that never standardised sets an identity scale.
    plain = kt.TextRegressor.from_preset(bert_preset, sequence_length=16, standardize=False)
    plain.fit(TEXTS, TARGETS, epochs=1, verbose=0)
    plain.save_weights(tmp_path / "plain.weights.h5")
    other = kt.TextRegressor.from_preset(bert_preset, sequence_length=16)
    other.fit(TEXTS, [100.0, 200.0] * 5, epochs=1, verbose=0)  # learns a scale of its own
    other.load_weights(tmp_path / "plain.weights.h5")
    np.testing.assert_array_equal(other.predict(TEXTS, verbose=0), plain.predict(TEXTS, verbose=0))


def test_an_unfitted_regressors_weights_leave_the_scale_to_be_learned(bert_preset, tmp_path):
    kt.TextRegressor.from_preset(bert_preset, sequence_length=16).save_weights(tmp_path / "u.weights.h5")
    with h5py.File(tmp_path / "u.weights.h5") as file:
        assert "target_mean" not in file.get("vars", {})
    fresh = kt.TextRegressor.from_preset(bert_preset, sequence_length=16)
    fresh.load_weights(tmp_path / "u.weights.h5")
    assert fresh.target_mean is None
    fresh.fit(TEXTS, TARGETS, epochs=1, verbose=0)
    assert fresh.target_mean == pytest.approx([np.mean(TARGETS)])


def test_regressor_files_saved_before_the_scale_was_in_the_weights_still_load(bert_preset, tmp_path, monkeypatch):
    model, _, _ = _regressor(bert_preset)
    with monkeypatch.context() as patch:  # the weights as earlier versions wrote them
        patch.setattr(kt.TextRegressor, "save_own_variables", keras.Model.save_own_variables)
        model.save(tmp_path / "old.keras")
    loaded = kt.load_model(tmp_path / "old.keras")
    np.testing.assert_array_equal(loaded.predict(TEXTS, verbose=0), model.predict(TEXTS, verbose=0))
    assert loaded.target_mean == model.target_mean


def test_regressor_weights_for_another_number_of_outputs_are_refused(bert_preset, tmp_path):
    model, _, _ = _regressor(bert_preset)
    model.save_weights(tmp_path / "r.weights.h5")
    two = kt.TextRegressor.from_preset(bert_preset, sequence_length=16, hidden_units=(8,), num_outputs=2)
    with raises(ValueError, "regressor with 1 outputs", "num_outputs=1"):
        two.load_weights(tmp_path / "r.weights.h5")


@pytest.mark.parametrize("task", ["classifier", "multi_label", "tagger"])
def test_weights_and_checkpoints_load_into_a_freshly_built_model(task, bert_preset, tmp_path):
    model, (x, y), predictions = TASKS[task](bert_preset)
    checkpoint = keras.callbacks.ModelCheckpoint(tmp_path / "ck.weights.h5", save_weights_only=True)
    model.fit(x, y, epochs=1, batch_size=4, verbose=0, callbacks=[checkpoint])
    fresh, _, _ = TASKS[task](bert_preset)
    fresh.load_weights(tmp_path / "ck.weights.h5")
    # The weights' outputs (tuned thresholds are config: `model.save` keeps them).
    _assert_same(predictions(fresh)[0], predictions(model)[0])


def test_model_checkpoint_and_fine_tune_checkpoint_files_reload(bert_preset, tmp_path):
    model = kt.TextClassifier.from_preset(bert_preset, label_names=["neg", "pos"], sequence_length=16)
    checkpoint = keras.callbacks.ModelCheckpoint(tmp_path / "last.keras")
    model.fit(TEXTS, LABELS, epochs=2, batch_size=4, verbose=0, callbacks=[checkpoint])
    loaded = kt.load_model(tmp_path / "last.keras")
    np.testing.assert_array_equal(loaded.predict(TEXTS, verbose=0), model.predict(TEXTS, verbose=0))
    assert loaded.label_names == ["neg", "pos"]
    model.fine_tune(
        TEXTS, LABELS, validation_data=(TEXTS, LABELS), head_epochs=1, epochs=1, unfreeze=1,
        checkpoint=tmp_path / "best.keras", batch_size=4, verbose=0,
    )
    loaded = kt.load_model(tmp_path / "best.keras")
    np.testing.assert_array_equal(loaded.predict(TEXTS, verbose=0), model.predict(TEXTS, verbose=0))
    assert _trainable(loaded) == _trainable(model)


def test_a_saved_backbone_preset_keeps_weights_and_frozen_blocks(preset, tmp_path):
    model = kt.TextClassifier.from_preset(preset, num_classes=2, sequence_length=16, freeze=1)
    model.fit(TEXTS, LABELS, epochs=1, batch_size=4, verbose=0)
    model.backbone.save_to_preset(str(tmp_path / "tuned"))
    model.preprocessor.tokenizer.save_to_preset(str(tmp_path / "tuned"))
    backbone, preprocessor = kt.load_backbone(str(tmp_path / "tuned"), sequence_length=16)
    def features(backbone, inputs):
        outputs = backbone(inputs)
        return keras.ops.convert_to_numpy(outputs["sequence_output"] if isinstance(outputs, dict) else outputs)

    np.testing.assert_array_equal(features(backbone, preprocessor(TEXTS)), features(model.backbone, model.preprocessor(TEXTS)))
    assert _trainable(backbone) == _trainable(model.backbone)


# --- Saving over files, files for other loaders ----------------------------------------


def test_saving_over_another_tasks_file_replaces_it_whole(bert_preset, tmp_path):
    regressor, _, _ = _regressor(bert_preset)
    regressor.save(tmp_path / "model.keras")
    classifier = kt.TextClassifier.from_preset(bert_preset, num_classes=3, sequence_length=16, compile=False)
    classifier.save(tmp_path / "model.keras")
    loaded = kt.load_model(tmp_path / "model.keras")
    assert type(loaded) is kt.TextClassifier and loaded.num_classes == 3
    np.testing.assert_array_equal(loaded.predict(TEXTS, verbose=0), classifier.predict(TEXTS, verbose=0))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.keras"]


@pytest.mark.parametrize(
    "load",
    [kt.load_backbone, kt.TextClassifier.from_preset, lambda path: Translator.from_preset(path)],
    ids=["load_backbone", "TextClassifier.from_preset", "Translator.from_preset"],
)
def test_a_saved_model_given_as_a_preset_names_its_loader(load, bert_preset, tmp_path):
    model = kt.TextClassifier.from_preset(bert_preset, num_classes=2, sequence_length=16)
    model.save(tmp_path / "model.keras")
    model.save_weights(tmp_path / "model.weights.h5")
    with raises(FileNotFoundError, "No preset directory", "saved model", "kt.load_model("):
        load(str(tmp_path / "model.keras"))
    with raises(FileNotFoundError, "No preset directory", "weights file", "model.load_weights("):
        load(str(tmp_path / "model.weights.h5"))


def test_load_model_given_a_weights_file_says_to_load_weights(bert_preset, tmp_path):
    model = kt.TextClassifier.from_preset(bert_preset, num_classes=2, sequence_length=16)
    model.save_weights(tmp_path / "model.weights.h5")
    with raises(ValueError, "`.keras` files", "model.load_weights(path)"):
        kt.load_model(tmp_path / "model.weights.h5")


# --- Another global dtype policy at load time ---------------------------------------


@pytest.fixture
def global_policy():
    """Sets Keras' global dtype policy for a test and puts it back after."""
    before = keras.config.dtype_policy()
    yield keras.config.set_dtype_policy
    keras.config.set_dtype_policy(before)


@pytest.mark.parametrize("saved, loading", [("float32", "mixed_float16"), ("mixed_float16", "float32")])
@pytest.mark.parametrize("loader", sorted(LOADERS))
def test_a_global_policy_at_load_time_keeps_the_optimizer_and_its_state(
    saved, loading, loader, bert_preset, tmp_path, global_policy
):
    global_policy(saved)
    model = kt.TextClassifier.from_preset(bert_preset, num_classes=2, sequence_length=16)
    model.fit(TEXTS, LABELS, epochs=1, batch_size=4, verbose=0)
    model.save(tmp_path / "model.keras")
    global_policy(loading)
    loaded = LOADERS[loader](tmp_path / "model.keras")
    assert loaded.dtype_policy.name == model.dtype_policy.name == saved
    # Under "mixed_float16" Keras wraps the optimizer in a LossScaleOptimizer:
    # a reload must not add or drop it, or the saved Adam state is skipped.
    assert type(loaded.optimizer) is type(model.optimizer)
    state, loaded_state = _optimizer_state(model), _optimizer_state(loaded)
    assert loaded_state.keys() == state.keys()
    for name in state:
        np.testing.assert_array_equal(loaded_state[name], state[name], err_msg=name)
    np.testing.assert_array_equal(loaded.predict(TEXTS, verbose=0), model.predict(TEXTS, verbose=0))
