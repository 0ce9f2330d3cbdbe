"""Fused linear layers: one `addmm` per projection on the torch backend.

Keras' `Dense` computes `matmul(x, kernel)` and then adds the bias as a second
pass over the output; `EinsumDense`, which KerasHub's attention layers use
for their query, key, value and output projections, goes through
`torch.einsum` (a batched matmul) and then the same separate addition. On a
CPU these extra passes cost about a fifth of a MiniLM forward pass.

`fuse(layer)` gives every such layer under `layer` a `call`
that does the same computation as one `torch.nn.functional.linear` (matmul
and bias in one BLAS call), the way HuggingFace's `nn.Linear` does. The
weights, their shapes and names, the config and everything saved are
unchanged; only the kernel that runs differs, and the outputs agree with
Keras' own path to float32 rounding (`tests/test_fused.py`).

A layer falls back to its class's own `call` whenever the fused one would not
be the same computation: a quantized layer, an einsum that is not a plain
projection (contracted axes last in the input, first in the kernel), a bias
that covers only part of the output axes, or inputs whose dtype differs
from the kernel's. LoRA needs no special case: the layers' `kernel`
property already adds the adapters.
"""

import math
import types

import keras

_FUSED = "_kt_fused_plan"


def _einsum_plan(equation, bias_axes):
    """How an `EinsumDense` equation maps onto one linear layer, or None.

    Returns `(contracted, outputs)`: the number of trailing input axes summed
    over, and the number of trailing output axes the kernel produces.
    """
    if "." in equation or "->" not in equation:
        return None
    operands, output = equation.split("->")
    if operands.count(",") != 1:
        return None
    x_spec, w_spec = operands.split(",")
    for spec in (x_spec, w_spec, output):
        if len(set(spec)) != len(spec):
            return None
    contracted = "".join(c for c in x_spec if c in w_spec and c not in output)
    produced = "".join(c for c in w_spec if c not in x_spec)
    batch = x_spec[: len(x_spec) - len(contracted)]
    plain = (
        contracted
        and x_spec == batch + contracted
        and w_spec == contracted + produced
        and output == batch + produced
    )
    if not plain:
        return None
    if bias_axes and bias_axes != produced:
        return None
    return len(contracted), len(produced)


def _plan(layer):
    if isinstance(layer, keras.layers.EinsumDense):
        return _einsum_plan(layer.equation, layer.bias_axes)
    if isinstance(layer, keras.layers.Dense):
        return (1, 1)
    return None


def _fused_call(self, inputs, training=None):
    import torch

    plan = getattr(self, _FUSED, None)
    if plan is None or getattr(self, "quantization_mode", None):
        return type(self).call(self, inputs, training=training)
    contracted, produced = plan
    x = keras.ops.convert_to_tensor(inputs)
    kernel = keras.ops.convert_to_tensor(self.kernel)
    if x.dtype != kernel.dtype or not x.is_floating_point() or x.ndim < contracted + 1:
        return type(self).call(self, inputs, training=training)
    batch_shape = tuple(x.shape[: x.ndim - contracted])
    in_shape = tuple(kernel.shape[:contracted])
    out_shape = tuple(kernel.shape[contracted:])
    if tuple(x.shape[x.ndim - contracted :]) != in_shape:
        return type(self).call(self, inputs, training=training)
    weight = kernel.reshape(math.prod(in_shape), math.prod(out_shape)).t()
    bias = None
    if self.bias is not None:
        bias = keras.ops.convert_to_tensor(self.bias)
        if bias.dtype != kernel.dtype:
            return type(self).call(self, inputs, training=training)
        bias = bias.reshape(-1)
    if contracted > 1:
        x = x.reshape(batch_shape + (weight.shape[1],))
    y = torch.nn.functional.linear(x, weight, bias)
    if produced > 1:
        y = y.reshape(batch_shape + out_shape)
    if self.activation is not None:
        y = self.activation(y)
    return y


