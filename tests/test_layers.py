"""Tests for kt.layers.Pooling (keras_transfer/layers.py), plain Keras
models built over a backbone, and kt.load_model (keras_transfer/saving.py)."""

import keras
import numpy as np
import pytest
from helpers import TEXTS, dropout_rates, raises, requires_grad, snapshot

import keras_transfer as kt
from keras_transfer.layers import POOLING_MODES, Pooling

# Two examples, four positions, three features; right padding. The padded
# positions hold large values, so a pooling that reads them is caught.
FEATURES = np.array(
    [
        [[1.0, -2.0, 3.0], [4.0, 5.0, -6.0], [-7.0, 8.0, 0.5], [99.0, 99.0, 99.0]],
        [[0.5, 1.5, -1.0], [-3.0, -4.0, 2.0], [50.0, -50.0, 50.0], [-99.0, 99.0, -99.0]],
    ],
    dtype="float32",
)
MASK = np.array([[True, True, True, False], [True, True, False, False]])


def expected(mode):
    rows = []
    for features, mask in zip(FEATURES, MASK):
        real = features[mask]
        rows.append(
            {
                "cls": features[0],
                "mean": real.mean(axis=0),
                "max": real.max(axis=0),
                "last": real[-1],
            }[mode]
        )
    return np.stack(rows)


def numpy(x):
    return keras.ops.convert_to_numpy(x)


# ------------------------------------------------------------ numerics


@pytest.mark.parametrize("mode", ["cls", "mean", "max", "last"])
def test_pooling_numerics(mode):
    out = Pooling(mode)(FEATURES, MASK)
    assert tuple(out.shape) == (2, 3)
    np.testing.assert_allclose(numpy(out), expected(mode), rtol=1e-6)


@pytest.mark.parametrize("mode", ["mean", "max", "last"])
@pytest.mark.parametrize("mask_dtype", ["bool", "int32", "float32"])
def test_pooling_accepts_any_mask_dtype(mode, mask_dtype):
    out = Pooling(mode)(FEATURES, MASK.astype(mask_dtype))
    np.testing.assert_allclose(numpy(out), expected(mode), rtol=1e-6)


@pytest.mark.parametrize("mode", ["cls", "mean", "max", "last"])
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("mask_dtype", ["bool", "int32", "float32"])
def test_pooling_on_torch_tensors_is_the_ops_arithmetic_bit_for_bit(mode, dtype, mask_dtype, monkeypatch):
    # Torch tensors take the torch calls that Keras' ops make; compare the
    # outputs and the features' gradients with the ops path itself.
    import torch

    from keras_transfer import layers

    rng = np.random.default_rng(0)
    features = rng.normal(size=(3, 6, 5)).astype("float32")
    # Right padding, left padding, none.
    mask = np.array([[1, 1, 1, 1, 0, 0], [0, 0, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1]]).astype(mask_dtype)

    def run():
        x = torch.tensor(features).to(getattr(torch, dtype)).requires_grad_()
        out = Pooling(mode)(x, torch.tensor(mask))
        (out.float() * torch.arange(out.numel()).view(out.shape)).sum().backward()
        return out.detach().float().numpy(), x.grad.float().numpy()

    taken = []
    original = layers._torch_pooling
    monkeypatch.setattr(layers, "_torch_pooling", lambda *args: taken.append(1) or original(*args))
    fast = run()
    assert taken
    monkeypatch.setattr(layers, "_TORCH_POOLING_DTYPES", ())  # every call takes keras.ops
    slow = run()
    assert len(taken) == 1
    for a, b in zip(fast, slow):
        np.testing.assert_array_equal(a, b)


def test_pooling_all_negative_features_max():
    # The masked maximum must not be the padding's fill value or zero.
    features = -np.abs(FEATURES) - 1
    out = numpy(Pooling("max")(features, MASK))
    np.testing.assert_allclose(out[0], features[0, :3].max(axis=0))
    assert (out < 0).all()


def test_pooling_reads_a_backbone_dictionary():
    pooled = np.array([[0.1, 0.2, 0.3], [0.4, 0.5, 0.6]], dtype="float32")
    features = {"sequence_output": FEATURES, "pooled_output": pooled}
    np.testing.assert_allclose(numpy(Pooling("pooled")(features)), pooled)
    for mode in ["cls", "mean", "max", "last"]:
        np.testing.assert_allclose(numpy(Pooling(mode)(features, MASK)), expected(mode), rtol=1e-6)


