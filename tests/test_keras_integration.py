"""A task model as a Keras user drives it: callbacks, fit's own arguments,
inputs Keras takes, History, saving, cloning. Each test compares with
what `keras.Model` does for a plain functional model."""

import csv

import keras
import numpy as np
import pytest
from helpers import LABELS, TEXTS, raises, snapshot

import keras_transfer as kt


def classifier(preset, **kwargs):
    keras.utils.set_random_seed(0)
    model = kt.TextClassifier.from_preset(preset, num_classes=2, sequence_length=16, **kwargs)
    model.compile(learning_rate=1e-2)
    return model


def fit(model, **kwargs):
    kwargs.setdefault("verbose", 0)
    return model.fit(TEXTS, LABELS, **kwargs)


# Callbacks that set the learning rate -----------------------------------------


@pytest.mark.parametrize("cache_features", ["auto", False])
@pytest.mark.parametrize(
    "callback",
    [
        lambda: keras.callbacks.ReduceLROnPlateau(monitor="loss", patience=0, min_delta=10.0),
        lambda: keras.callbacks.LearningRateScheduler(lambda epoch, rate: rate * 0.5),
    ],
    ids=["ReduceLROnPlateau", "LearningRateScheduler"],
)
def test_rate_callback_with_the_default_schedule_fails_before_training(bert_preset, callback, cache_features):
    # Keras raises its TypeError only when the callback first sets the rate:
    # ReduceLROnPlateau after `patience` epochs, the rest of the run lost.
    model = classifier(bert_preset)
    before = snapshot(model)
    callback = callback()
    with raises(ValueError, type(callback).__name__, "WarmupLinearDecay", "compile()", "AdamW(learning_rate="):
        fit(model, epochs=4, callbacks=[callback], cache_features=cache_features)
    assert all(np.array_equal(v, before[k]) for k, v in snapshot(model).items())


def test_rate_callback_with_a_schedule_of_your_own_is_refused_too(bert_preset):
    model = classifier(bert_preset)
    schedule = keras.optimizers.schedules.ExponentialDecay(1e-2, decay_steps=10, decay_rate=0.9)
    model.compile(optimizer=keras.optimizers.AdamW(learning_rate=schedule))
    with raises(ValueError, "LearningRateScheduler", "ExponentialDecay"):
        fit(model, callbacks=keras.callbacks.CallbackList([keras.callbacks.LearningRateScheduler(lambda e, r: r)]))


@pytest.mark.parametrize("cache_features", ["auto", False])
def test_rate_callbacks_with_a_fixed_rate(bert_preset, cache_features):
    model = classifier(bert_preset)
    model.compile(optimizer=keras.optimizers.AdamW(learning_rate=1e-2))
    plateau = keras.callbacks.ReduceLROnPlateau(monitor="val_loss", patience=0, factor=0.5, min_delta=10.0)
    history = fit(model, epochs=3, validation_data=(TEXTS, LABELS), callbacks=[plateau], cache_features=cache_features)
    # Keras logs the rate an epoch trained at; each epoch after the first lowers it.
    np.testing.assert_allclose(history.history["learning_rate"], [1e-2, 1e-2, 5e-3], rtol=1e-6)
    assert float(model.optimizer.learning_rate) == pytest.approx(2.5e-3)
    scheduler = keras.callbacks.LearningRateScheduler(lambda epoch, rate: 1e-3 * (epoch + 1))
    history = fit(model, epochs=2, callbacks=[scheduler], cache_features=cache_features)
    np.testing.assert_allclose(history.history["learning_rate"], [1e-3, 2e-3], rtol=1e-6)


# stop_training and History ------------------------------------------------------


@pytest.mark.parametrize("cache_features", [True, False])
def test_stop_training_set_on_the_model_stops_fit(bert_preset, cache_features):
    # Keras' pattern from a closure: `model.stop_training = True`. With
    # cached features the head trains in a model of its own; the flag set
    # on the task model must stop it all the same.
    model = classifier(bert_preset)
    stop = keras.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: setattr(model, "stop_training", True))
    history = fit(model, epochs=4, callbacks=[stop], cache_features=cache_features)
    assert history.epoch == [0]
    assert model.stop_training
    # The next fit starts afresh, as Keras' does.
    assert fit(model, epochs=2, cache_features=cache_features).epoch == [0, 1]
    assert not model.stop_training


def test_stop_training_from_a_batch_callback_stops_within_the_epoch(bert_preset):
    model = classifier(bert_preset)
    batches = []

    def on_batch(batch, logs):
        batches.append(batch)
        model.stop_training = True

    fit(model, epochs=2, batch_size=2, cache_features=True,
        callbacks=[keras.callbacks.LambdaCallback(on_train_batch_end=on_batch)])
    assert batches == [0]


def test_early_stopping_leaves_stop_training_set(bert_preset):
    model = classifier(bert_preset)
    stop = keras.callbacks.EarlyStopping(monitor="loss", patience=0, min_delta=10.0)
    history = fit(model, epochs=4, callbacks=[stop], cache_features=True)
    assert len(history.epoch) < 4 and model.stop_training


