"""Tests for kt.TextClassifier and the Task base (keras_transfer/tasks/),
with its compile defaults (keras_transfer/schedules.py) and saving."""

import os

import keras
import numpy as np
import pytest
import torch
from helpers import LABELS, TEXTS, changed, raises, requires_grad, snapshot, trainable_layer_names

import keras_transfer as kt
from keras_transfer.datasets import from_lists
from keras_transfer.schedules import WarmupLinearDecay
from keras_transfer.tasks.base import FINE_TUNING_LEARNING_RATE, HEAD_LEARNING_RATE

HEAD = {"logits"}
ABOVE = {"bert": set(), "gpt2": {"layer_norm"}}  # BERT's pooler stays frozen under "cls"


@pytest.fixture
def family(request, preset):
    """Which tiny preset `preset` is: "bert" or "gpt2"."""
    return request.node.callspec.params["preset"]


@pytest.fixture(scope="module")
def bert_model(bert_preset):
    """One frozen tiny-BERT classifier, for tests that only expect errors."""
    return kt.TextClassifier.from_preset(bert_preset, num_classes=2, sequence_length=32)


def classifier(preset, **kwargs):
    kwargs.setdefault("num_classes", 2)
    kwargs.setdefault("sequence_length", 32)
    return kt.TextClassifier.from_preset(preset, **kwargs)


def fit(model, texts=TEXTS, labels=LABELS, **kwargs):
    kwargs.setdefault("batch_size", 4)
    kwargs.setdefault("verbose", 0)
    return model.fit(texts, labels, **kwargs)


# ------------------------------------------------------------ from_preset


def test_from_preset_frozen(preset):
    model = classifier(preset)
    assert isinstance(model.backbone, keras.Model)
    assert isinstance(model.preprocessor, kt.TextPreprocessor)
    assert model.preprocessor.sequence_length == 32
    assert model.backbone.trainable_weights == []
    assert not any(requires_grad(v) for v in model.backbone.weights)
    assert {v.path.split("/")[0] for v in model.trainable_weights} == HEAD
    assert kt.frozen_state(model)["trainable"] is False
    assert model.optimizer is not None  # compiled with the defaults


def test_from_preset_unfrozen(preset, family):
    model = classifier(preset, freeze=False)
    expected = {l.name for l in model.backbone.layers if l.weights} - {"pooled_dense"}
    assert trainable_layer_names(model.backbone) == expected
    assert "transformer_layer_0" in expected


def test_from_preset_freeze_n(preset, family):
    model = classifier(preset, freeze=1)
    assert trainable_layer_names(model.backbone) == {"transformer_layer_1"} | ABOVE[family]
    model = classifier(preset, freeze=0)
    assert model.backbone.trainable_weights == []


@pytest.mark.parametrize("freeze", [-1, 1.5, "1", None, "True"])
def test_from_preset_bad_freeze(bert_preset, freeze):
    with raises(ValueError, "Expected `freeze` to be True", f"freeze={freeze!r}"):
        classifier(bert_preset, freeze=freeze)


def test_from_preset_freeze_more_blocks_than_there_are(bert_preset):
    with raises(ValueError, "between 0 and 2", "top=3"):
        classifier(bert_preset, freeze=3)


def test_default_pooling_by_family(bert_preset, gpt2_preset):
    assert classifier(bert_preset).pooling == "cls"
    assert classifier(gpt2_preset).pooling == "last"
    assert classifier(bert_preset, pooling="mean").pooling == "mean"


def test_head_arguments(bert_preset):
    model = classifier(bert_preset, hidden_units=(8, 4), dropout=0.2, num_classes=3)
    names = [l.name for l in model.layers]
    assert names[names.index("pooling") :] == [
        "pooling", "head_dropout_0", "head_dense_0", "head_dropout_1", "head_dense_1", "output_dropout", "logits",
    ]
    assert model.get_layer("head_dense_0").units == 8
    assert model.get_layer("head_dense_1").units == 4
    assert model.get_layer("output_dropout").rate == pytest.approx(0.2)
    assert model.get_layer("logits").units == 3
    assert model.predict(TEXTS[:3], verbose=0).shape == (3, 3)


@pytest.mark.parametrize(
    "kwargs, fragments",
    [
        ({"hidden_units": (0,)}, ["`hidden_units`", "positive integers"]),
        ({"hidden_units": (8, -1)}, ["`hidden_units`"]),
        ({"hidden_units": (1.5,)}, ["`hidden_units`"]),
        ({"hidden_units": (True,)}, ["`hidden_units`"]),
        ({"dropout": 1.0}, ["`dropout` in [0, 1)", "dropout=1.0"]),
        ({"dropout": -0.1}, ["`dropout`"]),
        ({"pooling": "avg"}, ["Unknown pooling mode 'avg'"]),
    ],
)
def test_bad_head_arguments(bert_preset, kwargs, fragments):
    with raises(ValueError, *fragments):
        classifier(bert_preset, **kwargs)


def test_pooled_pooling_needs_a_bert_style_backbone(gpt2_preset):
    with raises(ValueError, "pooling='pooled' needs a backbone with its own pooler", "GPT2Backbone"):
        classifier(gpt2_preset, pooling="pooled")


def test_pooled_pooling_over_gpt2_fails_at_the_latest_when_called(gpt2_preset):
    try:
        model = classifier(gpt2_preset, pooling="pooled")
    except ValueError:
        return
    with raises(ValueError, "pooled_output"):
        model.predict(TEXTS[:2], verbose=0)


# ------------------------------------------------------------ num_classes and label names


@pytest.mark.parametrize("num_classes", [1, 0, -2, "2", True, 2.0, None])
def test_bad_num_classes(bert_preset, num_classes):
    with raises(ValueError, "Expected `num_classes` to be an integer of at least 2", f"num_classes={num_classes!r}"):
        classifier(bert_preset, num_classes=num_classes)


def test_label_names_give_num_classes(bert_preset):
    model = kt.TextClassifier.from_preset(bert_preset, label_names=["neg", "pos", "mixed"])
    assert model.num_classes == 3
    assert model.get_layer("logits").units == 3


def test_bad_label_names(bert_preset):
    with raises(ValueError, "num_classes=3 but 2 label names"):
        kt.TextClassifier.from_preset(bert_preset, num_classes=3, label_names=["neg", "pos"])
    with raises(ValueError, "`label_names` has duplicates"):
        kt.TextClassifier.from_preset(bert_preset, label_names=["pos", "pos"])
    with raises(ValueError, "`num_classes`"):
        kt.TextClassifier.from_preset(bert_preset, label_names=["only"])


def test_label_names_must_be_a_list(bert_preset):
    with raises(ValueError, "label_names"):
        kt.TextClassifier.from_preset(bert_preset, label_names="pos")


# ------------------------------------------------------------ summary


def test_summary_shows_what_trains(preset, family):
    model = classifier(preset)
    lines = []
    model.summary(print_fn=lambda line, *args, **kwargs: lines.append(line))
    text = "\n".join(lines)
    trainable, frozen = kt.count_params(model)
    assert trainable == 2 * 16 + 2 and frozen > 1000
    assert f"Trains: {trainable:,} parameters" in text
    assert f"Frozen: {frozen:,} parameters" in text
    assert "frozen whole" in text
    assert "sequence_length 32" in text

    kt.unfreeze(model, top=1)
    lines.clear()
    model.summary(print_fn=lambda line, *args, **kwargs: lines.append(line))
    text = "\n".join(lines)
    assert "Trains:" in text and "Frozen" in text
    assert "block 1 of 0-1 trains" in text