def test_pooling_compute_output_shape():
    assert Pooling("mean").compute_output_shape((None, 7, 16)) == (None, 16)
    shapes = {"sequence_output": (None, 7, 16), "pooled_output": (None, 16)}
    assert tuple(Pooling("pooled").compute_output_shape(shapes)) == (None, 16)
    assert Pooling("cls").compute_output_shape(shapes) == (None, 16)


# ------------------------------------------------------------ errors


@pytest.mark.parametrize("mode", ["avg", "CLS", "", None, "first", 0])
def test_unknown_pooling_mode(mode):
    with raises(ValueError, f"Unknown pooling mode {mode!r}", str(POOLING_MODES)):
        Pooling(mode)


@pytest.mark.parametrize("mode", ["mean", "max", "last"])
def test_pooling_without_mask(mode):
    with raises(ValueError, f"Pooling({mode!r}) needs the padding mask", "padding_mask"):
        Pooling(mode)(FEATURES)


def test_pooled_needs_a_pooled_output():
    with raises(ValueError, "pooled_output", "'cls', 'mean'"):
        Pooling("pooled")(FEATURES)
    with raises(ValueError, "pooled_output"):
        Pooling("pooled")({"sequence_output": FEATURES})


# ------------------------------------------------------------ config


@pytest.mark.parametrize("mode", POOLING_MODES)
def test_pooling_config_round_trip(mode):
    layer = Pooling(mode, name=f"pool_{mode}")
    config = layer.get_config()
    assert config["mode"] == mode
    restored = Pooling.from_config(config)
    assert restored.mode == mode and restored.name == f"pool_{mode}"
    assert restored.get_config() == config
    serialized = keras.saving.serialize_keras_object(layer)
    assert serialized["registered_name"] == "keras_transfer>Pooling"
    again = keras.saving.deserialize_keras_object(serialized)
    assert isinstance(again, Pooling) and again.mode == mode


# ------------------------------------------------------------ in a plain model


def plain_model(backbone, mode, dropout=0.0):
    """What a user writes: backbone → Pooling → Dropout → Dense."""
    inputs = backbone.input
    features = backbone(inputs)
    pooled = kt.layers.Pooling(mode)(features, inputs["padding_mask"])
    x = keras.layers.Dropout(dropout, name="head_dropout")(pooled)
    outputs = keras.layers.Dense(3, name="head")(x)
    return keras.Model(inputs, outputs)


@pytest.mark.parametrize("mode", ["cls", "pooled", "max"])  # "mean", "last": over GPT-2 below
def test_plain_model_saves_and_reloads(bert_preset, tmp_path, mode):
    backbone, preprocessor = kt.load_backbone(bert_preset)
    model = plain_model(backbone, mode)
    batch = preprocessor(TEXTS)
    before = numpy(model(batch))
    path = tmp_path / "plain.keras"
    model.save(path)
    reloaded = kt.load_model(path)
    assert [type(l).__name__ for l in reloaded.layers] == [type(l).__name__ for l in model.layers]
    pooling = [l for l in reloaded.layers if isinstance(l, Pooling)]
    assert len(pooling) == 1 and pooling[0].mode == mode
    np.testing.assert_allclose(numpy(reloaded(batch)), before, atol=1e-6)


@pytest.mark.parametrize("mode", ["mean", "last"])
def test_plain_model_over_gpt2(gpt2_preset, tmp_path, mode):
    backbone, preprocessor = kt.load_backbone(gpt2_preset)
    model = plain_model(backbone, mode)
    batch = preprocessor(TEXTS)
    model.save(tmp_path / "plain.keras")
    reloaded = kt.load_model(tmp_path / "plain.keras")
    np.testing.assert_allclose(numpy(reloaded(batch)), numpy(model(batch)), atol=1e-6)


