"""Python numbers become device tensors without stopping the host.

Keras' torch backend turns a Python number into a tensor with
`torch.as_tensor(x, dtype=..., device=get_device())`. On a CUDA device that
is a copy from pageable host memory, which torch does as a copy followed by a
stream synchronization: the host waits until the GPU has finished all the
work queued so far. Keras does this many times per step: the attention mask
value in every attention layer, casts of constants in every GPT-2 block's
causal mask, each metric's `update_state`, the optimizer's
`iterations.assign_add(1)`, a schedule's bounds. On the H100, 30-43 such
syncs per BERT-base / GPT-2 training step kept the host from queuing ahead
of the GPU (`benchmarks/launch_profile.py`), so host time and GPU time added
up instead of overlapping.

`install()` (done when keras_transfer is imported) gives Keras' torch
backend a `convert_to_tensor` that makes such a number on a non-CPU device
with `torch.full((), x, dtype, device)`: the same value and dtype (Keras'
own dtype rules, below), written by a kernel on the device, with no copy and
no sync. A short list of numbers (Keras' losses convert `ops.shape(values)`
after every forward pass) goes through pinned memory with a non-blocking
copy. A tensor already on Keras' device is returned as it is (cast when
a dtype asks for it) without the `x.to(device)` op Keras dispatches for
each one, which returns the same tensor. Everything else goes to Keras'
own function unchanged; a value `torch.full` refuses (one that overflows its dtype) does
too, so errors and results stay Keras'. `uninstall()` puts Keras' function
back.
"""

import functools
import sys

import keras
import torch
from keras.src.backend.common.dtypes import result_type
from keras.src.backend.config import floatx
from keras.src.backend.torch import core
from keras.src.backend.torch.core import get_device, to_torch_dtype

_SCALARS = (bool, int, float)
_INT32_RANGE = (-(2**31), 2**31)
_SHORT_LIST = 16  # a shape, a few constants: longer lists take Keras' path
_KERAS_BACKEND = "keras.src.backend"  # the package whose modules bind the function

_original = None  # Keras' own convert_to_tensor while installed


def scalar_dtype(x, dtype=None):
    """The torch dtype Keras' torch backend gives the Python number `x`.

    `dtype` when given; else bool for bools, int32 for ints in its range
    (int64 beyond), and Keras' `floatx()` for floats.
    """
    if dtype is not None:
        return to_torch_dtype(dtype)
    if isinstance(x, bool):
        return torch.bool
    if isinstance(x, int):
        return torch.int32 if _INT32_RANGE[0] <= x < _INT32_RANGE[1] else torch.int64
    return to_torch_dtype(floatx())


def scalar_tensor(x, dtype=None, device=None):
    """A 0-d tensor holding the Python number `x`, made on `device` by a fill.

    Same value and dtype as `torch.as_tensor(x, dtype=scalar_dtype(x, dtype),
    device=device)`; raises what `torch.full` raises for a value its dtype
    cannot hold.
    """
    return torch.full((), x, dtype=scalar_dtype(x, dtype), device=device)


def short_list_tensor(x, dtype=None, device=None):
    """A 1-d tensor of a short flat list or tuple of Python numbers, on `device`.

    Keras' dtype (`dtype`, else the `result_type` of the items' types) and
    values (`torch.as_tensor`). To a CUDA device it goes through pinned
    memory with a non-blocking copy, which orders the copy on the stream
    without stopping the host (torch keeps the pinned block until the copy
    is done); to any other device, a plain copy.
    """
    if dtype is None:
        dtype = result_type(*[type(item) for item in x])
    host = torch.as_tensor(x, dtype=to_torch_dtype(dtype))
    device = torch.device(device)
    if device.type == "cuda":
        return host.pin_memory().to(device, non_blocking=True)
    return host.to(device)


def _is_short_number_list(x):
    return (
        type(x) in (list, tuple)
        and 0 < len(x) <= _SHORT_LIST
        and all(type(item) in _SCALARS for item in x)
    )


_TENSOR_TYPES = (torch.Tensor, torch.nn.Parameter)  # exactly these: subclasses take Keras' path
_devices = {}  # Keras' device name -> torch.device


def on_keras_device(x):
    """Whether the tensor `x` is on the device Keras' torch backend puts tensors on.

    Keras compares `x.device` with its device *name* (a string, so never
    equal) and calls `x.to(device)` on every conversion: an op dispatched
    each time, which returns `x` itself when it is already there. A device
    name without an index ("cuda") means the current device of that type.
    """
    name = get_device()
    device = _devices.get(name)
    if device is None:
        device = _devices[name] = torch.device(name)
    here = x.device
    if here == device:
        return True
    return (
        device.index is None
        and device.type == here.type == "cuda"
        and here.index == torch.cuda.current_device()
    )


def _wrap(original):
    @functools.wraps(original)
    def convert_to_tensor(x, dtype=None, sparse=None, ragged=None):
        if type(x) in _TENSOR_TYPES and not sparse and not ragged and on_keras_device(x):
            # Keras' `x.to(device)`, `x.to(dtype)`: `x` itself unless the dtype changes
            if dtype is None:
                return x
            target = to_torch_dtype(dtype)
            return x if x.dtype == target else x.to(target)
        make = scalar_tensor if type(x) in _SCALARS else short_list_tensor if _is_short_number_list(x) else None
        if make is not None and not sparse and not ragged:
            device = get_device()
            if not str(device).startswith("cpu"):
                try:
                    return make(x, dtype, device)
                except (RuntimeError, TypeError, ValueError, OverflowError):
                    pass  # Keras' own path decides (inf, its own error)
        return original(x, dtype=dtype, sparse=sparse, ragged=ragged)

    convert_to_tensor._keras_transfer_original = original
    return convert_to_tensor


def _modules():
    """Keras' backend modules loaded so far (they bind the function by name)."""
    return [
        module
        for name, module in list(sys.modules.items())
        if module is not None and name.startswith(_KERAS_BACKEND)
    ]


def installed():
    """Whether Keras' torch backend currently uses the sync-free conversion."""
    return hasattr(core.convert_to_tensor, "_keras_transfer_original")


def install():
    """Gives Keras' torch backend the sync-free number conversion (idempotent).

    Rebinds `convert_to_tensor` in every loaded `keras.src.backend` module
    that holds Keras' function; modules loaded later import the new binding
    from `keras.src.backend.torch.core`. No-op off the torch backend.
    """
    global _original
    if keras.config.backend() != "torch" or installed():
        return
    _original = core.convert_to_tensor
    replacement = _wrap(_original)
    for module in _modules():
        if getattr(module, "convert_to_tensor", None) is _original:
            module.convert_to_tensor = replacement


def uninstall():
    """Puts Keras' own `convert_to_tensor` back everywhere it was replaced."""
    global _original
    if _original is None:
        return
    for module in _modules():
        if getattr(getattr(module, "convert_to_tensor", None), "_keras_transfer_original", None) is _original:
            module.convert_to_tensor = _original
    _original = None