def test_summary_prints_by_default(bert_preset, capsys):
    classifier(bert_preset).summary()
    out = capsys.readouterr().out
    assert "Trains:" in out and "Frozen" in out


# ------------------------------------------------------------ fit, evaluate, predict


@pytest.mark.parametrize("cache_features", ["auto", False])
def test_fit_on_raw_strings_trains_the_head_only(preset, cache_features):
    model = classifier(preset)
    backbone = snapshot(model.backbone)
    head = snapshot(model.get_layer("logits"))
    history = fit(model, epochs=2, cache_features=cache_features)
    assert len(history.history["loss"]) == 2
    assert np.isfinite(history.history["loss"]).all()
    assert "accuracy" in history.history
    assert changed(backbone, model.backbone) == set()
    assert changed(head, model.get_layer("logits")) == set(head)


def test_fit_on_text_data(preset):
    model = classifier(preset)
    data = from_lists(TEXTS, LABELS)
    head = snapshot(model.get_layer("logits"))
    history = model.fit(data, batch_size=4, epochs=1, verbose=0, validation_data=data)
    assert "val_loss" in history.history and "val_accuracy" in history.history
    assert changed(head, model.get_layer("logits"))
    with raises(ValueError, "already holds its labels"):
        model.fit(data, LABELS, verbose=0)


def test_fit_with_validation_tuple(bert_preset):
    model = classifier(bert_preset)
    history = fit(model, validation_data=(TEXTS[:4], LABELS[:4]))
    assert "val_accuracy" in history.history


def test_evaluate_returns_loss_and_accuracy(preset):
    model = classifier(preset)
    result = model.evaluate(TEXTS, LABELS, batch_size=4, return_dict=True, verbose=0)
    assert set(result) >= {"loss", "accuracy"}
    assert 0.0 <= result["accuracy"] <= 1.0 and result["loss"] > 0
    # The accuracy is that of predict's answers.
    predicted = model.predict_labels(TEXTS, verbose=0)
    assert result["accuracy"] == pytest.approx(np.mean(predicted == np.array(LABELS)))
    on_data = model.evaluate(from_lists(TEXTS, LABELS), return_dict=True, verbose=0)
    assert on_data["accuracy"] == pytest.approx(result["accuracy"])
    assert on_data["loss"] == pytest.approx(result["loss"], rel=1e-5)


def test_predict_keeps_the_input_order(preset):
    model = classifier(preset, num_classes=3)
    texts = TEXTS + ["good", "a very very very long and boring , boring plot"]
    batched = model.predict(texts, batch_size=3, verbose=0)
    assert batched.shape == (len(texts), 3)
    one_by_one = np.concatenate(
        [keras.ops.convert_to_numpy(model(model.preprocessor([text]), training=False)) for text in texts]
    )
    np.testing.assert_allclose(batched, one_by_one, atol=1e-5)
    for i in (0, len(texts) - 1):
        np.testing.assert_allclose(model.predict([texts[i]], verbose=0), batched[i : i + 1], atol=1e-5)
    # Rows differ, so a permutation would be caught.
    assert len({tuple(np.round(row, 5)) for row in batched}) == len(texts)
    np.testing.assert_allclose(model.predict(from_lists(texts), verbose=0), batched, atol=1e-6)


def test_predict_is_deterministic(preset):
    model = classifier(preset)
    np.testing.assert_array_equal(model.predict(TEXTS, verbose=0), model.predict(TEXTS, verbose=0))


def test_predict_on_token_ids(bert_preset):
    model = classifier(bert_preset)
    batch = model.preprocessor(TEXTS[:3])
    np.testing.assert_allclose(model.predict(batch, verbose=0), model.predict(TEXTS[:3], verbose=0), atol=1e-5)


def test_predict_labels(preset):
    model = classifier(preset, num_classes=3)
    logits = model.predict(TEXTS, verbose=0)
    ids = model.predict_labels(TEXTS, verbose=0)
    np.testing.assert_array_equal(ids, logits.argmax(axis=-1))

    named = classifier(preset, num_classes=None, label_names=["neg", "pos", "meh"])
    names = named.predict_labels(TEXTS, verbose=0)
    assert isinstance(names, list) and len(names) == len(TEXTS)
    expected = [["neg", "pos", "meh"][i] for i in named.predict(TEXTS, verbose=0).argmax(axis=-1)]
    assert names == expected


def test_string_labels_with_label_names(preset):
    model = classifier(preset, label_names=["neg", "pos"])
    head = snapshot(model.get_layer("logits"))
    names = ["pos" if label else "neg" for label in LABELS]
    fit(model, labels=names)
    assert changed(head, model.get_layer("logits"))
    # Labels map to the right ids: the model's own answers score 100%.
    answers = model.predict_labels(TEXTS, verbose=0)
    assert model.evaluate(TEXTS, np.array(answers), return_dict=True, verbose=0)["accuracy"] == 1.0
    # TextData sorts its names ("neg", "pos" -> ids 0, 1); a model naming
    # them in another order still reads them right.
    reversed_model = classifier(preset, label_names=["pos", "neg"])
    answers = reversed_model.predict_labels(TEXTS, verbose=0)
    data = from_lists(TEXTS, answers, label_names=["neg", "pos"])
    assert reversed_model.evaluate(data, return_dict=True, verbose=0)["accuracy"] == 1.0


def test_text_data_with_unknown_label_names(bert_preset):
    model = classifier(bert_preset, label_names=["neg", "pos"])
    data = from_lists(TEXTS[:3], ["neg", "pos", "meh"])
    with raises(ValueError, "['meh']", "does not know"):
        model.fit(data, verbose=0)


def test_boolean_and_integral_float_labels_are_class_ids(bert_preset):
    model = classifier(bert_preset)
    fit(model, labels=[bool(x) for x in LABELS])
    fit(model, labels=np.array(LABELS, dtype="float32"))


# ------------------------------------------------------------ label and text errors


@pytest.mark.parametrize(
    "labels, fragments",
    [
        ([0, 2] + [0] * 8, ["Label 2 at y[1] is outside 0..1", "num_classes=3"]),
        ([0, 1, 5] + [0] * 7, ["Label 5 at y[2]", "num_classes=6"]),
        ([-1] + [0] * 9, ["Label -1 at y[0] is outside 0..1", "use class ids from 0"]),
        ([0.5] + [0.0] * 9, ["Expected integer class ids", "0.5"]),
        ([1.0, 0.0, 1.25] + [0.0] * 7, ["Expected integer class ids", "1.25"]),
        ([float("nan")] + [0.0] * 9, ["Expected integer class ids", "nan"]),
        (["pos", 1] + [0] * 8, ["mixes string and numeric labels"]),
        ([0, "neg"] + [0] * 8, ["mixes string and numeric labels"]),
        (["pos"] * 10, ["string labels", "no `label_names`"]),
        (np.array(["pos"] * 10), ["string labels", "no `label_names`"]),
        (LABELS[:9], ["Got 10 texts but 9 labels"]),
        (LABELS + [1], ["Got 10 texts but 11 labels"]),
        ([], ["`y` is empty"]),
        (np.eye(2)[LABELS], ["one class id per text", "argmax"]),
        ([None] * 10, ["Expected integer class ids"]),
    ],
)
def test_bad_labels(bert_model, labels, fragments):
    with raises(ValueError, *fragments):
        bert_model.fit(TEXTS, labels, verbose=0)