@pytest.mark.parametrize("cache_features", [True, False])
def test_history_belongs_to_the_model(bert_preset, cache_features):
    model = classifier(bert_preset)
    history = fit(model, epochs=2, validation_data=(TEXTS, LABELS), cache_features=cache_features)
    assert model.history is history  # (`history.model` is the head when features were cached)
    assert history.epoch == [0, 1]
    logged = {k for k in history.history if not k.startswith("val_")}
    assert logged == set(model.evaluate(TEXTS, LABELS, return_dict=True, verbose=0))
    assert {f"val_{k}" for k in logged} == set(history.history) - logged


@pytest.mark.parametrize("cache_features", [True, False])
def test_fit_arguments_keras_takes(bert_preset, cache_features):
    model = classifier(bert_preset)
    history = fit(model, epochs=4, validation_data=(TEXTS, LABELS), validation_freq=2, cache_features=cache_features)
    assert len(history.history["loss"]) == 4 and len(history.history["val_loss"]) == 2
    history = fit(model, epochs=5, initial_epoch=3, shuffle=False, cache_features=cache_features)
    assert history.epoch == [3, 4]
    for verbose in (0, 1, 2):
        assert len(fit(model, epochs=1, verbose=verbose, cache_features=cache_features).epoch) == 1


def test_steps_per_epoch(bert_preset):
    model = classifier(bert_preset)
    steps = []
    counter = keras.callbacks.LambdaCallback(on_train_batch_end=lambda batch, logs: steps.append(batch))
    history = fit(model, epochs=2, steps_per_epoch=2, batch_size=2, callbacks=[counter])
    assert history.epoch == [0, 1] and steps == [0, 1, 0, 1]


@pytest.mark.parametrize("cache_features", ["auto", False])
def test_callbacks_as_a_callback_list(bert_preset, cache_features):
    # Keras' fit takes a `keras.callbacks.CallbackList` as well as a list.
    model = classifier(bert_preset)
    stop = keras.callbacks.EarlyStopping(monitor="loss", patience=0, min_delta=10.0)
    given = keras.callbacks.CallbackList([stop])
    for _ in range(2):
        history = fit(model, epochs=4, callbacks=given, cache_features=cache_features, stop_on_nan=False)
        assert len(history.epoch) == 2 and stop.stopped_epoch == 1
        history = fit(model, epochs=4, callbacks=given, cache_features=cache_features)
        assert len(history.epoch) == 2
    assert given.callbacks == [stop]  # what fit adds stays out of the user's list


# Callbacks that see the model ---------------------------------------------------


def test_early_stopping_restores_the_best_weights_on_cached_features(bert_preset):
    model = classifier(bert_preset)
    stop = keras.callbacks.EarlyStopping(monitor="val_accuracy", mode="max", patience=1, restore_best_weights=True)
    history = fit(model, epochs=6, validation_data=(TEXTS[:6], LABELS[:6]), callbacks=[stop], cache_features=True)
    best = history.history["val_loss"][stop.best_epoch]
    assert model.evaluate(TEXTS[:6], LABELS[:6], return_dict=True, verbose=0)["loss"] == pytest.approx(best, rel=1e-5)


def test_checkpoints_reload_and_predict_the_same(bert_preset, tmp_path):
    model = classifier(bert_preset)
    whole = keras.callbacks.ModelCheckpoint(tmp_path / "best.keras", monitor="val_loss", save_best_only=True)
    weights = keras.callbacks.ModelCheckpoint(
        tmp_path / "best.weights.h5", monitor="val_loss", save_best_only=True, save_weights_only=True
    )
    history = fit(model, epochs=3, validation_data=(TEXTS[:6], LABELS[:6]), callbacks=[whole, weights])
    best = min(history.history["val_loss"])
    for loaded in (keras.models.load_model(tmp_path / "best.keras"), kt.load_model(tmp_path / "best.keras")):
        assert isinstance(loaded, kt.TextClassifier)
        assert loaded.evaluate(TEXTS[:6], LABELS[:6], return_dict=True, verbose=0)["loss"] == pytest.approx(best, rel=1e-5)
    fresh = classifier(bert_preset)
    fresh.load_weights(tmp_path / "best.weights.h5")
    assert fresh.evaluate(TEXTS[:6], LABELS[:6], return_dict=True, verbose=0)["loss"] == pytest.approx(best, rel=1e-5)
    # The last epoch was the best (the model still holds its weights): all agree.
    if history.history["val_loss"][-1] == best:
        np.testing.assert_allclose(fresh.predict(TEXTS, verbose=0), model.predict(TEXTS, verbose=0), atol=1e-6)


