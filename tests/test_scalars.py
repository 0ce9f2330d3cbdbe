"""Python numbers to device tensors without a host sync (`keras_transfer.scalars`)."""

import keras
import numpy as np
import pytest
import torch
from keras.src.backend.torch import core

import keras_transfer  # noqa: F401  (installs the conversion)
from keras_transfer import scalars

FLOAT_DTYPES = ("float16", "bfloat16", "float32", "float64")
INT_DTYPES = ("int8", "uint8", "int16", "int32", "int64")


def keras_original():
    return core.convert_to_tensor._keras_transfer_original


def same(a, b):
    assert a.dtype == b.dtype and a.shape == b.shape == ()
    assert torch.equal(a, b) or (a.isnan() and b.isnan()), (a, b)


def test_installed_on_import_in_every_backend_module_that_binds_it():
    from keras.src.backend.torch import math, nn
    from keras.src.backend.torch import numpy as torch_numpy

    assert scalars.installed()
    for module in (core, nn, torch_numpy, math):
        assert module.convert_to_tensor is core.convert_to_tensor
    assert keras.src.backend.convert_to_tensor is core.convert_to_tensor


def random_values(seed=0):
    rng = np.random.default_rng(seed)
    floats = np.concatenate([
        rng.standard_normal(200) * 10.0 ** rng.integers(-8, 8, 200),
        [0.0, -0.0, 1e-45, 6e-8, 65504.0, 65520.0, 3.38953e38 * -0.7, float("inf"), float("nan")],
    ])
    return [float(v) for v in floats]


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_floats_match_keras_conversion_bit_for_bit(dtype):
    for value in random_values():
        same(scalars.scalar_tensor(value, dtype, "cpu"), keras_original()(value, dtype=dtype))


@pytest.mark.parametrize("dtype", INT_DTYPES + ("bool", "float32"))
def test_ints_and_bools_match_keras_conversion(dtype):
    for value in (0, 1, -1, 7, 127, 255, True, False):
        if (dtype.startswith("uint") and value == -1) or (dtype == "int8" and value == 255):
            continue  # out of range: the fill refuses, Keras' own path decides (below)
        same(scalars.scalar_tensor(value, dtype, "cpu"), keras_original()(value, dtype=dtype))


def test_default_dtypes_follow_keras_rules():
    for value in (True, 3, -(2**31), 2**31 - 1, 2**31, -(2**31) - 1, 2.5):
        same(scalars.scalar_tensor(value, None, "cpu"), keras_original()(value))
    previous = keras.config.floatx()
    keras.config.set_floatx("float64")
    try:
        assert scalars.scalar_tensor(0.5).dtype == keras_original()(0.5).dtype == torch.float64
    finally:
        keras.config.set_floatx(previous)


@pytest.fixture
def as_tensor_calls(monkeypatch):
    calls = []
    real = torch.as_tensor

    def counting(*args, **kwargs):
        calls.append(kwargs.get("device"))
        return real(*args, **kwargs)

    monkeypatch.setattr(torch, "as_tensor", counting)
    return calls


def test_off_the_cpu_numbers_are_filled_on_the_device_not_copied(as_tensor_calls):
    # "meta" stands in for a GPU here: any device but the CPU takes the fill path.
    with keras.device("meta"):
        x = keras.ops.convert_to_tensor(1.5)
        y = keras.ops.add(keras.ops.ones((3,)), 2)  # the 2 goes through the backend's own binding
        flag = keras.ops.convert_to_tensor(True)
        wide = keras.ops.convert_to_tensor(2**40)
    assert as_tensor_calls == []
    assert (x.device.type, x.dtype) == ("meta", torch.float32)
    assert (y.device.type, y.dtype, tuple(y.shape)) == ("meta", torch.float32, (3,))
    assert (flag.dtype, wide.dtype) == (torch.bool, torch.int64)


@pytest.fixture
def tensor_moves(monkeypatch):
    """Records every `Tensor.to` call (Keras moves each converted tensor with one)."""
    moves = []
    real = torch.Tensor.to

    def counting(self, *args, **kwargs):
        moves.append(args)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(torch.Tensor, "to", counting)
    return moves