def test_unknown_string_label(bert_preset):
    model = classifier(bert_preset, label_names=["neg", "pos"])
    with raises(ValueError, "Unknown labels ['meh']", "['neg', 'pos']"):
        model.fit(TEXTS, ["meh"] + ["pos"] * 9, verbose=0)


@pytest.mark.parametrize(
    "texts, fragments",
    [
        ([], ["`x` is empty"]),
        (["good", None], ["Expected every text to be a string", "x[1]=None"]),
        ([None, "good"], ["Expected every text to be a string", "x[0]=None"]),
        (["good", 3], ["Expected every text to be a string", "x[1]=3"]),
        ([3, 4], ["Expected every text to be a string", "x[0]=3"]),
        ("good film", ["single string", "Wrap it in a list"]),
    ],
)
@pytest.mark.parametrize("method", ["fit", "predict", "evaluate"])
def test_bad_texts(bert_model, texts, fragments, method):
    model = bert_model
    labels = [0] * max(len(texts), 1) if not isinstance(texts, str) else [0]
    call = {
        "fit": lambda: model.fit(texts, labels, verbose=0),
        "evaluate": lambda: model.evaluate(texts, labels, verbose=0),
        "predict": lambda: model.predict(texts, verbose=0),
    }[method]
    with raises(ValueError, *fragments):
        call()


def test_fit_without_labels_says_so(bert_preset):
    model = classifier(bert_preset)
    with raises(ValueError, "label"):
        model.fit(TEXTS, verbose=0)


def test_raw_text_needs_a_preprocessor(bert_preset):
    backbone, _ = kt.load_backbone(bert_preset)
    model = kt.TextClassifier(backbone, num_classes=2)
    with raises(ValueError, "no preprocessor", "model.preprocessor = preprocessor"):
        model.predict(TEXTS, verbose=0)


# ------------------------------------------------------------ compile defaults


def test_default_learning_rates_are_sensible():
    # A fresh head on frozen features takes large steps; pretrained weights
    # being fine-tuned take BERT's usual small ones.
    assert 1e-4 <= HEAD_LEARNING_RATE <= 1e-2
    assert FINE_TUNING_LEARNING_RATE == pytest.approx(5e-5)


@pytest.mark.parametrize(
    "freeze, rate", [(True, HEAD_LEARNING_RATE), (False, FINE_TUNING_LEARNING_RATE), (1, FINE_TUNING_LEARNING_RATE)]
)
def test_default_learning_rate(bert_preset, freeze, rate):
    model = classifier(bert_preset, freeze=freeze)
    assert isinstance(model.optimizer, keras.optimizers.AdamW)
    schedule = model.optimizer._learning_rate
    assert isinstance(schedule, WarmupLinearDecay)
    assert schedule.peak_learning_rate == pytest.approx(rate)
    assert schedule.sized_by_fit
    assert model.optimizer.weight_decay == pytest.approx(0.01)


def test_compile_after_unfreeze_picks_the_fine_tuning_rate(bert_preset):
    model = classifier(bert_preset)
    kt.unfreeze(model)
    model.compile()
    assert model.optimizer._learning_rate.peak_learning_rate == pytest.approx(FINE_TUNING_LEARNING_RATE)
    model.compile(learning_rate=2e-5, warmup=0.0)
    assert model.optimizer._learning_rate.peak_learning_rate == pytest.approx(2e-5)
    assert model.optimizer._learning_rate.warmup_steps == 0


@pytest.mark.parametrize("cache_features", ["auto", False])
def test_schedule_is_sized_by_fit(bert_preset, cache_features):
    model = classifier(bert_preset)
    fit(model, epochs=2, batch_size=4, cache_features=cache_features)  # 10 texts: 3 batches
    schedule = model.optimizer._learning_rate
    assert schedule.total_steps == 6
    assert schedule.start_step == 0
    assert int(model.optimizer.iterations.numpy()) == 6
    # A second fit starts a fresh schedule where the first one ended.
    fit(model, texts=TEXTS[:4], labels=LABELS[:4], epochs=3, batch_size=2, cache_features=cache_features)
    assert schedule.total_steps == 6
    assert schedule.start_step == 6
    assert int(model.optimizer.iterations.numpy()) == 12


def test_warmup_share_survives_a_short_fit(bert_preset):
    model = classifier(bert_preset)  # warmup=0.1
    fit(model, texts=TEXTS[:4], labels=LABELS[:4], epochs=1, batch_size=2)  # 2 steps
    fit(model, epochs=10, batch_size=1)  # 100 steps: 10 of warmup
    assert model.optimizer._learning_rate.warmup_steps == 10


def test_compile_errors(bert_preset):
    model = classifier(bert_preset)
    with raises(ValueError, "`learning_rate` sets the rate of the default optimizer"):
        model.compile(optimizer=keras.optimizers.SGD(), learning_rate=1e-3)
    for warmup in [1.0, -0.1, 2]:
        with raises(ValueError, "Expected `warmup` to be a share of the steps in [0, 1)"):
            model.compile(warmup=warmup)


def test_compile_with_own_optimizer(bert_preset):
    model = classifier(bert_preset)
    model.compile(optimizer=keras.optimizers.SGD(0.5))
    head = snapshot(model.get_layer("logits"))
    fit(model)
    assert changed(head, model.get_layer("logits"))
    assert isinstance(model.optimizer, keras.optimizers.SGD)


@pytest.mark.parametrize("value", ["yes", None, "true", "False"])
def test_bad_cache_features(bert_model, value):
    with raises(ValueError, "`cache_features`", "'auto', True or False"):
        fit(bert_model, cache_features=value)


def test_cache_features_true_needs_a_frozen_backbone(bert_preset):
    model = classifier(bert_preset, freeze=1)
    with raises(ValueError, "cannot be cached", "backbone is not frozen"):
        fit(model, cache_features=True)


def test_checkpoint_callback_saves_the_whole_model(bert_preset, tmp_path):
    model = classifier(bert_preset)
    path = tmp_path / "best.keras"
    checkpoint = keras.callbacks.ModelCheckpoint(path, monitor="loss")
    with raises(ValueError, "cannot be cached", "ModelCheckpoint"):
        fit(model, callbacks=[checkpoint], cache_features=True)
    fit(model, callbacks=[checkpoint])  # "auto": no caching with a saver
    saved = kt.load_model(path)
    assert isinstance(saved, kt.TextClassifier)
    np.testing.assert_allclose(saved.predict(TEXTS, verbose=0), model.predict(TEXTS, verbose=0), atol=1e-6)


def test_early_stopping_with_cached_features(bert_preset):
    model = classifier(bert_preset)
    stop = keras.callbacks.EarlyStopping(monitor="val_loss", patience=0, restore_best_weights=True)
    history = fit(model, epochs=3, validation_data=(TEXTS, LABELS), callbacks=[stop], cache_features=True)
    assert 1 <= len(history.history["val_loss"]) <= 3
    # The restored weights are the model's own: evaluating agrees with the best epoch.
    best = min(history.history["val_loss"])
    assert model.evaluate(TEXTS, LABELS, return_dict=True, verbose=0)["loss"] == pytest.approx(best, rel=1e-4)


