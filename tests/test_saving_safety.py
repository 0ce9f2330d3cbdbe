"""Saving never leaves a broken file in place; loading never runs code."""

import os

import keras
import numpy as np
import pytest

import keras_transfer as kt


def test_save_is_atomic_when_interrupted(bert_preset, tmp_path, monkeypatch):
    model = kt.TextClassifier.from_preset(bert_preset, num_classes=2, sequence_length=16)
    target = tmp_path / "model.keras"
    model.save(target)
    good = target.read_bytes()

    def crash(self, filepath, *args, **kwargs):
        with open(filepath, "wb") as half_written:  # a save cut off mid-write
            half_written.write(good[: len(good) // 3])
        raise KeyboardInterrupt("killed during save")

    monkeypatch.setattr(keras.Model, "save", crash)
    with pytest.raises(KeyboardInterrupt):
        model.save(target)
    assert target.read_bytes() == good
    assert sorted(os.listdir(tmp_path)) == ["model.keras"]  # no partial file left


def test_save_refuses_to_overwrite_when_asked(bert_preset, tmp_path):
    model = kt.TextClassifier.from_preset(bert_preset, num_classes=2, sequence_length=16)
    model.save(tmp_path / "m.keras")
    with pytest.raises(FileExistsError, match="overwrite=True"):
        model.save(tmp_path / "m.keras", overwrite=False)


def test_save_names_a_missing_folder_and_refuses_hdf5(bert_preset, tmp_path):
    model = kt.TextClassifier.from_preset(bert_preset, num_classes=2, sequence_length=16)
    with pytest.raises(FileNotFoundError, match="the folder .*missing.* does not exist"):
        model.save(tmp_path / "missing" / "m.keras")
    assert not (tmp_path / "missing").exists()
    with pytest.raises(ValueError, match=r"a keras_transfer model saves to a `\.keras` file"):
        model.save(tmp_path / "m.h5")
    assert os.listdir(tmp_path) == []
    model.save_weights(tmp_path / "m.weights.h5")  # weights alone still go to HDF5
    assert os.listdir(tmp_path) == ["m.weights.h5"]


def test_a_file_with_a_lambda_layer_is_refused(tmp_path):
    inputs = keras.Input((2,))
    outputs = keras.layers.Lambda(lambda x: x * 2)(inputs)
    keras.Model(inputs, outputs).save(tmp_path / "lambda.keras")
    with pytest.raises(ValueError, match="(?i)lambda|safe_mode"):
        kt.load_model(tmp_path / "lambda.keras")


def test_saved_predictions_survive_a_reload(bert_preset, tmp_path):
    model = kt.TextClassifier.from_preset(bert_preset, label_names=["neg", "pos"], sequence_length=16)
    texts = ["a good film", "a bad film", "great"]
    model.save(tmp_path / "m.keras")
    reloaded = kt.load_model(tmp_path / "m.keras")
    np.testing.assert_allclose(reloaded.predict(texts, verbose=0), model.predict(texts, verbose=0), atol=1e-6)
    assert reloaded.preprocessor.sequence_length == 16
    assert reloaded.label_names == ["neg", "pos"]