def test_tensors_on_keras_device_come_back_as_they_are(tensor_moves):
    x = torch.arange(3, dtype=torch.float32)
    weight = torch.nn.Parameter(torch.ones(2))
    assert keras_original()(x) is x and tensor_moves  # Keras: the same tensor, after a move op
    tensor_moves.clear()
    assert keras.ops.convert_to_tensor(x) is x
    assert keras.ops.convert_to_tensor(x, dtype="float32") is x
    assert keras.ops.convert_to_tensor(weight) is weight
    assert tensor_moves == []
    half = keras.ops.convert_to_tensor(x, dtype="float16")
    assert tensor_moves == [(torch.float16,)]  # one cast, no move
    reference = keras_original()(x, dtype="float16")
    assert half.dtype == reference.dtype and torch.equal(half, reference)
    with pytest.raises(ValueError):
        keras.ops.convert_to_tensor(x, dtype="not_a_dtype")  # Keras' own error


def test_tensors_elsewhere_or_of_subclasses_take_keras_path(tensor_moves):
    x = torch.arange(3, dtype=torch.float32)
    with keras.device("meta"):
        moved = keras.ops.convert_to_tensor(x)
    assert moved.device.type == "meta" and tensor_moves
    tensor_moves.clear()

    class Tagged(torch.Tensor):
        pass

    tagged = x.as_subclass(Tagged)
    assert torch.equal(keras.ops.convert_to_tensor(tagged), x) and tensor_moves


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_a_cuda_tensor_on_the_current_device_comes_back_as_it_is(tensor_moves):
    x = torch.ones(3, device="cuda")
    with keras.device("cuda"):
        assert keras.ops.convert_to_tensor(x) is x
    assert tensor_moves == []


def test_cpu_numbers_and_everything_else_take_keras_own_path(as_tensor_calls):
    assert float(keras.ops.convert_to_tensor(1.5)) == 1.5
    keras.ops.convert_to_tensor([1.0, 2.0])
    assert len(as_tensor_calls) == 2


def test_a_value_the_fill_refuses_goes_to_keras():
    with keras.device("meta"):
        big = keras.ops.convert_to_tensor(1e40, dtype="float32")  # as_tensor gives inf; full raises
    assert big.dtype == torch.float32
    with pytest.raises(ValueError, match="sparse"):
        keras.ops.convert_to_tensor(1.0, sparse=True)


def test_metrics_and_optimizer_steps_on_a_device_make_no_host_copies(as_tensor_calls):
    """The per-step Keras bookkeeping that synchronized on the H100."""
    with keras.device("meta"):
        mean = keras.metrics.Mean()
        mean.update_state(keras.ops.ones((4,)))
        mean.reset_state()
        counter = keras.Variable(0, dtype="int64", trainable=False)
        counter.assign_add(1)
    assert as_tensor_calls == []


def test_uninstall_restores_keras_function_and_install_is_idempotent():
    from keras.src.backend.torch import nn

    wrapper = core.convert_to_tensor
    original = keras_original()
    try:
        scalars.uninstall()
        assert not scalars.installed()
        assert core.convert_to_tensor is original and nn.convert_to_tensor is original
    finally:
        scalars.install()
        scalars.install()
    assert scalars.installed()
    assert nn.convert_to_tensor is core.convert_to_tensor
    assert core.convert_to_tensor._keras_transfer_original is original
    assert core.convert_to_tensor is not wrapper  # a fresh wrapper, one level deep


@pytest.mark.parametrize(
    "values, dtype",
    [((2, 16), "int32"), ([1.5, -2.0, 3.0], None), ((3, 4), None), ([True, False], None), ([1, 2.5], None),
     ([1.0, 2.0], "bfloat16"), ((7,), "float16")],
)
def test_short_number_lists_match_keras_conversion(values, dtype):
    same_list = scalars.short_list_tensor(values, dtype, "cpu")
    want = keras_original()(values, dtype=dtype)
    assert same_list.dtype == want.dtype and torch.equal(same_list, want)


def test_short_lists_off_the_cpu_skip_keras_path_and_long_or_mixed_ones_do_not(as_tensor_calls):
    with keras.device("meta"):
        shape = keras.ops.convert_to_tensor((4, 16), dtype="int32")  # Keras' losses do this every step
    assert (shape.device.type, shape.dtype, tuple(shape.shape)) == ("meta", torch.int32, (2,))
    assert as_tensor_calls == [None]  # built on the host, then copied; Keras' path passes device="meta"
    as_tensor_calls.clear()
    with keras.device("meta"):
        keras.ops.convert_to_tensor(list(range(100)))  # long: Keras' own
        keras.ops.convert_to_tensor([1.0, np.float32(2.0)])  # not all Python numbers: Keras' own
    assert as_tensor_calls == ["meta", "meta"]