def test_cached_and_uncached_fit_train_the_head_alike(preset):
    # One batch holding every text, no head dropout: both paths take the
    # same gradient steps.
    a = classifier(preset, dropout=0.0)
    b = classifier(preset, dropout=0.0)
    b.get_layer("logits").set_weights(a.get_layer("logits").get_weights())
    ha = fit(a, batch_size=len(TEXTS), epochs=3, cache_features=True)
    hb = fit(b, batch_size=len(TEXTS), epochs=3, cache_features=False)
    np.testing.assert_allclose(ha.history["loss"], hb.history["loss"], rtol=1e-4)
    for wa, wb in zip(a.get_layer("logits").get_weights(), b.get_layer("logits").get_weights()):
        np.testing.assert_allclose(wa, wb, atol=1e-5)


@pytest.mark.parametrize("limit", [0, "training"])
def test_cached_features_beyond_the_memory_limit_go_to_a_file_and_train_alike(
    bert_preset, tmp_path, monkeypatch, limit
):
    from keras_transfer.tasks import base

    storage = []
    original = base._FeatureBatches.__getitem__

    def recording(self, index):  # where each batch's features come from
        features = self.features
        on_disk = isinstance(features, np.memmap)
        storage.append((len(self.text_batches.packed), on_disk, on_disk and os.path.exists(features.filename)))
        return original(self, index)

    monkeypatch.setattr(base._FeatureBatches, "__getitem__", recording)
    a = classifier(bert_preset, dropout=0.0)
    b = classifier(bert_preset, dropout=0.0)
    b.get_layer("logits").set_weights(a.get_layer("logits").get_weights())
    validation = (TEXTS[:6], LABELS[:6])
    width = a.get_layer("pooling").output.shape[-1]
    # "training": room for the training features only; the validation ones go to the file.
    limit = len(TEXTS) * width * 4 if limit == "training" else limit
    ha = fit(
        a, epochs=2, seed=0, validation_data=validation, cache_features=True,
        cache_memory_limit=limit, cache_dir=tmp_path,
    )
    on_file = {(rows, on_disk, exists) for rows, on_disk, exists in storage}
    storage.clear()
    hb = fit(b, epochs=2, seed=0, validation_data=validation, cache_features=True)  # all in memory
    assert {(rows, on_disk) for rows, on_disk, _ in storage} == {(len(TEXTS), False), (6, False)}
    expected = {(6, True, True)} | ({(len(TEXTS), True, True)} if limit == 0 else {(len(TEXTS), False, False)})
    assert on_file == expected
    assert list(tmp_path.iterdir()) == []  # the file is gone once fit returns
    for key in ("loss", "val_loss"):
        np.testing.assert_allclose(ha.history[key], hb.history[key], rtol=1e-6)
    for wa, wb in zip(a.get_layer("logits").get_weights(), b.get_layer("logits").get_weights()):
        np.testing.assert_allclose(wa, wb, rtol=1e-6, atol=1e-7)


def test_cached_features_are_written_batch_by_batch_in_input_order(bert_preset):
    from keras_transfer.tasks import base

    model = classifier(bert_preset)
    batches = model._as_batches(TEXTS, LABELS, 3, shuffle=True, seed=1)[0]  # length-grouped, shuffled
    trunk = keras.Model(model.inputs, model.get_layer("pooling").output)
    with base._FeatureStorage(0, None) as storage:
        features = base._features_in_order(trunk, batches, 0, storage)
        assert isinstance(features, np.memmap)
        expected = trunk.predict(batches.preprocessor(TEXTS), verbose=0)
        np.testing.assert_allclose(np.asarray(features), expected, atol=1e-6)
    with base._FeatureStorage(10**9, None) as storage:
        assert type(base._features_in_order(trunk, batches, 0, storage)) is np.ndarray
        assert not storage.spilled


def test_fit_reports_the_share_of_padding(bert_preset, capsys):
    model = classifier(bert_preset)
    fit(model, epochs=1, seed=0, verbose=2)
    printed = capsys.readouterr().out
    batches = model._as_batches(TEXTS, LABELS, 4, shuffle=True, seed=0)[0]  # the same plan: (seed, epoch 0)
    line = (
        f"{len(TEXTS)} texts in {len(batches)} batches of up to 4, "
        "grouped by length and padded to each batch's longest"
    )
    assert line in printed
    assert f"{batches.padding_share():.1%} of the token positions are padding." in printed
    assert 0 < batches.padding_share() < 0.5
    fit(model, epochs=1, seed=0, verbose=0)
    assert "padding" not in capsys.readouterr().out


def test_features_are_computed_in_batches_sorted_by_length(bert_preset):
    from keras_transfer.batching import padding_share
    from keras_transfer.tasks import base

    model = classifier(bert_preset)
    texts = [" ".join(["film"] * n) for n in (9, 1, 5, 3, 8, 2, 7, 4, 6, 1)]
    batches = model._as_batches(texts, [0] * len(texts), 3, shuffle=True, seed=0)[0]
    plan = batches.by_length()
    assert sorted(np.concatenate(plan).tolist()) == list(range(len(texts)))  # each example once
    assert [len(rows) for rows in plan] == [3, 3, 3, 1]
    lengths = [batches.lengths[rows].max() for rows in plan]
    assert lengths == sorted(lengths)
    # The sorted plan pads no more than the epoch's (which mixes lengths on purpose).
    assert padding_share(batches.lengths, plan) <= batches.padding_share()
    trunk = keras.Model(model.inputs, model.get_layer("pooling").output)
    widths = []
    original = trunk.predict_on_batch

    def recording(x):
        widths.append(x["token_ids"].shape[1])
        return original(x)

    trunk.predict_on_batch = recording
    with base._FeatureStorage(10**9, None) as storage:
        features = base._features_in_order(trunk, batches, 0, storage)
    assert widths == sorted(widths) and len(widths) == len(plan)
    expected = np.concatenate([original(batches.preprocessor([text])) for text in texts])
    np.testing.assert_allclose(features, expected, atol=1e-5)


def test_by_length_fills_batches_up_to_a_token_budget(bert_preset):
    model = classifier(bert_preset)
    texts = [" ".join(["film"] * n) for n in (9, 1, 5, 3, 8, 2, 7, 4, 6, 1, 12, 2, 3)]
    batches = model._as_batches(texts, None, 3, shuffle=True, seed=0)[0]
    lengths = batches.lengths
    plan = batches.by_length(max_tokens=24)
    assert sorted(np.concatenate(plan).tolist()) == list(range(len(texts)))
    order = np.concatenate(plan)
    assert np.all(np.diff(lengths[order]) >= 0)  # sorted by length
    for index, rows in enumerate(plan):
        last = index == len(plan) - 1
        assert len(rows) >= 3 or last  # never fewer than batch_size
        if len(rows) > 3:
            assert len(rows) * lengths[rows].max() <= 24  # above batch_size only within the budget
        if not last:  # and as large as the budget allows
            following = plan[index + 1][0]
            assert (len(rows) + 1) * lengths[following] > 24 or len(rows) < 3
    assert len(plan) < len(batches.by_length())
    # A budget below one batch's positions leaves batch_size.
    assert [len(rows) for rows in batches.by_length(max_tokens=1)] == [len(r) for r in batches.by_length()]