# The optimizer state is lost on reload: see test_plain_model_reload_keeps_the_optimizer_state.
@pytest.mark.filterwarnings("ignore:Skipping variable loading for optimizer")
def test_plain_model_with_frozen_backbone_reloads_frozen(preset, tmp_path):
    backbone, preprocessor = kt.load_backbone(preset)
    model = plain_model(backbone, "mean", dropout=0.2)
    kt.freeze(backbone)
    assert {v.path.split("/")[0] for v in model.trainable_weights} == {"head"}
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    batch = preprocessor(TEXTS)
    labels = np.arange(len(TEXTS)) % 3
    model.save(tmp_path / "plain.keras")

    reloaded = kt.load_model(tmp_path / "plain.keras")
    inner = reloaded.get_layer(backbone.name)
    assert not inner.trainable
    assert all(not v.trainable for v in inner.weights)
    assert not any(requires_grad(v) for v in inner.weights)
    assert all(r == 0.0 for r in dropout_rates(inner))  # inference mode again
    assert reloaded.get_layer("head_dropout").rate == pytest.approx(0.2)
    assert {v.path.split("/")[0] for v in reloaded.trainable_weights} == {"head"}

    # Training the reloaded model changes the head, never the backbone.
    backbone_before = snapshot(inner)
    head_before = snapshot(reloaded.get_layer("head"))
    reloaded.fit(batch, labels, epochs=1, batch_size=4, verbose=0)
    for path, value in snapshot(inner).items():
        np.testing.assert_array_equal(value, backbone_before[path], err_msg=path)
    assert any(
        not np.array_equal(value, head_before[path])
        for path, value in snapshot(reloaded.get_layer("head")).items()
    )

    # And unfreezing it brings its dropout back.
    kt.unfreeze(inner)
    assert all(r == pytest.approx(0.1) for r in dropout_rates(inner))


def test_dropout_rate_survives_saving_a_model_frozen_whole(bert_preset, tmp_path):
    backbone, _ = kt.load_backbone(bert_preset)
    model = plain_model(backbone, "cls", dropout=0.3)
    kt.freeze(model)  # a plain model has no .backbone: frozen whole
    model.save(tmp_path / "plain.keras")
    reloaded = kt.load_model(tmp_path / "plain.keras")
    kt.unfreeze(reloaded)
    assert reloaded.get_layer("head_dropout").rate == pytest.approx(0.3)


# ------------------------------------------------------------ kt.load_model errors


def test_load_model_missing_file(tmp_path):
    with raises(FileNotFoundError, "No saved model at", "nope.keras"):
        kt.load_model(tmp_path / "nope.keras")


@pytest.mark.parametrize("name", ["model.h5", "model.weights.h5", "model", "model.zip"])
def test_load_model_needs_a_keras_file(tmp_path, name):
    path = tmp_path / name
    path.write_bytes(b"PK")
    with raises(ValueError, "kt.load_model reads `.keras` files", "kt.load_backbone"):
        kt.load_model(str(path))


@pytest.mark.parametrize("content", [b"", b"not a zip", b"PK\x03\x04truncated"])
def test_load_model_corrupted_file(tmp_path, content):
    path = tmp_path / "broken.keras"
    path.write_bytes(content)
    with raises(ValueError, "is not a valid `.keras` file", "Save the model again"):
        kt.load_model(path)


def test_load_model_truncated_archive(bert_preset, tmp_path):
    backbone, _ = kt.load_backbone(bert_preset)
    model = plain_model(backbone, "cls")
    model.save(tmp_path / "whole.keras")
    data = (tmp_path / "whole.keras").read_bytes()
    (tmp_path / "cut.keras").write_bytes(data[: len(data) // 2])
    with raises(ValueError, "not a valid `.keras` file"):
        kt.load_model(tmp_path / "cut.keras")


def test_plain_model_reload_keeps_the_optimizer_state(bert_preset, tmp_path):
    backbone, preprocessor = kt.load_backbone(bert_preset)
    model = plain_model(backbone, "cls")
    kt.freeze(backbone)
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(preprocessor(TEXTS), np.arange(len(TEXTS)) % 3, epochs=2, batch_size=4, verbose=0)
    model.save(tmp_path / "plain.keras")
    reloaded = kt.load_model(tmp_path / "plain.keras")
    assert int(reloaded.optimizer.iterations.numpy()) == int(model.optimizer.iterations.numpy()) == 6
    assert len(reloaded.optimizer.variables) == len(model.optimizer.variables)
