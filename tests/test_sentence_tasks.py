"""Tests for the sentence-level tasks beside TextClassifier:
kt.TextPairClassifier, kt.MultiLabelClassifier, kt.TextRegressor
(keras_transfer/tasks/pair_classifier.py, multi_label.py, regressor.py),
the shared head builder and the `report` methods."""

import pathlib
import subprocess
import sys

import keras
import numpy as np
import pytest
from helpers import LABELS, TEXTS, changed, raises, snapshot

import keras_transfer as kt
from keras_transfer.datasets import TextData, from_lists
from keras_transfer.tasks.multi_label import _best_threshold

ROOT = pathlib.Path(__file__).resolve().parents[1]
PAIRS = list(zip(TEXTS, TEXTS[::-1]))
NAMES = ["pos", "neg", "long"]
# One label set per text: its sentiment, and "long" for texts of 5+ words.
LABEL_SETS = [
    (["pos"] if label else ["neg"]) + (["long"] if len(text.split()) >= 5 else [])
    for text, label in zip(TEXTS, LABELS)
]
MULTI_HOT = np.array([[name in labels for name in NAMES] for labels in LABEL_SETS], dtype="float32")
TARGETS = np.array([8.0, 2.0, 9.0, 3.0, 7.0, 1.0, 6.0, 2.5, 9.5, 4.0], dtype="float32")


def fit(model, x, y, **kwargs):
    kwargs.setdefault("batch_size", 4)
    kwargs.setdefault("verbose", 0)
    return model.fit(x, y, **kwargs)


def pair_model(preset, **kwargs):
    kwargs.setdefault("num_classes", 2)
    return kt.TextPairClassifier.from_preset(preset, sequence_length=32, **kwargs)


def multi_model(preset, **kwargs):
    kwargs.setdefault("label_names", NAMES)
    return kt.MultiLabelClassifier.from_preset(preset, sequence_length=32, **kwargs)


def regressor(preset, **kwargs):
    return kt.TextRegressor.from_preset(preset, sequence_length=32, **kwargs)


@pytest.fixture(scope="module")
def bert_backbone(bert_preset):
    """A tiny BERT and its preprocessor, for tests of constructor errors."""
    return kt.load_backbone(bert_preset, sequence_length=32)


@pytest.fixture(scope="module")
def error_models(bert_preset):
    """One untrained model of each task, for tests that only expect errors."""
    return {"pairs": pair_model(bert_preset), "multi": multi_model(bert_preset), "regression": regressor(bert_preset)}


def assert_same_predictions(model, reloaded, x):
    np.testing.assert_allclose(reloaded.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6)


# ------------------------------------------------------------ the shared head


def test_every_task_has_the_same_head_layers(bert_preset):
    for model in (
        kt.TextClassifier.from_preset(bert_preset, num_classes=2, hidden_units=(8,)),
        pair_model(bert_preset, hidden_units=(8,)),
        multi_model(bert_preset, hidden_units=(8,)),
        regressor(bert_preset, hidden_units=(8,)),
    ):
        names = [layer.name for layer in model.layers]
        head = names[names.index("pooling") :]
        assert head[:4] == ["pooling", "head_dropout_0", "head_dense_0", "output_dropout"], type(model)
        assert model.backbone.trainable_weights == []
        assert model.get_layer("head_dense_0").units == 8


@pytest.mark.parametrize(
    "cls, kwargs",
    [
        (kt.TextPairClassifier, {"num_classes": 2}),
        (kt.MultiLabelClassifier, {"num_classes": 3}),
        (kt.TextRegressor, {}),
    ],
)
@pytest.mark.parametrize(
    "head, fragments",
    [
        ({"dropout": 1.5}, ["dropout"]),
        ({"hidden_units": (0,)}, ["hidden_units"]),
        ({"pooling": "median"}, ["median"]),
    ],
)
def test_bad_head_arguments(bert_backbone, cls, kwargs, head, fragments):
    with raises(ValueError, *fragments):
        cls(bert_backbone[0], **kwargs, **head)


@pytest.mark.parametrize("cls", [kt.TextPairClassifier, kt.MultiLabelClassifier, kt.TextRegressor])
def test_from_preset_checks_freeze_first(cls):
    # Checked before anything is loaded: the preset does not even exist.
    with raises(ValueError, "freeze='yes'"):
        cls.from_preset("/no/such/preset", freeze="yes")


def test_pooled_pooling_needs_a_pooler(gpt2_preset):
    for cls, kwargs in ((kt.MultiLabelClassifier, {"num_classes": 2}), (kt.TextRegressor, {})):
        with raises(ValueError, "pooling='pooled'", "has none"):
            cls.from_preset(gpt2_preset, pooling="pooled", **kwargs)


# ------------------------------------------------------------ TextPairClassifier


@pytest.mark.parametrize("cache_features", ["auto", False])
def test_pair_fit_trains_the_head_only(bert_preset, cache_features):
    model = pair_model(bert_preset)
    backbone = snapshot(model.backbone)
    head = snapshot(model.get_layer("logits"))
    history = fit(model, PAIRS, LABELS, epochs=2, cache_features=cache_features)
    assert np.isfinite(history.history["loss"]).all() and "accuracy" in history.history
    assert changed(backbone, model.backbone) == set()
    assert changed(head, model.get_layer("logits")) == set(head)
    assert model.predict(PAIRS, verbose=0).shape == (len(PAIRS), 2)