def test_feature_pass_uses_the_devices_token_budget_and_splits_batches_out_of_memory(bert_preset, monkeypatch):
    from keras_transfer.tasks import base

    model = classifier(bert_preset)
    texts = [" ".join(["film"] * n) for n in (9, 1, 5, 3, 8, 2, 7, 4, 6, 1, 12, 2, 3)]
    batches = model._as_batches(texts, None, 2, shuffle=True, seed=0)[0]
    trunk = keras.Model(model.inputs, model.get_layer("pooling").output)
    original = trunk.predict_on_batch
    expected = np.concatenate([original(batches.preprocessor([text])) for text in texts])
    sizes = []

    def recording(x):
        sizes.append(x["token_ids"].shape[0])
        return original(x)

    trunk.predict_on_batch = recording
    assert base._device_type() == "cpu" and "cpu" not in base.FEATURE_PASS_TOKENS
    with base._FeatureStorage(10**9, None) as storage:
        base._features_in_order(trunk, batches, 0, storage)
    assert max(sizes) == 2  # no budget on this device: fit's batch size
    monkeypatch.setitem(base.FEATURE_PASS_TOKENS, "cpu", 40)
    sizes.clear()
    with base._FeatureStorage(10**9, None) as storage:
        features = base._features_in_order(trunk, batches, 0, storage)
    assert sizes == [len(rows) for rows in batches.by_length(max_tokens=40)] and max(sizes) > 2
    np.testing.assert_allclose(features, expected, atol=1e-5)

    def out_of_memory_above_three(x):
        if x["token_ids"].shape[0] > 3:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return recording(x)

    trunk.predict_on_batch = out_of_memory_above_three
    sizes.clear()
    with base._FeatureStorage(10**9, None) as storage:
        features = base._features_in_order(trunk, batches, 0, storage)
    assert sizes and max(sizes) <= 3 and sum(sizes) == len(texts)  # each text once
    np.testing.assert_allclose(features, expected, atol=1e-5)

    def cublas_out_of_memory_above_two(x):  # cuBLAS/cuDNN report it as a plain RuntimeError
        if x["token_ids"].shape[0] > 2:
            raise RuntimeError("CUDA error: CUBLAS_STATUS_ALLOC_FAILED when calling `cublasCreate(handle)`")
        return recording(x)

    trunk.predict_on_batch = cublas_out_of_memory_above_two
    sizes.clear()
    with base._FeatureStorage(10**9, None) as storage:
        features = base._features_in_order(trunk, batches, 0, storage)
    assert max(sizes) <= 2 and sum(sizes) == len(texts)
    np.testing.assert_allclose(features, expected, atol=1e-5)

    def another_error(x):
        raise RuntimeError("expected scalar type Float but found Half")

    trunk.predict_on_batch = another_error
    with pytest.raises(RuntimeError, match="expected scalar type"):  # not memory: not retried
        with base._FeatureStorage(10**9, None) as storage:
            base._features_in_order(trunk, batches, 0, storage)

    def always_out_of_memory(x):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    trunk.predict_on_batch = always_out_of_memory
    with pytest.raises(torch.OutOfMemoryError):  # one text that does not fit is the user's to see
        with base._FeatureStorage(10**9, None) as storage:
            base._features_in_order(trunk, batches, 0, storage)


@pytest.mark.parametrize("as_text_data", [False, True])
def test_validation_split_holds_out_the_last_texts(bert_preset, as_text_data):
    # Keras' rule for arrays: the last 30% of 10 examples, before shuffling.
    x = from_lists(TEXTS, LABELS) if as_text_data else TEXTS
    y = None if as_text_data else LABELS
    histories = []
    for kwargs in ({"validation_split": 0.3}, {"validation_data": (TEXTS[7:], LABELS[7:])}):
        keras.utils.set_random_seed(0)
        model = classifier(bert_preset)
        train_x = x if "validation_split" in kwargs else (x[:7] if as_text_data else TEXTS[:7])
        train_y = y if y is None or "validation_split" in kwargs else LABELS[:7]
        histories.append(model.fit(train_x, train_y, batch_size=4, epochs=2, seed=0, verbose=0, **kwargs).history)
    assert set(histories[0]) == {"loss", "accuracy", "val_loss", "val_accuracy"}
    for key in histories[1]:
        np.testing.assert_allclose(histories[0][key], histories[1][key], rtol=1e-6, err_msg=key)


def test_bad_validation_split(bert_model):
    with raises(ValueError, "`validation_data` and `validation_split`"):
        fit(bert_model, validation_split=0.2, validation_data=(TEXTS, LABELS))
    for split in (1.5, -0.1, True, "0.2"):
        with raises(ValueError, "`validation_split`", "between 0 and 1"):
            fit(bert_model, validation_split=split)
    with raises(ValueError, "leaves no texts to train on"):
        fit(bert_model, validation_split=0.95)
    batches = bert_model._as_batches(TEXTS, LABELS, 4, shuffle=False)[0]
    with raises(ValueError, "`validation_split` cannot split this TextBatches", "validation_data="):
        bert_model.fit(batches, validation_split=0.2, verbose=0)


@pytest.mark.parametrize("cache_features", [True, False])
def test_sample_weight_with_raw_texts_weights_the_loss(bert_preset, cache_features):
    weights = np.array([0.0, 2.0, 1.0, 0.0, 3.0, 1.0, 0.5, 0.0, 1.0, 2.0], dtype="float32")
    keras.utils.set_random_seed(0)
    model = classifier(bert_preset, dropout=0.0)
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss=model.default_loss(), metrics=["accuracy"])
    expected_loss = model.evaluate(TEXTS, LABELS, sample_weight=weights, batch_size=10, verbose=0, return_dict=True)["loss"]
    # Keras' own loss on arrays with the same weights: the same number.
    arrays = model.evaluate(model.preprocessor(TEXTS), np.array(LABELS), sample_weight=weights, verbose=0, return_dict=True)
    assert expected_loss == pytest.approx(arrays["loss"], rel=1e-5)
    unweighted = model.evaluate(TEXTS, LABELS, batch_size=10, verbose=0, return_dict=True)["loss"]
    assert expected_loss != pytest.approx(unweighted, rel=1e-3)
    # A weight of 0 means the text does not train: one step on weights
    # that keep only text 1 equals one step on text 1 alone.
    only_one = np.zeros(10, dtype="float32")
    only_one[1] = 1.0
    a, b = classifier(bert_preset, dropout=0.0), classifier(bert_preset, dropout=0.0)
    b.get_layer("logits").set_weights(a.get_layer("logits").get_weights())
    for model in (a, b):
        model.compile(optimizer=keras.optimizers.SGD(0.1), loss=model.default_loss())
    history = a.fit(TEXTS, LABELS, sample_weight=only_one * 10, batch_size=10, epochs=1, verbose=0,
                    cache_features=cache_features, validation_data=(TEXTS, LABELS, weights))
    b.fit(TEXTS[1:2], LABELS[1:2], batch_size=1, epochs=1, verbose=0, cache_features=cache_features)
    for wa, wb in zip(a.get_layer("logits").get_weights(), b.get_layer("logits").get_weights()):
        np.testing.assert_allclose(wa, wb, rtol=1e-5, atol=1e-6)
    assert history.history["val_loss"][0] == pytest.approx(
        a.evaluate(TEXTS, LABELS, sample_weight=weights, batch_size=10, verbose=0, return_dict=True)["loss"], rel=1e-5
    )