def test_csv_logger_and_terminate_on_nan_keep_feature_caching(bert_preset, tmp_path, capsys):
    model = classifier(bert_preset)
    path = tmp_path / "log.csv"
    history = fit(
        model, epochs=2, validation_data=(TEXTS, LABELS), verbose=1,
        callbacks=[keras.callbacks.CSVLogger(path), keras.callbacks.TerminateOnNaN()],
    )
    assert "computing its features once" in capsys.readouterr().out
    with open(path) as handle:
        rows = list(csv.DictReader(handle))
    assert [int(row["epoch"]) for row in rows] == [0, 1]
    assert set(rows[0]) - {"epoch"} == set(history.history)
    np.testing.assert_allclose([float(row["val_loss"]) for row in rows], history.history["val_loss"], rtol=1e-6)


# Inputs Keras users pass ----------------------------------------------------------


def test_texts_as_lists_tuples_and_numpy_arrays(bert_preset):
    model = classifier(bert_preset)
    expected = model.predict(TEXTS, verbose=0)
    for texts in (tuple(TEXTS), np.array(TEXTS), np.array(TEXTS, dtype=object)):
        np.testing.assert_array_equal(model.predict(texts, batch_size=3, verbose=0), expected)
    for texts, labels in ((np.array(TEXTS), np.array(LABELS)), (tuple(TEXTS), tuple(LABELS))):
        assert fit(model, epochs=1).epoch == [0]
        assert model.evaluate(texts, labels, verbose=0, return_dict=True).keys() == {"loss", "accuracy"}


def test_validation_data_as_a_list(bert_preset):
    # Keras takes `validation_data=[x_val, y_val]` as it takes a tuple.
    model = classifier(bert_preset)
    history = fit(model, validation_data=[TEXTS, LABELS])
    assert "val_loss" in history.history
    history = fit(model, validation_data=[np.array(TEXTS), np.array(LABELS)])
    assert "val_loss" in history.history


def test_py_dataset_and_generator_of_token_ids(bert_preset):
    model = classifier(bert_preset)

    class Batches(keras.utils.PyDataset):
        def __len__(self):
            return 2

        def __getitem__(self, index):
            rows = slice(5 * index, 5 * index + 5)
            return model.preprocessor(TEXTS[rows]), np.array(LABELS[rows])

    assert fit_data(model, Batches()).epoch == [0]
    assert fit_data(model, (Batches()[i] for i in range(2))).epoch == [0]
    assert set(model.evaluate(Batches(), verbose=0, return_dict=True)) == {"loss", "accuracy"}


def fit_data(model, data):
    return model.fit(data, epochs=1, verbose=0)


# Model API --------------------------------------------------------------------------


def test_summary_and_counts_when_frozen(bert_preset):
    model = classifier(bert_preset)
    lines = []
    model.summary(print_fn=lambda line, **kwargs: lines.append(line))
    text = "\n".join(lines)
    head = sum(int(np.prod(v.shape)) for v in model.get_layer("logits").weights)
    assert f"Trainable params: {head:,}" in text
    assert f"Non-trainable params: {model.count_params() - head:,}" in text
    assert kt.count_params(model) == (head, model.count_params() - head)
    assert model.get_layer(model.backbone.name) is model.backbone
    assert model.layers[-1].name == "logits"


def test_trainable_false_on_the_whole_task_is_saved(bert_preset, tmp_path):
    model = classifier(bert_preset)
    model.trainable = False
    assert model.trainable_weights == []
    model.save(tmp_path / "frozen.keras")
    loaded = kt.load_model(tmp_path / "frozen.keras")
    assert not loaded.trainable and loaded.trainable_weights == []


def test_clone_model_of_a_backbone(bert_preset):
    # `kt.load_backbone` runs the graph with its own runner; cloning runs
    # it symbolically with Keras' clone function, which must still work.
    backbone, preprocessor = kt.load_backbone(bert_preset, sequence_length=16)
    clone = keras.models.clone_model(backbone)
    assert all(a is not b for a, b in zip(clone.weights, backbone.weights))
    clone.set_weights(backbone.get_weights())
    x = preprocessor(TEXTS)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(clone(x)["pooled_output"]),
        keras.ops.convert_to_numpy(backbone(x)["pooled_output"]),
        atol=1e-5,
    )


@pytest.mark.parametrize("call", ["train_on_batch", "test_on_batch", "predict_on_batch"])
def test_on_batch_calls_say_what_to_do_with_raw_text(bert_preset, call):
    model = classifier(bert_preset)
    labels = np.array(LABELS[:4])
    args = (TEXTS[:4],) if call == "predict_on_batch" else (TEXTS[:4], labels)
    with raises(ValueError, f"`{call}` takes one batch of token ids", "model.preprocessor(texts)"):
        getattr(model, call)(*args)
    # The same batch, preprocessed, runs as in Keras.
    x = model.preprocessor(TEXTS[:4])
    if call == "predict_on_batch":
        assert model.predict_on_batch(x).shape == (4, 2)
    else:
        assert np.isfinite(getattr(model, call)(x, labels)).all()
        assert set(getattr(model, call)(x, labels, return_dict=True)) == {"loss", "accuracy"}