def test_pair_predict_reads_both_texts_in_order(bert_preset):
    model = pair_model(bert_preset)
    straight = model.predict(PAIRS, batch_size=3, verbose=0)
    one_by_one = np.concatenate(
        [keras.ops.convert_to_numpy(model(model.preprocessor([pair]), training=False)) for pair in PAIRS]
    )
    np.testing.assert_allclose(straight, one_by_one, atol=1e-5)
    # The second text matters, and so does which text comes first.
    swapped = model.predict([(b, a) for a, b in PAIRS], verbose=0)
    other_b = model.predict([(a, "fun") for a, _ in PAIRS], verbose=0)
    # (The fresh head's small weights make the logits differ by ~1e-5;
    # float rounding is ~1e-7.)
    assert not np.allclose(straight, swapped, rtol=0, atol=2e-6)
    assert not np.allclose(straight, other_b, rtol=0, atol=2e-6)


def test_pairs_are_packed_the_family_way(bert_preset, gpt2_preset):
    bert = pair_model(bert_preset).preprocessor
    batch = bert([("good film", "bad plot")])
    tokenizer = bert.tokenizer
    ids = batch["token_ids"][0].tolist()
    assert ids[0] == tokenizer.cls_token_id and ids.count(tokenizer.sep_token_id) == 2
    assert batch["segment_ids"][0].tolist() == [0, 0, 0, 0, 1, 1, 1]
    gpt2 = pair_model(gpt2_preset).preprocessor
    batch = gpt2([("good film", "bad plot")])
    assert "segment_ids" not in batch
    assert batch["token_ids"][0].tolist().count(gpt2.tokenizer.end_token_id) >= 2


def test_pair_input_forms_agree(bert_preset):
    model = pair_model(bert_preset, label_names=["different", "same"])
    expected = model.predict(PAIRS, verbose=0)
    columns = ([a for a, _ in PAIRS], [b for _, b in PAIRS])
    np.testing.assert_allclose(model.predict(columns, verbose=0), expected, atol=1e-6)
    np.testing.assert_allclose(model.predict([list(p) for p in PAIRS], verbose=0), expected, atol=1e-6)
    data = from_lists(PAIRS, ["same" if y else "different" for y in LABELS])
    np.testing.assert_allclose(model.predict(data, verbose=0), expected, atol=1e-6)
    by_list = model.evaluate(PAIRS, LABELS, return_dict=True, verbose=0)
    by_columns = model.evaluate(columns, LABELS, return_dict=True, verbose=0)
    by_data = model.evaluate(data, return_dict=True, verbose=0)
    assert by_list["loss"] == pytest.approx(by_columns["loss"]) == pytest.approx(by_data["loss"], rel=1e-5)
    history = model.fit(data, validation_data=(columns, LABELS), epochs=1, verbose=0)
    assert "val_accuracy" in history.history