def test_bad_sample_weight(bert_model):
    with raises(ValueError, "`sample_weight`", "one number per text (10)"):
        fit(bert_model, sample_weight=np.ones(3))
    with raises(ValueError, "`sample_weight[2]`", "finite and 0 or more"):
        fit(bert_model, sample_weight=[1, 1, -1, 1, 1, 1, 1, 1, 1, 1])
    with raises(ValueError, "`sample_weight`", "one number per text"):
        fit(bert_model, sample_weight=["a"] * 10)


def test_class_weight_by_label_name(bert_preset):
    losses = []
    for class_weight in ({"neg": 1.0, "pos": 100.0}, {0.0: 1.0, 1.0: 100.0}, None):  # ids as floats, as Keras takes
        keras.utils.set_random_seed(0)
        model = classifier(bert_preset, label_names=["neg", "pos"], num_classes=None)
        names = ["neg", "pos"]
        history = fit(model, TEXTS, [names[label] for label in LABELS], class_weight=class_weight, seed=0)
        losses.append(history.history["loss"][0])
    assert losses[0] == pytest.approx(losses[1], rel=1e-6)
    assert losses[0] > 10 * losses[2]
    model = classifier(bert_preset, label_names=["neg", "pos"], num_classes=None)
    with raises(ValueError, "`class_weight` names the class 'good'", "['neg', 'pos']"):
        fit(model, class_weight={"good": 2.0})
    with raises(ValueError, "`class_weight` has the key 2", "0..1"):
        fit(model, class_weight={2: 2.0})
    with raises(ValueError, "two weights"):
        fit(model, class_weight={0: 2.0, "neg": 2.0})
    with raises(ValueError, "this model has no `label_names`"):
        fit(classifier(bert_preset), class_weight={"neg": 2.0})


def test_texts_without_labels_where_labels_are_needed(bert_model):
    with raises(ValueError, "`evaluate` got texts but no labels"):
        bert_model.evaluate(TEXTS, verbose=0)
    with raises(ValueError, "`validation_data` holds texts but no labels"):
        fit(bert_model, validation_data=from_lists(TEXTS))
    with raises(ValueError, "`validation_data` holds texts but no labels"):
        fit(bert_model, validation_data=(TEXTS, None))


@pytest.mark.parametrize("limit", [-1, 1.5, True, "2GB"])
def test_bad_cache_memory_limit(bert_model, limit):
    with raises(ValueError, "`cache_memory_limit`", "number of bytes"):
        fit(bert_model, cache_memory_limit=limit)


def test_cache_dir_must_exist(bert_model, tmp_path):
    with raises(ValueError, "`cache_dir`", "not an existing directory"):
        fit(bert_model, cache_dir=tmp_path / "missing")
    with raises(ValueError, "`cache_dir`", "directory path"):
        fit(bert_model, cache_dir=3)


# ------------------------------------------------------------ unfreezing


def test_unfreeze_top_then_fit_changes_only_the_top_block(preset, family):
    model = classifier(preset)
    kt.unfreeze(model, top=1)
    model.compile()
    backbone = snapshot(model.backbone)
    head = snapshot(model.get_layer("logits"))
    fit(model)
    moved = {path.split("/")[0] for path in changed(backbone, model.backbone)}
    assert moved == {"transformer_layer_1"} | ABOVE[family]
    assert changed(head, model.get_layer("logits")) == set(head)


@pytest.mark.parametrize("cache_features", ["auto", False])
def test_fit_after_unfreeze_without_compile_is_refused(bert_preset, cache_features):
    model = classifier(bert_preset)
    fit(model, cache_features=cache_features)
    kt.unfreeze(model, top=1)
    with raises(ValueError, "became trainable after `compile()`", "Call `model.compile(...)` again"):
        fit(model)
    model.compile()
    fit(model)


# ------------------------------------------------------------ saving


def test_save_and_load_keeps_the_backbone_frozen(preset, tmp_path):
    model = classifier(preset, label_names=["neg", "pos"])
    fit(model)
    before = model.predict(TEXTS, verbose=0)
    model.save(tmp_path / "model.keras")

    reloaded = kt.load_model(tmp_path / "model.keras")
    assert isinstance(reloaded, kt.TextClassifier)
    np.testing.assert_allclose(reloaded.predict(TEXTS, verbose=0), before, atol=1e-6)
    assert reloaded.label_names == ["neg", "pos"]
    assert reloaded.predict_labels(TEXTS, verbose=0) == model.predict_labels(TEXTS, verbose=0)
    assert reloaded.preprocessor.get_config() == model.preprocessor.get_config()
    assert kt.frozen_state(reloaded) == kt.frozen_state(model)
    assert reloaded.backbone.trainable_weights == []
    assert all(not v.trainable for v in reloaded.backbone.weights)
    assert not any(requires_grad(v) for v in reloaded.backbone.weights)
    assert int(reloaded.optimizer.iterations.numpy()) == int(model.optimizer.iterations.numpy())

    # THE key check: training the reloaded model leaves every backbone
    # weight as it was and moves the head. No feature caching: the frozen
    # backbone runs at every step, as it would if its state were lost
    # (a backbone with trainable weights is never cached).
    backbone = snapshot(reloaded.backbone)
    head = snapshot(reloaded.get_layer("logits"))
    fit(reloaded, labels=["pos" if x else "neg" for x in LABELS], epochs=2, cache_features=False)
    assert changed(backbone, reloaded.backbone) == set()
    assert changed(head, reloaded.get_layer("logits")) == set(head)


def test_save_and_load_partly_frozen(preset, family, tmp_path):
    model = classifier(preset, freeze=1)
    fit(model)
    model.save(tmp_path / "model.keras")
    reloaded = kt.load_model(tmp_path / "model.keras")
    assert kt.frozen_state(reloaded) == kt.frozen_state(model)
    assert [v.path for v in reloaded.trainable_weights] == [v.path for v in model.trainable_weights]
    assert trainable_layer_names(reloaded.backbone) == {"transformer_layer_1"} | ABOVE[family]
    np.testing.assert_allclose(reloaded.predict(TEXTS, verbose=0), model.predict(TEXTS, verbose=0), atol=1e-6)

    backbone = snapshot(reloaded.backbone)
    fit(reloaded)
    moved = {path.split("/")[0] for path in changed(backbone, reloaded.backbone)}
    assert moved == {"transformer_layer_1"} | ABOVE[family]