def _fused_compute_attention(
    self,
    query,
    key,
    value,
    attention_mask=None,
    training=None,
    return_attention_scores=False,
    use_causal_mask=False,
):
    """`MultiHeadAttention._compute_attention` through torch's fused kernel.

    Keras takes this kernel only when the layer's dropout rate is 0, so a
    backbone whose attention has dropout (every KerasHub BERT and GPT-2)
    runs the unfused einsum-softmax-einsum path even in inference, where the
    dropout does nothing. This runs the fused kernel whenever no dropout
    applies (a zero rate, or not training), and passes the heads to it as
    strided views instead of copies. The mask becomes the same additive
    float mask Keras builds, so fully masked rows (left padding under a
    causal mask) stay finite.
    """
    import torch
    from keras.src.backend.torch.nn import _get_large_negative  # Keras' own mask value

    dropout_applies = bool(training) and self._dropout > 0.0
    if (
        dropout_applies
        or return_attention_scores
        or len(query.shape) != 4
        or key.shape[2] != query.shape[2]
        or not query.is_floating_point()
        or not (query.dtype == key.dtype == value.dtype)
    ):
        return type(self)._compute_attention(
            self,
            query,
            key,
            value,
            attention_mask=attention_mask,
            training=training,
            return_attention_scores=return_attention_scores,
            use_causal_mask=use_causal_mask,
        )
    mask = None
    is_causal = False
    if attention_mask is not None:
        mask = keras.ops.convert_to_tensor(attention_mask)
        while mask.ndim < 4:  # (B, T, S) -> (B, 1, T, S), broadcast over heads
            mask = mask.unsqueeze(-3)
        mask = mask.bool()
        if use_causal_mask:
            length, source_length = query.shape[1], key.shape[1]
            causal = torch.ones((length, source_length), dtype=torch.bool, device=mask.device).tril()
            mask = mask & causal
        mask = torch.where(mask, 0.0, _get_large_negative(query.dtype))
    elif use_causal_mask:
        is_causal = True
    output = torch.nn.functional.scaled_dot_product_attention(
        query.transpose(1, 2),
        key.transpose(1, 2),
        value.transpose(1, 2),
        attn_mask=mask,
        is_causal=is_causal,
        scale=self._inverse_sqrt_key_dim,
    )
    return output.transpose(1, 2), None


_OVERRIDES = (("call", _fused_call), ("_compute_attention", _fused_compute_attention))


def _override(layer, name, function):
    if name not in layer.__dict__:
        object.__setattr__(layer, name, types.MethodType(function, layer))


def _has_override(layer, name, function):
    return getattr(layer.__dict__.get(name), "__func__", None) is function


def _remove_override(layer, name, function):
    if _has_override(layer, name, function):
        object.__delattr__(layer, name)
        return True
    return False


def fuse(layer):
    """Makes the layers under `layer` run torch's fused kernels.

    - every `Dense` and plain-projection `EinsumDense`: one
      `torch.nn.functional.linear` (matmul and bias in one call);
    - every `MultiHeadAttention` (KerasHub's cached attention included):
      `scaled_dot_product_attention` whenever no dropout applies.

    Weights, configs and saved files are untouched; Keras' own path is
    used wherever the fused one would not compute the same thing. Does
    nothing on backends other than torch, and is safe to call again
    (layers added since are picked up).

    Returns:
        The number of layers that now run fused.
    """
    if keras.config.backend() != "torch" or not isinstance(layer, keras.layers.Layer):
        return 0
    count = 0
    for sub in layer._flatten_layers(include_self=True, recursive=True):
        if isinstance(sub, keras.layers.MultiHeadAttention):
            _override(sub, "_compute_attention", _fused_compute_attention)
            count += 1
        elif isinstance(sub, (keras.layers.Dense, keras.layers.EinsumDense)):
            plan = _plan(sub)
            if plan is not None:
                object.__setattr__(sub, _FUSED, plan)
                _override(sub, "call", _fused_call)
                count += 1
    return count


def unfuse(layer):
    """Gives the layers under `layer` back Keras' own kernels.

    Returns:
        The number of layers changed.
    """
    if not isinstance(layer, keras.layers.Layer):
        return 0
    count = 0
    for sub in layer._flatten_layers(include_self=True, recursive=True):
        if sub.__dict__.get(_FUSED) is not None:
            object.__delattr__(sub, _FUSED)
        removed = [_remove_override(sub, name, function) for name, function in _OVERRIDES]
        count += any(removed)
    return count


def is_fused(layer):
    """Whether `layer` runs one of the fused paths."""
    return any(_has_override(layer, name, function) for name, function in _OVERRIDES)