def test_pair_data_from_csv(bert_preset, tmp_path):
    path = tmp_path / "pairs.csv"
    rows = ["premise,hypothesis,label"] + [f"{a},{b},{'same' if y else 'different'}" for (a, b), y in zip(PAIRS, LABELS)]
    path.write_text("\n".join(row.replace(" , ", " ") for row in rows) + "\n")
    data = kt.datasets.read_csv(path, text_column=("premise", "hypothesis"), label_column="label")
    model = pair_model(bert_preset, label_names=["different", "same"])
    history = model.fit(data, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"]).all()


@pytest.mark.parametrize("method", ["fit", "evaluate", "predict", "report"])
@pytest.mark.parametrize(
    "x, fragments",
    [
        (TEXTS, ["`x[0]` is a single text", "(text_a, text_b) pairs"]),
        (PAIRS[:3] + ["fun"], ["`x[3]` is a single text"]),
        ("good film", ["single string"]),
        (TextData(TEXTS, LABELS), ["TextData of single texts"]),
        ((TEXTS[:3], TEXTS[:2]), ["different lengths (3 and 2)"]),
    ],
)
def test_pair_model_refuses_single_texts(error_models, method, x, fragments):
    model = error_models["pairs"]
    y = None if isinstance(x, TextData) or method == "predict" else LABELS[: len(x)]
    call = getattr(model, method)
    with raises(ValueError, *fragments):
        call(x) if y is None else call(x, y)


def test_text_classifier_still_reads_pairs(bert_preset):
    model = kt.TextClassifier.from_preset(bert_preset, num_classes=2, sequence_length=32)
    pairs = pair_model(bert_preset)
    pairs.set_weights(model.get_weights())
    np.testing.assert_allclose(model.predict(PAIRS, verbose=0), pairs.predict(PAIRS, verbose=0), atol=1e-6)


@pytest.mark.parametrize("truncation", ["head", "tail"])
def test_pair_truncation_is_longest_first(bert_preset, truncation):
    model = kt.TextPairClassifier.from_preset(bert_preset, num_classes=2, sequence_length=12, truncation=truncation)
    assert model.preprocessor.truncation == truncation
    long = "one two three four five six seven eight nine ten"
    tokens, segments = model.preprocessor.tokenize([(long, "good film")])[0]
    assert len(tokens) == 12
    # 9 tokens of budget: the short text is kept whole, the long one gives
    # up 3 of its 10 words, from the end or the start as `truncation` says.
    assert segments.tolist() == [0] * 9 + [1] * 3
    vocabulary = model.preprocessor.tokenizer.get_vocabulary()
    kept = [vocabulary[i] for i in tokens[1:8]]
    assert kept == (long.split()[:7] if truncation == "head" else long.split()[-7:])
    # Two long texts share the budget: 5 and 4 tokens (the odd one to the
    # first text, as KerasHub's packer and HF's `longest_first` do).
    tokens, segments = model.preprocessor.tokenize([(long, long)])[0]
    assert segments.tolist() == [0] * 7 + [1] * 5


def test_pair_truncation_must_be_known(bert_preset):
    with raises(ValueError, "Unknown truncation 'longest'"):
        kt.TextPairClassifier.from_preset(bert_preset, num_classes=2, truncation="longest")


def test_pair_save_and_load(preset, tmp_path):
    model = pair_model(preset, label_names=["different", "same"])
    fit(model, PAIRS, ["same" if y else "different" for y in LABELS])
    model.save(tmp_path / "pairs.keras")
    reloaded = kt.load_model(tmp_path / "pairs.keras")
    assert type(reloaded) is kt.TextPairClassifier
    assert reloaded.get_config() == model.get_config()
    assert_same_predictions(model, reloaded, PAIRS)
    assert reloaded.predict_labels(PAIRS, verbose=0) == model.predict_labels(PAIRS, verbose=0)
    assert reloaded.backbone.trainable_weights == []
    with raises(ValueError, "single text"):
        reloaded.predict(TEXTS)


# ------------------------------------------------------------ reports on a model


def test_classifier_report_matches_evaluate(bert_preset, tmp_path):
    model = kt.TextClassifier.from_preset(bert_preset, label_names=["neg", "pos"], sequence_length=32)
    fit(model, TEXTS, LABELS, epochs=2)
    report = model.report(TEXTS, LABELS, batch_size=4, verbose=0)
    assert isinstance(report, kt.metrics.ClassificationReport)
    accuracy = model.evaluate(TEXTS, LABELS, return_dict=True, verbose=0)["accuracy"]
    assert report.accuracy == pytest.approx(accuracy)
    predicted = model.predict(TEXTS, verbose=0).argmax(axis=-1)
    expected = kt.metrics.confusion_matrix(LABELS, predicted, num_classes=2)
    np.testing.assert_array_equal(report.confusion_matrix, expected)
    assert report.label_names == ["neg", "pos"]
    names = ["pos" if y else "neg" for y in LABELS]
    by_names = model.report(TEXTS, names, verbose=0)
    by_data = model.report(from_lists(TEXTS, names), verbose=0)
    np.testing.assert_array_equal(by_names.confusion_matrix, expected)
    np.testing.assert_array_equal(by_data.confusion_matrix, expected)
    figure = report.plot_confusion_matrix(tmp_path / "cm.png")
    assert (tmp_path / "cm.png").stat().st_size > 1000 and figure.axes
    with raises(ValueError, "needs the true labels"):
        model.report(TEXTS)
    with raises(ValueError, "already holds its labels"):
        model.report(from_lists(TEXTS, LABELS), LABELS)


def test_pair_report(bert_preset):
    model = pair_model(bert_preset)
    report = model.report(([a for a, _ in PAIRS], [b for _, b in PAIRS]), LABELS, verbose=0)
    predicted = model.predict(PAIRS, verbose=0).argmax(axis=-1)
    assert report.accuracy == pytest.approx(np.mean(predicted == np.array(LABELS)))


# ------------------------------------------------------------ MultiLabelClassifier


@pytest.mark.parametrize("cache_features", ["auto", False])
def test_multi_label_fit_trains_the_head_only(bert_preset, cache_features):
    model = multi_model(bert_preset)
    backbone = snapshot(model.backbone)
    head = snapshot(model.get_layer("logits"))
    history = fit(model, TEXTS, LABEL_SETS, epochs=2, cache_features=cache_features)
    assert set(history.history) == {"loss", "micro_f1", "macro_f1"}
    assert np.isfinite(history.history["loss"]).all()
    assert changed(backbone, model.backbone) == set()
    assert changed(head, model.get_layer("logits")) == set(head)


def test_multi_label_outputs_are_sigmoid_probabilities(bert_preset):
    model = multi_model(bert_preset)
    probabilities = model.predict(TEXTS, verbose=0)
    assert probabilities.shape == (len(TEXTS), 3)
    logits = keras.Model(model.inputs, model.get_layer("logits").output).predict(model.preprocessor(TEXTS), verbose=0)
    np.testing.assert_allclose(probabilities, 1 / (1 + np.exp(-logits)), atol=1e-6)
    assert model.loss.name == "binary_crossentropy"
    # The loss is mean binary cross-entropy of these probabilities.
    p = np.clip(probabilities.astype("float64"), 1e-7, 1 - 1e-7)
    expected = -np.mean(MULTI_HOT * np.log(p) + (1 - MULTI_HOT) * np.log(1 - p))
    loss = model.evaluate(TEXTS, MULTI_HOT, return_dict=True, verbose=0)["loss"]
    assert loss == pytest.approx(expected, rel=1e-4)


def test_multi_label_names_and_multi_hot_are_the_same_labels(bert_preset):
    model = multi_model(bert_preset)
    by_names = model.evaluate(TEXTS, LABEL_SETS, return_dict=True, verbose=0)
    for labels in (MULTI_HOT, MULTI_HOT.astype(bool), MULTI_HOT.astype(int).tolist(), [tuple(s) for s in LABEL_SETS]):
        assert model.evaluate(TEXTS, labels, return_dict=True, verbose=0) == pytest.approx(by_names)
    # A TextData names its columns; another order is mapped to the model's.
    order = [2, 0, 1]
    data = TextData(TEXTS, MULTI_HOT[:, order], [NAMES[i] for i in order])
    assert model.evaluate(data, return_dict=True, verbose=0) == pytest.approx(by_names)


def test_multi_label_metrics_match_the_report_at_each_threshold(bert_preset):
    thresholds = [0.3, 0.5, 0.7]
    model = multi_model(bert_preset, threshold=thresholds)
    fit(model, TEXTS, LABEL_SETS, epochs=3)
    probabilities = model.predict(TEXTS, verbose=0)
    # Straddle the thresholds: move them to cut between this model's answers.
    thresholds = [float(np.median(probabilities[:, j])) for j in range(3)]
    trained, model = model, multi_model(bert_preset, threshold=thresholds)
    model.set_weights(trained.get_weights())
    metrics = model.evaluate(TEXTS, LABEL_SETS, return_dict=True, verbose=0)
    report = model.report(TEXTS, LABEL_SETS, verbose=0)
    decisions = model.predict(TEXTS, verbose=0) > np.array(thresholds)
    hand = kt.metrics.multilabel_report(MULTI_HOT, decisions)
    assert report.micro_f1 == pytest.approx(hand.micro_f1) == pytest.approx(metrics["micro_f1"], abs=1e-5)
    assert report.macro_f1 == pytest.approx(hand.macro_f1) == pytest.approx(metrics["macro_f1"], abs=1e-5)
    np.testing.assert_allclose(report.thresholds, thresholds)


def test_predict_labels_uses_each_labels_threshold(bert_preset):
    model = multi_model(bert_preset)
    probabilities = model.predict(TEXTS, verbose=0)
    low = float(probabilities[:, 0].min()) / 2  # "pos" always above its threshold
    high = (1 + float(probabilities[:, 1].max())) / 2  # "neg" never
    model.threshold = [low, high, 0.5]
    labels = model.predict_labels(TEXTS, verbose=0)
    for row, names in zip(probabilities, labels):
        assert names[0] == "pos" and "neg" not in names
        assert ("long" in names) == (row[2] > 0.5)
    # Setting the threshold also moves the compiled F1 metrics.
    metrics = model.evaluate(TEXTS, LABEL_SETS, return_dict=True, verbose=0)
    assert metrics["micro_f1"] == pytest.approx(model.report(TEXTS, LABEL_SETS, verbose=0).micro_f1, abs=1e-5)
    assert model.get_config()["threshold"] == [low, high, 0.5]
    with raises(ValueError, "every threshold in (0, 1)"):
        model.threshold = 1.5
    assert model.threshold == [low, high, 0.5]
    unnamed = kt.MultiLabelClassifier.from_preset(bert_preset, num_classes=3, threshold=[low, high, 0.5])
    unnamed.set_weights(model.get_weights())
    assert unnamed.predict_labels(TEXTS, verbose=0) == [[NAMES.index(n) for n in names] for names in labels]


def test_best_threshold_by_hand():
    # Sorted by probability: .9 (yes) .8 (no) .6 (yes) .2 (no). Cutting
    # below .6 gives tp=2, fp=1: F1 = 4/5, the best.
    probabilities = np.array([0.2, 0.9, 0.6, 0.8])
    truth = np.array([0, 1, 1, 0])
    assert _best_threshold(probabilities, truth) == pytest.approx(0.4)
    # Only the top one is a positive: cut between .9 and .8.
    assert _best_threshold(probabilities, np.array([0, 1, 0, 0])) == pytest.approx(0.85)
    # Ties in probability are cut together.
    assert _best_threshold(np.array([0.7, 0.7, 0.1]), np.array([1, 0, 0])) == pytest.approx(0.4)
    assert _best_threshold(probabilities, np.zeros(4)) is None


def test_tune_thresholds(bert_preset, tmp_path):
    model = multi_model(bert_preset)
    fit(model, TEXTS, LABEL_SETS, epochs=2)
    before = model.report(TEXTS, LABEL_SETS, verbose=0)
    tuned = model.tune_thresholds(TEXTS, LABEL_SETS, verbose=0)
    after = model.report(TEXTS, LABEL_SETS, verbose=0)
    assert len(tuned) == 3 and model.threshold == tuned
    assert all(0 < t < 1 for t in tuned)
    assert np.all(after.f1 >= before.f1 - 1e-12) and after.macro_f1 >= before.macro_f1
    metrics = model.evaluate(TEXTS, LABEL_SETS, return_dict=True, verbose=0)
    assert metrics["macro_f1"] == pytest.approx(after.macro_f1, abs=1e-5)
    model.save(tmp_path / "tuned.keras")
    reloaded = kt.load_model(tmp_path / "tuned.keras")
    assert reloaded.threshold == tuned
    assert reloaded.evaluate(TEXTS, LABEL_SETS, return_dict=True, verbose=0) == pytest.approx(metrics)


def test_multi_label_save_and_load(bert_preset, tmp_path):
    model = multi_model(bert_preset, threshold=[0.4, 0.5, 0.6], hidden_units=(8,))
    fit(model, TEXTS, LABEL_SETS)
    model.save(tmp_path / "multi.keras")
    reloaded = kt.load_model(tmp_path / "multi.keras")
    assert type(reloaded) is kt.MultiLabelClassifier
    assert reloaded.get_config() == model.get_config()
    assert reloaded.label_names == NAMES and reloaded.threshold == [0.4, 0.5, 0.6]
    assert_same_predictions(model, reloaded, TEXTS)
    assert reloaded.predict_labels(TEXTS, verbose=0) == model.predict_labels(TEXTS, verbose=0)
    assert reloaded.backbone.trainable_weights == []
    backbone = snapshot(reloaded.backbone)
    fit(reloaded, TEXTS, MULTI_HOT, cache_features=False)
    assert changed(backbone, reloaded.backbone) == set()


@pytest.mark.parametrize(
    "labels, fragments",
    [
        (["pos", "neg"] * 5, ["one value per text (label names", "one list of label names per text", "multi-hot"]),
        (np.array(LABELS), ["shape (10,)", "Class ids are not accepted", "multi-hot"]),
        (LABELS, ["one value per text (single values", "multi-hot"]),
        ([[1]] * 10, ["has 1 column but", "3 labels"]),
        ([[0, 2], [1]] * 5, ["`y[0]` is [0, 2]", "needs 3 numbers", "Class ids are not accepted"]),
        (np.ones((10, 2)), ["2 columns", "3 labels"]),
        (MULTI_HOT * 2, ["only 0s and 1s", "found 2.0"]),
        ([["pos", "sad"]] * 10, ["Unknown label 'sad'", "y[0]", "['pos', 'neg', 'long']"]),
        ([["pos"], [1]] * 5, ["mixes label names and numbers"]),
    ],
)
def test_multi_label_bad_labels(error_models, labels, fragments):
    model = error_models["multi"]
    with raises(ValueError, *fragments):
        model.fit(TEXTS, labels, verbose=0)


def test_multi_label_names_need_label_names(bert_preset):
    model = kt.MultiLabelClassifier.from_preset(bert_preset, num_classes=3)
    with raises(ValueError, "label names", "no `label_names`"):
        model.fit(TEXTS, LABEL_SETS, verbose=0)
    with raises(ValueError, "does not know"):
        multi_model(bert_preset).fit(TextData(TEXTS, MULTI_HOT, ["a", "b", "c"]), verbose=0)


@pytest.mark.parametrize(
    "kwargs, fragments",
    [
        ({"threshold": 0.0}, ["every threshold in (0, 1)"]),
        ({"threshold": 1.0}, ["every threshold in (0, 1)"]),
        ({"threshold": [0.5, 0.5]}, ["one", "per label (3)"]),
        ({"threshold": "high"}, ["threshold='high'"]),
        ({"num_classes": 0, "label_names": None}, ["`num_classes`", "at least 1"]),
        ({"num_classes": 2}, ["num_classes=2", "3 label names"]),
        ({"label_names": "pos"}, ["single string"]),
    ],
)
def test_multi_label_bad_arguments(bert_backbone, kwargs, fragments):
    kwargs = {"label_names": NAMES, **kwargs}
    with raises(ValueError, *fragments):
        kt.MultiLabelClassifier(bert_backbone[0], **kwargs)


# ------------------------------------------------------------ TextRegressor


@pytest.mark.parametrize("cache_features", ["auto", False])
def test_regressor_fit_learns_the_target_scale(bert_preset, cache_features):
    model = regressor(bert_preset)
    assert model.target_mean is None
    backbone = snapshot(model.backbone)
    head = snapshot(model.get_layer("head_output"))
    history = fit(model, TEXTS, TARGETS, epochs=2, cache_features=cache_features)
    assert set(history.history) == {"loss", "mae", "rmse", "pearson"}
    assert model.target_mean == pytest.approx([TARGETS.mean()])
    assert model.target_std == pytest.approx([TARGETS.std()])
    assert changed(backbone, model.backbone) == set()
    assert changed(head, model.get_layer("head_output")) == set(head)
    # Predictions are mean + std * the head's output, in rating units.
    trunk = keras.Model(model.inputs, model.get_layer("head_output").output)
    z = trunk.predict(model.preprocessor(TEXTS), verbose=0)
    predictions = model.predict(TEXTS, verbose=0)
    assert predictions.shape == (len(TEXTS), 1)
    np.testing.assert_allclose(predictions, TARGETS.mean() + TARGETS.std() * z, rtol=1e-5, atol=1e-5)
    # A second fit keeps the scale of the first.
    fit(model, TEXTS, TARGETS + 100, epochs=1)
    assert model.target_mean == pytest.approx([TARGETS.mean()])


def test_a_failed_first_fit_leaves_the_target_scale_unlearned(bert_preset):
    model = regressor(bert_preset)
    with raises(ValueError, "labels"):
        fit(model, TEXTS, [100.0, 200.0, 300.0])  # 3 targets for 10 texts
    with raises(ValueError, "validation_split"):
        fit(model, TEXTS, TARGETS * 100, validation_split=1.5)
    assert model.target_mean is None and model.target_std is None
    scaling = model.get_layer("predictions")
    assert (scaling.mean, scaling.std) == (0.0, 1.0)
    fit(model, TEXTS, TARGETS, epochs=1)
    assert model.target_mean == pytest.approx([TARGETS.mean()])

    class Interrupt(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            raise KeyboardInterrupt

    # Once a step has trained the head on a scale, an interrupted fit keeps it.
    model = regressor(bert_preset)
    with pytest.raises(KeyboardInterrupt):
        fit(model, TEXTS, TARGETS, cache_features=False, callbacks=[Interrupt()])
    assert model.target_mean == pytest.approx([TARGETS.mean()])


def test_standardisation_puts_predictions_in_range_at_once(bert_preset):
    """On targets far from 0, a standardised head starts at their mean; an
    unscaled one is still far off after the same short training."""
    targets = 1000.0 + TARGETS
    errors = {}
    for standardize in (True, False):
        keras.utils.set_random_seed(0)
        model = regressor(bert_preset, standardize=standardize)
        fit(model, TEXTS, targets, epochs=3, seed=0)
        errors[standardize] = model.report(TEXTS, targets, verbose=0).mae
    assert errors[True] < 10 and errors[False] > 900, errors


def test_regressor_metrics_match_the_report(bert_preset):
    model = regressor(bert_preset, target_mean=5.0, target_std=3.0)
    fit(model, TEXTS, TARGETS, epochs=2)
    assert model.target_mean == [5.0]  # given, not learned
    metrics = model.evaluate(TEXTS, TARGETS, batch_size=3, return_dict=True, verbose=0)
    report = model.report(TEXTS, TARGETS, verbose=0)
    predictions = model.predict(TEXTS, verbose=0)[:, 0]
    assert report.mae == pytest.approx(np.mean(np.abs(predictions - TARGETS)), rel=1e-5)
    assert metrics["mae"] == pytest.approx(report.mae, rel=1e-4)
    assert metrics["rmse"] == pytest.approx(report.rmse, rel=1e-4)
    assert metrics["loss"] == pytest.approx(report.mse, rel=1e-4)
    # Whole-set Pearson, though evaluate saw batches of 3.
    assert metrics["pearson"] == pytest.approx(np.corrcoef(predictions, TARGETS)[0, 1], abs=1e-4)
    assert report.spearman == pytest.approx(kt.metrics.spearman(TARGETS, predictions))


def test_regressor_with_huber_loss_and_two_outputs(bert_preset, tmp_path):
    model = regressor(bert_preset, num_outputs=2)
    targets = np.stack([TARGETS, -TARGETS / 10], axis=1)
    model.compile(loss="huber")
    history = fit(model, TEXTS, targets, epochs=2)
    assert np.isfinite(history.history["loss"]).all()
    assert model.target_mean == pytest.approx(targets.mean(axis=0).tolist())
    assert model.predict(TEXTS, verbose=0).shape == (10, 2)
    report = model.report(TEXTS, targets, verbose=0)
    assert report.mae.shape == (2,)
    model.save(tmp_path / "two.keras")
    reloaded = kt.load_model(tmp_path / "two.keras")
    assert_same_predictions(model, reloaded, TEXTS)


def test_regressor_without_standardisation_predicts_the_head_output(bert_preset):
    model = regressor(bert_preset, standardize=False)
    fit(model, TEXTS, TARGETS)
    assert model.target_mean is None and model.get_layer("predictions").mean == 0.0
    trunk = keras.Model(model.inputs, model.get_layer("head_output").output)
    np.testing.assert_allclose(
        model.predict(TEXTS, verbose=0), trunk.predict(model.preprocessor(TEXTS), verbose=0), atol=1e-6
    )


def test_regressor_save_and_load(bert_preset, tmp_path):
    model = regressor(bert_preset, hidden_units=(8,))
    fit(model, TEXTS, TARGETS)
    model.save(tmp_path / "regressor.keras")
    reloaded = kt.load_model(tmp_path / "regressor.keras")
    assert type(reloaded) is kt.TextRegressor
    assert reloaded.get_config() == model.get_config()
    assert reloaded.target_mean == pytest.approx([TARGETS.mean()])
    assert_same_predictions(model, reloaded, TEXTS)
    assert reloaded.evaluate(TEXTS, TARGETS, return_dict=True, verbose=0) == pytest.approx(
        model.evaluate(TEXTS, TARGETS, return_dict=True, verbose=0), rel=1e-5
    )
    backbone = snapshot(reloaded.backbone)
    fit(reloaded, TEXTS, TARGETS, cache_features=False)
    assert changed(backbone, reloaded.backbone) == set()
    assert reloaded.target_mean == model.target_mean


@pytest.mark.parametrize(
    "targets, fragments",
    [
        (["4.5"] * 10, ["must be numbers", "'4.5' (str)", "float(v)"]),
        (np.array(["good"] * 10), ["must be numbers", "'good'"]),
        ([1.0] * 9 + [None], ["must be numbers", "None"]),
        (np.r_[TARGETS[:9], np.nan], ["`y[9]` is [nan]", "finite", "Drop or fill"]),
        (np.r_[TARGETS[:9], np.inf], ["finite"]),
        (np.ones((10, 2)), ["shape (texts,) or (texts, 1)", "(10, 2)"]),
        ([], ["empty"]),
    ],
)
def test_regressor_bad_targets(error_models, targets, fragments):
    model = error_models["regression"]
    with raises(ValueError, *fragments):
        model.fit(TEXTS, targets, verbose=0)
    assert model.target_mean is None  # nothing learned from bad targets


def test_regressor_refuses_class_labels_in_text_data(bert_preset):
    model = regressor(bert_preset)
    with raises(ValueError, "class labels", "TextClassifier"):
        model.fit(from_lists(TEXTS, ["pos" if y else "neg" for y in LABELS]), verbose=0)
    history = model.fit(TextData(TEXTS, TARGETS), verbose=0)  # real-valued: fine
    assert np.isfinite(history.history["loss"]).all()


@pytest.mark.parametrize(
    "kwargs, fragments",
    [
        ({"num_outputs": 0}, ["num_outputs=0"]),
        ({"num_outputs": 1.5}, ["num_outputs=1.5"]),
        ({"standardize": "yes"}, ["standardize='yes'"]),
        ({"target_mean": 1.0}, ["both"]),
        ({"target_mean": 1.0, "target_std": 0.0}, ["positive", "target_std=0.0"]),
        ({"target_mean": [1.0, 2.0], "target_std": 1.0}, ["one per output (1)"]),
        ({"target_mean": float("nan"), "target_std": 1.0}, ["finite"]),
        ({"standardize": False, "target_mean": 1.0, "target_std": 1.0}, ["standardize=True"]),
    ],
)
def test_regressor_bad_arguments(bert_backbone, kwargs, fragments):
    with raises(ValueError, *fragments):
        kt.TextRegressor(bert_backbone[0], **kwargs)


def test_standardisation_needs_targets_it_can_read(bert_preset):
    model = regressor(bert_preset)
    batches = kt.TextBatches(model.preprocessor, TEXTS, TARGETS[:, None], batch_size=4)
    with raises(ValueError, "standardize=True", "target_mean"):
        model.fit(batches, verbose=0)
    given = regressor(bert_preset, target_mean=5.0, target_std=3.0)
    assert np.isfinite(given.fit(batches, verbose=0).history["loss"]).all()


# ------------------------------------------------------------ the example


def test_sentence_tasks_example_smoke(tmp_path, bert_preset):
    for split in ("train", "test"):
        for label, words, ratings in (("pos", "a good great film", (7, 8, 10)), ("neg", "a bad awful film", (1, 2, 4))):
            folder = tmp_path / "aclImdb" / split / label
            folder.mkdir(parents=True)
            for i in range(12):
                (folder / f"{i}_{ratings[i % 3]}.txt").write_text(words)
    result = subprocess.run(
        [
            sys.executable, str(ROOT / "examples" / "sentence_tasks_minilm.py"),
            "--data", str(tmp_path), "--preset", bert_preset, "--smoke", "--epochs", "2",
            "--sequence-length", "16", "--output", str(tmp_path / "out"),
        ],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
        env={"KERAS_HOME": str(tmp_path / "keras_home"), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    for row in ["| sentiment (neg/pos) | TextClassifier | accuracy |", "| rating (1-10) | TextRegressor (standardize=True) | spearman |",
                "| pairs: same sentiment? (constructed) |", "| multi-label (constructed) | MultiLabelClassifier (thresholds tuned) | micro F1 |"]:
        assert row in result.stdout
    assert (tmp_path / "out" / "sentiment_confusion_matrix.png").is_file()


# ------------------------------------------------------------ every family

try:
    from family_models import FAMILY_CLASSES, save_family_preset
except ImportError:  # the family recipes are not there
    FAMILY_CLASSES = {}


@pytest.fixture(scope="module")
def family_preset(tmp_path_factory):
    """`get(family)`: a tiny local preset of the family.

    Reuses the one test_families.py saved earlier in the session when there
    is one (building the SentencePiece families takes a while), else saves
    its own.
    """
    built = {}

    def get(family):
        if family not in built:
            earlier = tmp_path_factory.getbasetemp() / f"tiny_{family}_preset0"
            if (earlier / "config.json").is_file() and (earlier / "tokenizer.json").is_file():
                built[family] = str(earlier)
            else:
                built[family] = save_family_preset(family, tmp_path_factory.mktemp(f"tasks_{family}"), seed=len(built))
        return built[family]

    return get


@pytest.mark.parametrize("family", list(FAMILY_CLASSES))
def test_every_task_on_every_family(family_preset, family, tmp_path):
    """Each task over each family's backbone (one shared, frozen): every
    task predicts; one of them, a different one from family to family, is
    also trained (cached features) and saved and reloaded. (The TextClassifier
    family test in test_families.py trains every family.)"""
    backbone, preprocessor = kt.load_backbone(family_preset(family), sequence_length=32)
    kt.freeze(backbone)
    shared = {"backbone": backbone, "preprocessor": preprocessor, "compile": False}
    models = {
        "pairs": (kt.TextPairClassifier(num_classes=2, **shared), PAIRS, LABELS),
        "multi": (kt.MultiLabelClassifier(label_names=NAMES, **shared), TEXTS, LABEL_SETS),
        "regression": (kt.TextRegressor(**shared), TEXTS, TARGETS),
    }
    for name, (model, x, _) in models.items():
        outputs = model.predict(x, batch_size=5, verbose=0)
        assert outputs.shape[0] == len(x) and np.isfinite(outputs).all(), name
    model, x, y = models[list(models)[list(FAMILY_CLASSES).index(family) % 3]]
    model.compile()
    output = "head_output" if isinstance(model, kt.TextRegressor) else "logits"
    head = snapshot(model.get_layer(output))
    history = fit(model, x, y, batch_size=5)
    assert np.isfinite(history.history["loss"]).all()
    assert changed(head, model.get_layer(output)) == set(head)
    model.save(tmp_path / "model.keras")
    reloaded = kt.load_model(tmp_path / "model.keras")
    assert type(reloaded) is type(model) and reloaded.get_config() == model.get_config()
    assert_same_predictions(model, reloaded, x)


@pytest.mark.parametrize(
    "make",
    [
        lambda p: kt.TextClassifier.from_preset(p, num_classes=3, hidden_units=(8,)),
        lambda p: kt.TextPairClassifier.from_preset(p, num_classes=2),
        lambda p: kt.MultiLabelClassifier.from_preset(p, num_classes=3),
        lambda p: kt.TextRegressor.from_preset(p),
        lambda p: kt.TokenClassifier.from_preset(p, tag_names=["O", "B-X", "I-X"]),
        lambda p: kt.QuestionAnswerer.from_preset(p, sequence_length=24, stride=6, max_question_length=8),
    ],
)
def test_heads_start_from_small_weights(bert_preset, make):
    # HuggingFace and KerasHub heads start from N(0, 0.02), not Keras'
    # Glorot default (std about 0.33 for these 16-wide inputs): a short
    # head training from Glorot weights ends measurably worse.
    model = make(bert_preset)
    backbone_layers = {id(layer) for layer in model.backbone._flatten_layers()}
    kernels = [
        keras.ops.convert_to_numpy(layer.kernel)
        for layer in model._flatten_layers()
        if isinstance(layer, keras.layers.Dense) and id(layer) not in backbone_layers
    ]
    assert kernels
    for kernel in kernels:
        assert np.abs(kernel).max() <= 0.04 + 1e-6  # truncated at two standard deviations
        assert 0.005 < kernel.std() < 0.03


@pytest.mark.parametrize(
    "build, y, metrics",
    [
        (lambda preset: kt.TextClassifier.from_preset(preset, num_classes=2, sequence_length=32), LABELS, ["accuracy"]),
        (lambda preset: kt.TextClassifier.from_preset(preset, num_classes=2, sequence_length=32), LABELS, ["acc", "sparse_categorical_crossentropy"]),
        (multi_model, MULTI_HOT, ["accuracy", keras.metrics.AUC(multi_label=True, name="auc")]),
        (regressor, TARGETS, ["mae", "mse"]),
    ],
    ids=["accuracy", "acc", "multi_label", "regression"],
)
def test_metric_names_mean_the_same_with_and_without_cached_features(bert_preset, build, y, metrics):
    # Keras' compile resolves a name such as "accuracy" from the loss and
    # the outputs; the head trained on cached features must do the same.
    histories, evaluations = [], []
    for cache_features in (True, False):
        keras.utils.set_random_seed(0)
        model = build(bert_preset)
        model.compile(optimizer=keras.optimizers.SGD(0.01), loss=model.default_loss(), metrics=metrics)
        histories.append(
            fit(model, TEXTS, y, batch_size=len(TEXTS), epochs=2, cache_features=cache_features,
                validation_data=(TEXTS, y)).history
        )
        evaluations.append(model.evaluate(TEXTS, y, batch_size=len(TEXTS), verbose=0, return_dict=True))
    cached, uncached = histories
    assert sorted(cached) == sorted(uncached)
    assert {f"val_{name}" for name in evaluations[0]} <= set(cached)  # fit logs what evaluate names
    for key in uncached:
        np.testing.assert_allclose(cached[key], uncached[key], rtol=1e-4, atol=1e-6, err_msg=key)
    # The last epoch's validation values are evaluate's on the same weights.
    for name, value in evaluations[0].items():
        np.testing.assert_allclose(cached[f"val_{name}"][-1], value, rtol=1e-4, atol=1e-6, err_msg=name)


@pytest.mark.parametrize(
    "cls, kwargs, wrong, meant",
    [
        (kt.TextClassifier, {"num_classes": 2, "droput": 0.5}, "droput", "dropout"),
        (kt.TextPairClassifier, {"num_classes": 2, "poolng": "mean"}, "poolng", "pooling"),
        (kt.MultiLabelClassifier, {"num_classes": 3, "threshhold": 0.9}, "threshhold", "threshold"),
        (kt.TextRegressor, {"target_means": 3.0}, "target_means", "target_mean"),
    ],
)
def test_misspelt_arguments_are_refused_not_ignored(bert_preset, bert_backbone, cls, kwargs, wrong, meant):
    # Keras' functional Model drops unknown keyword arguments silently.
    with raises(TypeError, f"{cls.__name__} got unexpected keyword argument {wrong!r}", f"did you mean {meant!r}"):
        cls.from_preset(bert_preset, sequence_length=32, **kwargs)
    backbone, preprocessor = bert_backbone
    with raises(TypeError, repr(wrong)):
        cls(backbone, preprocessor=preprocessor, **kwargs)
    with raises(TypeError, "'learning_rate'"):  # a compile() argument given to the model
        cls.from_preset(bert_preset, sequence_length=32, learning_rate=1e-5,
                        **{k: v for k, v in kwargs.items() if k != wrong})


def test_from_preset_arguments_given_to_a_constructor_are_refused_with_advice(bert_backbone):
    backbone, preprocessor = bert_backbone
    with raises(TypeError, "'freeze' (an argument of `TextClassifier.from_preset`", "kt.freeze(model)"):
        kt.TextClassifier(backbone, num_classes=2, preprocessor=preprocessor, freeze=True)
    with raises(TypeError, "'sequence_length'", "kt.load_backbone(preset, sequence_length=...)"):
        kt.TextRegressor(backbone, preprocessor=preprocessor, sequence_length=8)


def test_two_text_columns_are_pairs_for_every_sentence_task(bert_preset):
    firsts, seconds = ["good film", "bad plot", "fun"], ["fun", "boring", "great"]
    pairs = list(zip(firsts, seconds))
    for model in (pair_model(bert_preset), kt.TextClassifier.from_preset(bert_preset, num_classes=2, sequence_length=32)):
        np.testing.assert_allclose(
            model.predict((firsts, seconds), verbose=0), model.predict(pairs, verbose=0), atol=1e-6
        )
        np.testing.assert_allclose(  # two examples: columns too, not two pairs
            model.predict((firsts[:2], seconds[:2]), verbose=0), model.predict(pairs[:2], verbose=0), atol=1e-6
        )
        model.fit((firsts, seconds), [1, 0, 1], batch_size=3, epochs=1, verbose=0)


def test_validation_split_learns_the_target_scale_from_the_training_part(bert_preset):
    model = regressor(bert_preset)
    fit(model, TEXTS, TARGETS, validation_split=0.3, epochs=1)
    assert model.target_mean == pytest.approx([TARGETS[:7].mean()])
    assert model.target_std == pytest.approx([TARGETS[:7].std()])


def test_best_threshold_of_saturated_probabilities():
    # float32 sigmoids of logits beyond +-14: the best cut lies within 1e-6 of 1 (or 0).
    probabilities = np.array([1.0, 1.0, 0.9999995, 0.9999993, 0.2], dtype="float32")
    cut = _best_threshold(probabilities, np.array([1, 1, 0, 0, 0]))
    assert 0 < cut < 1 and list(probabilities > cut) == [True, True, False, False, False]
    probabilities = np.array([3e-7, 2e-7, 1e-8, 0.0], dtype="float32")
    cut = _best_threshold(probabilities, np.array([1, 1, 0, 0]))
    assert 0 < cut < 1 and list(probabilities > cut) == [True, True, False, False]