# Saved before any fit: the optimizer has no state to load.
@pytest.mark.filterwarnings("ignore:Skipping variable loading for optimizer")
def test_save_and_load_unfrozen_with_head_options(bert_preset, tmp_path):
    model = classifier(bert_preset, freeze=False, hidden_units=(8,), pooling="mean", activation="softmax", num_classes=3)
    model.save(tmp_path / "model.keras")
    reloaded = kt.load_model(tmp_path / "model.keras")
    for key in ["num_classes", "pooling", "hidden_units", "dropout", "activation", "label_names", "frozen_state"]:
        assert reloaded.get_config()[key] == model.get_config()[key], key
    probabilities = reloaded.predict(TEXTS, verbose=0)
    np.testing.assert_allclose(probabilities.sum(axis=-1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(probabilities, model.predict(TEXTS, verbose=0), atol=1e-6)
    assert reloaded.optimizer._learning_rate.peak_learning_rate == pytest.approx(FINE_TUNING_LEARNING_RATE)


@pytest.mark.parametrize("layer_decay", [None, 0.8])
def test_biases_and_norms_stay_out_of_weight_decay_after_a_reload(bert_preset, tmp_path, layer_decay):
    model = classifier(bert_preset, freeze=False)
    model.compile(weight_decay=0.5, layer_decay=layer_decay)
    fit(model, epochs=1, seed=0)
    model.save(tmp_path / "model.keras")
    reloaded = kt.load_model(tmp_path / "model.keras")
    decayed = {v.path for v in model.trainable_variables if model.optimizer._use_weight_decay(v)}
    assert decayed == {v.path for v in reloaded.trainable_variables if reloaded.optimizer._use_weight_decay(v)}
    assert not any(name in path for path in decayed for name in ("bias", "gamma", "beta"))
    assert any("kernel" in path for path in decayed)
    fit(reloaded, epochs=1)  # and it trains on


def test_load_model_without_compile(bert_preset, tmp_path):
    model = classifier(bert_preset)
    model.save(tmp_path / "model.keras")
    reloaded = kt.load_model(tmp_path / "model.keras", compile=False)
    assert reloaded.backbone.trainable_weights == []
    np.testing.assert_allclose(reloaded.predict(TEXTS, verbose=0), model.predict(TEXTS, verbose=0), atol=1e-6)
    fit(reloaded)  # compiles itself with the defaults
    assert reloaded.optimizer._learning_rate.peak_learning_rate == pytest.approx(HEAD_LEARNING_RATE)


# ------------------------------------------------------------ a user's own model


# Plain models lose their optimizer state on reload: see
# test_layers.py::test_plain_model_reload_keeps_the_optimizer_state.
@pytest.mark.filterwarnings("ignore:Skipping variable loading for optimizer")
def test_plain_functional_model_with_kt_pieces(preset, tmp_path):
    backbone, preprocessor = kt.load_backbone(preset, sequence_length=32)
    kt.freeze(backbone)
    inputs = backbone.input
    features = kt.layers.Pooling("mean")(backbone(inputs), inputs["padding_mask"])
    outputs = keras.layers.Dense(2, name="head")(keras.layers.Dropout(0.1)(features))
    model = keras.Model(inputs, outputs)
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    batches = kt.TextBatches(preprocessor, TEXTS, np.array(LABELS), batch_size=4)
    model.save(tmp_path / "plain.keras")

    reloaded = kt.load_model(tmp_path / "plain.keras")
    inner = [l for l in reloaded.layers if isinstance(l, type(backbone))][0]
    assert all(not v.trainable for v in inner.weights)
    before = snapshot(inner)
    head = snapshot(reloaded.get_layer("head"))
    reloaded.fit(batches, epochs=1, verbose=0)
    assert changed(before, inner) == set()
    assert changed(head, reloaded.get_layer("head"))


# ------------------------------------------------------------ WarmupLinearDecay


def rate(schedule, step):
    return float(keras.ops.convert_to_numpy(schedule(step)))


@pytest.mark.parametrize(
    "step, expected",
    [
        (0, 0.25e-3),  # warmup: (step + 1) / warmup_steps of the peak
        (1, 0.5e-3),
        (3, 1e-3),
        (4, 1e-3),  # decay starts at the peak
        (7, 0.5e-3),
        (9, 1e-3 / 6),
        (10, 0.0),
        (25, 0.0),  # after the schedule: zero, not negative
    ],
)
def test_warmup_linear_decay_values(step, expected):
    schedule = WarmupLinearDecay(1e-3, total_steps=10, warmup_steps=4)
    assert rate(schedule, step) == pytest.approx(expected, abs=1e-9)


def test_warmup_linear_decay_without_warmup():
    schedule = WarmupLinearDecay(2e-5, total_steps=4)
    assert [rate(schedule, s) for s in range(5)] == pytest.approx([2e-5, 1.5e-5, 1e-5, 0.5e-5, 0.0])


def test_warmup_linear_decay_shape():
    schedule = WarmupLinearDecay(1e-3, total_steps=100, warmup_steps=10)
    rates = [rate(schedule, s) for s in range(110)]
    assert max(rates) == pytest.approx(1e-3)
    assert all(a < b for a, b in zip(rates[:10], rates[1:10]))
    assert all(a >= b for a, b in zip(rates[10:], rates[11:]))
    assert min(rates) == 0.0


def test_warmup_linear_decay_start_step():
    base = WarmupLinearDecay(1e-3, total_steps=10, warmup_steps=2)
    shifted = WarmupLinearDecay(1e-3, total_steps=10, warmup_steps=2, start_step=100)
    for step in range(12):
        assert rate(shifted, 100 + step) == pytest.approx(rate(base, step))
    assert rate(shifted, 50) == 0.0


def test_warmup_linear_decay_accepts_tensors():
    schedule = WarmupLinearDecay(1e-3, total_steps=10, warmup_steps=4)
    assert rate(schedule, keras.ops.convert_to_tensor(7, "int64")) == pytest.approx(0.5e-3)


@pytest.mark.parametrize("steps_per_update", [1, 3])
@pytest.mark.parametrize("dtype", ["int64", "float32"])
def test_warmup_linear_decay_on_torch_tensors_is_keras_ops_arithmetic_bit_for_bit(steps_per_update, dtype, monkeypatch):
    import torch

    from keras_transfer import schedules

    schedule = WarmupLinearDecay(
        3e-5, total_steps=37, warmup_steps=5, start_step=4, steps_per_update=steps_per_update
    )
    steps = [keras.ops.convert_to_tensor(s, dtype) for s in range(0, 130, 1)]
    variable = keras.Variable(17, dtype="int64", trainable=False)
    fast = [schedule(s) for s in steps] + [schedule(variable)]
    assert all(isinstance(r, torch.Tensor) and r.dtype == torch.float32 for r in fast)
    monkeypatch.setattr(schedules, "_torch_step", lambda step: None)  # Keras' ops only
    keras_ops = [schedule(s) for s in steps] + [schedule(variable)]
    assert all(torch.equal(a, b) for a, b in zip(fast, keras_ops))


def test_warmup_linear_decay_resize_keeps_the_warmup_share():
    schedule = WarmupLinearDecay(1e-3, total_steps=1000, warmup_steps=100, sized_by_fit=True)
    schedule.resize(50, start_step=7)
    assert (schedule.total_steps, schedule.warmup_steps, schedule.start_step) == (50, 5, 7)
    schedule.resize(0, start_step=7)
    assert schedule.total_steps == 1


def test_warmup_linear_decay_resize_share_survives_rounding():
    schedule = WarmupLinearDecay(1e-3, total_steps=1000, warmup_steps=100, sized_by_fit=True)
    schedule.resize(4, start_step=0)
    schedule.resize(1000, start_step=4)
    assert schedule.warmup_steps == 100


def test_warmup_linear_decay_config_round_trip():
    schedule = WarmupLinearDecay(3e-4, total_steps=500, warmup_steps=50, start_step=20, sized_by_fit=True)
    config = schedule.get_config()
    assert config == {
        "peak_learning_rate": 3e-4,
        "total_steps": 500,
        "warmup_steps": 50,
        "start_step": 20,
        "sized_by_fit": True,
        "warmup_share": 0.1,
    }
    restored = WarmupLinearDecay.from_config(config)
    assert restored.get_config() == config
    for step in [0, 20, 60, 300, 600]:
        assert rate(restored, step) == pytest.approx(rate(schedule, step))
    serialized = keras.saving.serialize_keras_object(schedule)
    assert serialized["registered_name"] == "keras_transfer>WarmupLinearDecay"
    assert keras.saving.deserialize_keras_object(serialized).get_config() == config
    # Inside an optimizer, as a saved model holds it.
    optimizer = keras.optimizers.AdamW(learning_rate=schedule)
    again = keras.optimizers.AdamW.from_config(optimizer.get_config())
    assert isinstance(again._learning_rate, WarmupLinearDecay)
    assert again._learning_rate.get_config() == config


@pytest.mark.parametrize(
    "kwargs, fragments",
    [
        ({"peak_learning_rate": 0, "total_steps": 10}, ["`peak_learning_rate` to be positive", "peak_learning_rate=0"]),
        ({"peak_learning_rate": -1e-3, "total_steps": 10}, ["`peak_learning_rate` to be positive"]),
        ({"peak_learning_rate": float("nan"), "total_steps": 10}, ["`peak_learning_rate` to be positive"]),
        ({"peak_learning_rate": 1e-3, "total_steps": 0}, ["total_steps >= 1", "total_steps=0"]),
        ({"peak_learning_rate": 1e-3, "total_steps": -5}, ["total_steps >= 1"]),
        ({"peak_learning_rate": 1e-3, "total_steps": 10, "warmup_steps": 11}, ["0 <= warmup_steps <= total_steps", "warmup_steps=11"]),
        ({"peak_learning_rate": 1e-3, "total_steps": 10, "warmup_steps": -1}, ["0 <= warmup_steps <= total_steps"]),
    ],
)
def test_warmup_linear_decay_bad_arguments(kwargs, fragments):
    with raises(ValueError, *fragments):
        WarmupLinearDecay(**kwargs)


def test_numpy_integers_are_integers(bert_preset, tmp_path):
    # Counts read from data (np.unique, len of an array, a config file
    # loaded with NumPy) arrive as NumPy integers.
    model = kt.TextClassifier.from_preset(
        bert_preset, num_classes=np.int64(2), sequence_length=np.int64(32), freeze=np.int64(1),
        hidden_units=[np.int32(8)],
    )
    assert model.preprocessor.sequence_length == 32 and type(model.preprocessor.sequence_length) is int
    kt.unfreeze(model, top=np.int64(2))
    model.compile()
    model.fit(TEXTS, LABELS, batch_size=np.int64(4), epochs=np.int64(1), verbose=0)
    assert model.predict(TEXTS, batch_size=np.int32(3), verbose=0).shape == (len(TEXTS), 2)
    model.save(tmp_path / "model.keras")  # the config holds Python ints only
    assert kt.load_model(tmp_path / "model.keras").get_layer("logits").units == 2


def test_a_dataset_of_raw_text_gets_advice(bert_model):
    class RawText(keras.utils.PyDataset):
        def __len__(self):
            return 2

        def __getitem__(self, index):
            return np.array(TEXTS[index * 5 : index * 5 + 5]), np.array(LABELS[index * 5 : index * 5 + 5])

    for call in (
        lambda: bert_model.fit(RawText(), verbose=0, cache_features=False),
        lambda: bert_model.evaluate(RawText(), verbose=0),
        lambda: bert_model.predict(RawText(), verbose=0),
    ):
        with raises(ValueError, "holds text", "Give raw texts and labels to `fit`"):
            call()
    with raises(ValueError, "string labels but the model has no `label_names`"):
        bert_model.fit(bert_model.preprocessor(TEXTS), np.array(["neg", "pos"] * 5), verbose=0)


def test_labels_beside_token_ids_are_checked_and_named(bert_preset):
    model = classifier(bert_preset, label_names=["neg", "pos"], num_classes=None)
    inputs = model.preprocessor(TEXTS)
    with raises(ValueError, "Label 2 at y[2] is outside 0..1"):
        model.fit(inputs, np.arange(10) % 4, verbose=0)
    with raises(ValueError, "Unknown labels ['good']"):
        model.evaluate(inputs, ["good"] * 10, verbose=0)
    names = ["neg", "pos"]
    by_name = model.evaluate(inputs, [names[label] for label in LABELS], verbose=0, return_dict=True)
    by_id = model.evaluate(inputs, np.array(LABELS), verbose=0, return_dict=True)
    assert by_name == pytest.approx(by_id)


def test_texts_and_labels_in_one_tuple_get_advice(bert_model):
    with raises(ValueError, "`x` is a tuple `(texts, labels)`", "fit(texts, labels)"):
        bert_model.fit((TEXTS, LABELS), verbose=0)
    with raises(ValueError, "`x` is a tuple `(texts, labels)`"):
        bert_model.evaluate((TEXTS, np.array(LABELS)), verbose=0)


def test_numpy_string_labels_are_label_names(bert_preset):
    model = classifier(bert_preset, label_names=["neg", "pos"], num_classes=None)
    names = np.array(["neg", "pos"])[LABELS]
    as_list = list(names)  # np.str_ items, as list(df.label.values) gives
    assert type(as_list[0]) is np.str_
    by_list = model.evaluate(TEXTS, as_list, verbose=0, return_dict=True)
    assert by_list == model.evaluate(TEXTS, names.tolist(), verbose=0, return_dict=True)
    fit(model, TEXTS, as_list, epochs=1)
    assert model.report(TEXTS, as_list).accuracy == pytest.approx(model.report(TEXTS, names.tolist()).accuracy)


def test_predict_labels_is_quiet_unless_asked(bert_preset, capsys):
    model = classifier(bert_preset, label_names=["neg", "pos"], num_classes=None)
    capsys.readouterr()
    assert len(model.predict_labels(["a good film", "bad"])) == 2
    assert capsys.readouterr().out == ""
    model.predict_labels(["a good film"], verbose=1)
    assert "step" in capsys.readouterr().out


def test_validation_split_cuts_where_keras_cuts_and_takes_weights_and_pairs_along(bert_preset):
    from keras_transfer.tasks.base import validation_cut

    assert validation_cut(10, 0.25) == 7  # Keras: floor(10 * 0.75)
    weights = np.linspace(0.5, 2.0, len(TEXTS)).astype("float32")
    histories = []
    for kwargs in (
        {"x": TEXTS, "y": LABELS, "sample_weight": weights, "validation_split": 0.25},
        {"x": TEXTS[:7], "y": LABELS[:7], "sample_weight": weights[:7],
         "validation_data": (TEXTS[7:], LABELS[7:], weights[7:])},
    ):
        keras.utils.set_random_seed(0)
        model = classifier(bert_preset)
        histories.append(model.fit(batch_size=4, epochs=2, seed=0, verbose=0, **kwargs).history)
    for key in histories[1]:
        np.testing.assert_allclose(histories[0][key], histories[1][key], rtol=1e-6, err_msg=key)
    pairs = kt.TextPairClassifier.from_preset(bert_preset, num_classes=2, sequence_length=32)
    history = pairs.fit((TEXTS, TEXTS[::-1]), LABELS, validation_split=0.2, batch_size=4, verbose=0)
    assert "val_loss" in history.history


def test_sample_weight_with_word_lists_is_refused(bert_preset):
    tagger = kt.TokenClassifier.from_preset(bert_preset, tag_names=["O", "B-PER", "I-PER"], sequence_length=16)
    with raises(ValueError, "`sample_weight` cannot go with this TaggedBatches"):
        tagger.fit([["good", "film"], ["bad"]], [["O", "O"], ["B-PER"]], sample_weight=np.zeros(2), verbose=0)
