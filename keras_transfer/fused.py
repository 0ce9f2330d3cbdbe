"""Faster paths for Keras layers on the torch backend: fused kernels, less overhead.

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

Attention (`MultiHeadAttention`, KerasHub's cached one included) runs
`scaled_dot_product_attention` whenever no dropout applies, and in training
too when the attention dropout is unseeded (KerasHub's is; on a CPU only in
float32, where it is faster than Keras' path, not in bf16): Keras' unseeded
dropout on torch is `torch.nn.functional.dropout` on the softmax output,
which is what the kernel applies (on a CPU, the same masks from the same
generator state). Where Keras' explicit-scores path stays (a seeded
dropout; half precision on a CPU), its softmax and dropout layers are
called directly (`_explicit_attention`). On a CUDA device or a CPU an encoder block drops an
all-ones padding mask (read once per mask tensor, `_all_ones`), since any
mask rules out the flash kernel on CUDA; and a decoder block whose only
mask is then the causal one (GPT-2 without padding) asks the kernel for
its own causal path (`is_causal=True`, flash on CUDA) instead of
building and passing that mask.

Three more overrides remove overhead rather than arithmetic:

- every `LayerNormalization` over its trailing axes is one
  `torch.nn.functional.layer_norm` call, in float32 at least, as Keras'
  own op computes it, without the op's generic shape handling;
- every KerasHub `TransformerEncoder` block (BERT, RoBERTa, DistilBERT,
  ELECTRA, ALBERT, XLM-R, …) and `TransformerDecoder` block without
  cross-attention or cache (GPT-2 training and scoring) calls its
  sub-layers' `call` directly instead of through `Layer.__call__`, which
  converts inputs, binds arguments, resolves `training` and opens name and
  autocast scopes for each of the block's dozen sub-layers (5% of a MiniLM forward pass at batch 16 x 128 on two
  CPU cores, a quarter at batch 1 x 8). The direct path does the dtype
  conversion and the autocast scope itself and passes `training`
  explicitly, so the arithmetic and the dropout draws are the same. A block
  takes Keras' own path whenever something that wrapper handles is in play:
  Keras masks on the inputs, attention scores requested,
  rematerialization, quantization, activity regularizers, a distribution,
  an unbuilt sub-layer. When all its sub-layers are plain fused ones with
  the block's dtype policy (the usual case), the block runs as one flat
  sequence of the same torch calls, its checks asked once per block
  instead of per sub-layer (`_flat_block`). These block paths are in
  `keras_transfer.fused_blocks`;
- every functional model (KerasHub backbones, task models) frees each
  intermediate output after the last node that reads it, instead of
  holding all of them until the graph has run. Fewer live activations
  mean fewer page faults: half the system time or less per MiniLM step
  here. Its graph also calls those KerasHub blocks, plain embedding,
  dropout, layer-norm and dense layers, the `Add` of a backbone's
  embeddings and a backbone inside a task model without `Layer.__call__`
  (`_block_node_call`), resolving `training` as Keras does, and fills
  each node's arguments from a template made once (`_argument_filler`).
  Inputs that need no change (a dict of tensors with the model's names,
  dtypes and ranks) skip Keras' standardization and input-spec checks
  (`_standardize_inputs`, `_assert_input_compatibility`). The graph's
  runner is in `keras_transfer.fused_graph`.

The fused paths read weights without Keras' `Variable.value` property
(`_value`: the same tensor and the same autocast cast, without its
device-name string checks) and keep each layer's dtype facts per dtype
policy (`_dtypes`); torch hooks on a layer keep Keras' path.

Optimizers: `fuse_optimizer` (from `keras_transfer.fused_optimizer`,
re-exported here) gives Keras' `Adam`/`AdamW` (and
`kt.optimizers.LayerwiseAdamW`) torch's fused Adam kernel, the same update
in one pass over the weights instead of a dozen; task models get it at
`compile()`, and `unfuse` takes it back with the layers' paths. The
overrides are bound methods on the instances (`method_overrides`).
"""

import collections
import math
import weakref

import keras
import torch
from keras.src import backend
from keras.src.backend import get_keras_mask
from keras.src.backend.common.stateless_scope import in_stateless_scope
from keras.src.distribution import distribution_lib
from keras.src.models.functional import Functional

from keras_transfer.fused_optimizer import fuse_optimizer, unfuse_optimizer, values_of  # noqa: F401 - re-exported
from keras_transfer.method_overrides import has_override as _has_override
from keras_transfer.method_overrides import override as _override
from keras_transfer.method_overrides import remove_override as _remove_override

_FUSED = "_kt_fused_plan"
_linear = torch.nn.functional.linear
_addmm = torch.addmm
_identity = keras.activations.linear


def _gelu_tanh(x):
    return torch.nn.functional.gelu(x, approximate="tanh")


# Keras activations (as layers hold them) and the torch call each makes on
# a torch tensor: Keras' op goes through its symbolic-tensor check and
# tensor conversion first (5 µs a call, one per block's feedforward layer).
_TORCH_ACTIVATIONS = {
    keras.activations.linear: lambda x: x,
    keras.activations.gelu: torch.nn.functional.gelu,  # `approximate=False`, as a layer calls it
}
try:  # KerasHub's BERT / GPT-2 feedforward activation
    from keras_hub.src.utils.keras_utils import gelu_approximate as _keras_hub_gelu_approximate

    _TORCH_ACTIVATIONS[_keras_hub_gelu_approximate] = _gelu_tanh
except ImportError:  # pragma: no cover - a KerasHub without it
    pass


def _activate(activation, x):
    """`activation(x)` for a torch tensor `x`, the torch call Keras makes."""
    direct = _TORCH_ACTIVATIONS.get(activation)
    return activation(x) if direct is None else direct(x)
_mm = torch.mm
_GRAPH_PLAN = "_kt_graph_plan"
_DTYPES = "_kt_dtypes"


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


def _value(variable):
    """`variable.value`: its tensor, cast by the current autocast scope.

    Keras' torch `Variable.value` also compares device names as strings on
    every access (a symbolic call's "meta" device), 2.3 µs against 1.3 µs
    here, for every weight of every call; a stateless or uninitialized
    variable, where that check matters, takes Keras' property, every other
    the same steps without it.
    """
    value = variable._value
    if value is None or in_stateless_scope():
        return variable.value
    if variable._autocast:
        scope = backend.get_autocast_scope()
        if scope is not None and scope.dtype is not None:
            return _autocast_value(variable, value, _torch_dtype(scope.dtype))
    return value


def _autocast_value(variable, value, target):
    """`scope.maybe_cast(value)` for a scope of dtype `target`: a float
    tensor cast to it (a frozen weight's cast kept, `_frozen_cast`)."""
    if value.dtype == target or not value.is_floating_point():
        return value
    if value.requires_grad:
        variable.__dict__.pop("_kt_frozen_cast", None)  # trains now: let a kept copy go
        return _to(value, target)
    if torch.is_inference_mode_enabled():
        return _to(value, target)
    return _frozen_cast(variable, value, target)


def _frozen_cast(variable, value, target):
    """`value.to(target)` for a weight that does not train, kept between calls.

    Under a mixed-precision policy every layer call casts each float32
    weight to the compute dtype: one kernel and a fresh copy per weight per
    call (192 per BERT-base forward pass, half its kernel launches on a
    GPU). A frozen weight's cast only changes when the weight does, so it
    is kept with the variable and made again when the variable's tensor is
    replaced or written in place (torch's version counter), or the target
    dtype differs. It costs memory: a compute-dtype copy of the frozen
    weights (half their size in bf16), dropped when the weight trains
    again. Weights that train are cast afresh, and nothing is kept from
    inside `torch.inference_mode()` (its tensors cannot join autograd
    later).
    """
    kept = variable.__dict__.get("_kt_frozen_cast")
    if kept is not None and kept[0]() is value and kept[1] == value._version and kept[2] is target:
        return kept[3]
    cast = _to(value, target)
    # A weak reference: a replaced tensor is not kept alive by its old cast.
    variable._kt_frozen_cast = (weakref.ref(value), value._version, target, cast)
    return cast


def _torch_dtype(name, _cache={}):  # noqa: B006 - the cache is meant to persist
    """`to_torch_dtype(name)`, remembered: Keras standardizes the name on every call."""
    dtype = _cache.get(name)
    if dtype is None:
        from keras.src.backend.torch.core import to_torch_dtype

        dtype = _cache[name] = to_torch_dtype(name)
    return dtype


def _as_tensor(value):
    """A torch tensor for `value`; tensors and variables without Keras' op dispatch."""
    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, keras.Variable):
        return _value(value)  # cast by the current autocast scope, as Keras does
    return keras.ops.convert_to_tensor(value)


def _fused_call(self, inputs, training=None):
    plan = self.__dict__.get(_FUSED)
    if plan is None or self.quantization_mode:
        return type(self).call(self, inputs, training=training)
    contracted, produced = plan
    x = _as_tensor(inputs)
    raw = self.__dict__.get("_kernel")
    if getattr(self, "lora_enabled", False) or not isinstance(raw, keras.Variable):
        kernel = _as_tensor(self.kernel)  # the property adds LoRA's adapters
        if raw is not None:  # it casts the frozen kernel afresh: a kept cast would be unused
            raw.__dict__.pop("_kt_frozen_cast", None)
    else:
        kernel = _value(raw)
    if x.dtype != kernel.dtype or not x.is_floating_point() or x.ndim < contracted + 1:
        return type(self).call(self, inputs, training=training)
    x_shape, kernel_shape = x.shape, kernel.shape
    if x_shape[x.ndim - contracted :] != kernel_shape[:contracted]:
        return type(self).call(self, inputs, training=training)
    bias = self.bias
    if bias is not None:
        bias = _as_tensor(bias)
        if bias.dtype != kernel.dtype:
            return type(self).call(self, inputs, training=training)
    y = _project(x, kernel, bias, contracted, produced)
    if self.activation is not None:
        y = _activate(self.activation, y)
    return y


def _project(x, kernel, bias, contracted, produced):
    """A `Dense` or plain-projection `EinsumDense` (`_plan`'s `contracted`,
    `produced`): the matrix product `linear` makes of it, with the kernel's
    contracted axes flattened into its input dimension and its produced
    axes into its output one.

    `linear(x, kernel.t(), bias)` flattens a contiguous input to a matrix
    and calls `addmm(bias, x, kernel)` (`mm` without a bias); this makes
    that call itself. The same kernels on the same operands, so the same
    numbers, with three fewer autograd nodes per trainable projection (the
    kernel's transposes in and out of `linear`, and the output reshape
    folded into one view): 16 per BERT block, a sixth of a fine-tuning
    backward pass's nodes. A strided input of more than two dimensions,
    where `linear` multiplies and then adds the bias, takes `linear`.
    """
    if x.ndim == contracted + 2 and x.is_contiguous() and kernel.is_contiguous():
        # A (batch, sequence, ...) input, every block's: the general case's
        # calls with the shapes unpacked (5-8 µs less Python per call).
        kernel_shape = kernel.shape
        batch, steps = x.shape[0], x.shape[1]
        if contracted == 1:
            inner = kernel_shape[0]
            weight = kernel if produced == 1 else kernel.view(inner, -1)
        else:
            inner = math.prod(kernel_shape[:contracted])
            weight = kernel.view(inner, -1)
        rows = x.view(batch * steps, inner)
        if bias is None:
            y = _mm(rows, weight)
        else:
            y = _addmm(bias if produced == 1 else bias.reshape(-1), rows, weight)
        return y.view(batch, steps, *kernel_shape[contracted:])
    kernel_shape = kernel.shape
    inner = kernel_shape[0] if contracted == 1 else math.prod(kernel_shape[:contracted])
    weight = kernel if contracted == 1 and produced == 1 else kernel.reshape(inner, -1)
    if bias is not None and produced > 1:
        bias = bias.reshape(-1)
    batch_shape = x.shape[: x.ndim - contracted]
    x_axes = contracted
    if contracted > 1 and not x.is_contiguous():
        x, x_axes = x.reshape(batch_shape + (inner,)), 1  # as `linear` got it: a copy, or a strided view
    if len(batch_shape) == 1:  # a matrix already, or once its contracted axes are flattened
        rows = x if x_axes == 1 else x.reshape(batch_shape[0], inner)
    elif x.is_contiguous():
        rows = x.reshape(-1, inner)
    else:  # strided with more than two dimensions: `linear` multiplies, then adds the bias
        y = _linear(x, weight.t(), bias)
        return y if produced == 1 else y.reshape(batch_shape + kernel_shape[contracted:])
    y = _mm(rows, weight) if bias is None else _addmm(bias, rows, weight)
    if len(batch_shape) == 1 and produced == 1:
        return y
    return y.view(batch_shape + kernel_shape[contracted:])


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
    applies (a zero rate, or not training), and also in training when the
    dropout is unseeded, giving the kernel the rate (see
    `_unseeded_dropout_rate`). The heads go to it as strided views instead
    of copies. The mask becomes the same additive
    float mask Keras builds, so fully masked rows (left padding under a
    causal mask) stay finite (`_additive_mask`, made once per forward pass).
    """
    dropout_rate = 0.0
    if bool(training) and self._dropout > 0.0:
        dropout_rate = _unseeded_dropout_rate(self)
        if query.device.type in _UNFUSED_HALF_DROPOUT_DEVICES and query.dtype != torch.float32:
            dropout_rate = None
    if (
        dropout_rate is None
        or return_attention_scores
        or len(query.shape) != 4
        or key.shape[2] != query.shape[2]
        or not query.is_floating_point()
        or not (query.dtype == key.dtype == value.dtype)
    ):
        if (
            bool(training)
            and self._dropout > 0.0
            and not return_attention_scores
            and len(query.shape) == 4
            and _keeps_keras_explicit_attention(self)
        ):
            return _explicit_attention(self, query, key, value, attention_mask, training, use_causal_mask)
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
        mask = _memoized_mask(
            "additive",
            (attention_mask,),
            (query.dtype, bool(use_causal_mask), query.shape[1], key.shape[1]),
            lambda: _additive_mask(attention_mask, query.dtype, use_causal_mask, query.shape[1], key.shape[1]),
        )
    elif use_causal_mask:
        is_causal = True
    output = torch.nn.functional.scaled_dot_product_attention(
        query.transpose(1, 2),
        key.transpose(1, 2),
        value.transpose(1, 2),
        attn_mask=mask,
        dropout_p=dropout_rate,
        is_causal=is_causal,
        scale=self._inverse_sqrt_key_dim,
    )
    return output.transpose(1, 2), None


def _additive_mask(attention_mask, dtype, use_causal_mask, length, source_length):
    """The float mask `_fused_compute_attention` gives the kernel: 0 where a
    position attends, Keras' large negative (for `dtype`) where it does not,
    as Keras' `_masked_softmax` fills it; (B, 1, T, S) for the heads."""
    from keras.src.backend.torch.nn import _get_large_negative  # Keras' own mask value

    mask = keras.ops.convert_to_tensor(attention_mask)
    while mask.ndim < 4:  # (B, T, S) -> (B, 1, T, S), broadcast over heads
        mask = mask.unsqueeze(-3)
    mask = mask.bool()
    if use_causal_mask:
        causal = torch.ones((length, source_length), dtype=torch.bool, device=mask.device).tril()
        mask = mask & causal
    return torch.where(mask, 0.0, _get_large_negative(dtype))


_mask_memo = {}  # kind -> (source tensors, their versions, extra, the mask made from them)
# Forward passes through a functional graph (`fused_graph`): how many have
# begun, and how many are running now.
_forward_passes = [0, 0]


def _source_version(source):
    """What `_memoized_mask` compares to know `source` was not written since.

    torch's version counter; an inference tensor (made inside
    `torch.inference_mode()`) has none and can still be written in place
    there, so a mask made from one is kept only within the forward pass
    that made it, and not at all outside one (a fresh object equals
    nothing kept).
    """
    if source is None:
        return None
    if source.is_inference():
        return ("forward pass", _forward_passes[0]) if _forward_passes[1] else object()
    return source._version


def _memoized_mask(kind, sources, extra, make):
    """`make()`, made once for a run of calls on the same mask tensors.

    A backbone hands every block the same padding mask, and each block
    turns it into its attention's mask: KerasHub's merge (or its causal
    mask, for a decoder), a boolean cast, the additive float mask the
    kernel takes. That is 5-15 ops per block (GPT-2's causal merge the
    most) giving the same tensor each time: 0.8 ms of a padded BERT-base
    layout forward pass on this project's CPU, 2 ms of GPT-2's, and as many
    kernel launches on a GPU. HF transformers builds its mask once per
    forward pass; this keeps the last mask of each `kind` with its sources
    (the same objects, not written since: torch's version counters) and
    `extra` (what else it depends on: shapes, dtypes, flags), and the
    inference mode it was made in. Sources that are not torch tensors, a
    traced step and a CUDA graph capture make it afresh; inference tensors,
    which have no version counter, keep it for one forward pass
    (`_source_version`).
    """
    if not all(source is None or isinstance(source, torch.Tensor) for source in sources) or (
        torch.compiler.is_compiling()
        or any(source is not None and source.is_cuda for source in sources)
        and torch.cuda.is_current_stream_capturing()
    ):
        return make()
    versions = tuple(map(_source_version, sources))
    extra = (torch.is_inference_mode_enabled(), *extra)
    kept = _mask_memo.get(kind)
    if (
        kept is not None
        and kept[2] == extra
        and kept[1] == versions
        and all(a is b for a, b in zip(kept[0], sources))
    ):
        return kept[3]
    mask = make()
    _mask_memo[kind] = (sources, versions, extra, mask)
    return mask


def _keeps_keras_explicit_attention(attention):
    """Whether `attention` computes Keras' own explicit-scores attention:
    `MultiHeadAttention`'s `_compute_attention` and `_masked_softmax`, no
    flash attention (Keras refuses it with dropout), softmax and dropout
    layers callable directly (`_can_call_directly`)."""
    mha = keras.layers.MultiHeadAttention
    return (
        type(attention)._compute_attention is mha._compute_attention
        and type(attention)._masked_softmax is mha._masked_softmax
        and not getattr(attention, "_flash_attention", False)
        and _can_call_directly(attention._softmax)
        and _can_call_directly(attention._dropout_layer)
    )


def _explicit_attention(self, query, key, value, attention_mask, training, use_causal_mask):
    """Keras' `MultiHeadAttention._compute_attention` where it computes the
    scores explicitly (dropout on, rank 4, no scores returned), step for
    step, with its `Softmax` and `Dropout` layers called directly instead
    of through `Layer.__call__` (two wrapper calls per block and step,
    0.05 ms each here): the same ops on the same tensors and the same
    dropout draws. Used where the fused kernel does not apply dropout as
    Keras does (a seeded dropout) or is slower (half precision on a CPU)."""
    ops = keras.ops
    if use_causal_mask:
        causal_mask = self._compute_causal_mask(query, value)
        attention_mask = (
            causal_mask if attention_mask is None else ops.logical_and(ops.cast(attention_mask, "bool"), causal_mask)
        )
    query = ops.multiply(query, ops.cast(self._inverse_sqrt_key_dim, query.dtype))
    attention_scores = ops.einsum(self._dot_product_equation, key, query)
    if attention_mask is not None:  # `_masked_softmax`
        mask_expansion_axis = -len(self._attention_axes) * 2 - 1
        for _ in range(len(attention_scores.shape) - len(attention_mask.shape)):
            attention_mask = ops.expand_dims(attention_mask, axis=mask_expansion_axis)
    attention_scores = _direct(self._softmax, attention_scores, mask=attention_mask)
    final_attn_scores = _direct(self._dropout_layer, attention_scores, training=training)
    attention_output = ops.einsum(self._combine_equation, final_attn_scores, value)
    return attention_output, attention_scores


# Where attention with dropout in half precision keeps Keras' path: torch's
# CPU kernel with dropout runs its unfused math path, in half precision 8%
# slower per MiniLM step than Keras' own. (`benchmarks/host_overhead.py
# --cuda-paths` empties it to time a CUDA step's host work on a CPU.)
_UNFUSED_HALF_DROPOUT_DEVICES = ("cpu",)


def _unseeded_dropout_rate(attention):
    """The attention dropout rate if the fused kernel can apply it, else None.

    Keras' `Dropout` without a seed (KerasHub's attention layers pass none)
    is `torch.nn.functional.dropout` on the softmax output, drawing from
    torch's global generator; the fused kernel's dropout is the same
    operation on the same probabilities (on a CPU it even draws the same
    mask from the same generator state). A seeded dropout, a noise shape
    or a rate of 1 stays on Keras' path.
    """
    layer = _sublayer(attention, "_dropout_layer")
    if layer is None or getattr(layer, "seed", None) is not None or getattr(layer, "noise_shape", None) is not None:
        return None
    rate = float(layer.rate)
    return rate if 0.0 <= rate < 1.0 else None


def _fused_layer_norm_call(self, inputs):
    """`LayerNormalization.call` as one `torch.nn.functional.layer_norm`.

    Keras' op computes in at least float32 and casts back to the input's
    dtype, then the layer casts to its compute dtype; so does this.
    RMS scaling and axes that are not the trailing ones take Keras' path.
    """
    x = _as_tensor(inputs)
    axes = sorted(a % x.ndim for a in self.axis) if x.ndim else []
    if (
        self.rms_scaling
        or not axes
        or not x.is_floating_point()
        or axes != list(range(x.ndim - len(axes), x.ndim))
    ):
        return type(self).call(self, inputs)
    gamma = None if self.gamma is None else _as_tensor(self.gamma)
    beta = None if self.beta is None else _as_tensor(self.beta)
    return _layer_norm(self, x, gamma, beta, axes[0], _dtypes(self).compute_torch)


def _layer_norm(layer, x, gamma, beta, first_axis, compute_dtype):
    """The arithmetic of `_fused_layer_norm_call` over `x`'s axes from
    `first_axis` on, with the weights' tensors as read in the layer's scope."""
    original = x.dtype
    compute = _promoted_to_float32(original)
    if gamma is not None:
        gamma = _cast(gamma, compute)
    if beta is not None:
        beta = _cast(beta, compute)
    epsilon = keras.config.epsilon() if layer.epsilon is None else layer.epsilon
    y = torch.nn.functional.layer_norm(_cast(x, compute), x.shape[first_axis:], gamma, beta, epsilon)
    return _cast(_cast(y, original), compute_dtype)


def _promoted_to_float32(dtype, _cache={}):  # noqa: B006 - the cache is meant to persist
    """`torch.promote_types(dtype, torch.float32)`, remembered: the call is a
    dispatched op (about 1 µs), made for each layer norm of each step."""
    promoted = _cache.get(dtype)
    if promoted is None:
        promoted = _cache[dtype] = torch.promote_types(dtype, torch.float32)
    return promoted


def _cast(x, dtype):
    """`x.to(dtype)` without dispatching an op when `x` already has that dtype
    (`to` then returns `x` itself): about 1 µs each, 3 of a layer norm's 5
    `to` calls under mixed precision."""
    return x if x.dtype == dtype else _to(x, dtype)


# The dtype-specific cast methods: the same op as `x.to(dtype)` (and the
# same autograd node), without its argument parsing (1 µs less per call;
# a fine-tuning step casts every weight and each layer norm's input and
# output, 180 casts per BERT-base-layout step).
_CASTS = {
    torch.bfloat16: torch.Tensor.bfloat16,
    torch.float16: torch.Tensor.half,
    torch.float32: torch.Tensor.float,
    torch.float64: torch.Tensor.double,
}


def _to(x, dtype):
    """`x.to(dtype)`."""
    cast = _CASTS.get(dtype)
    return x.to(dtype) if cast is None else cast(x)


_DTypes = collections.namedtuple("_DTypes", "policy input_torch compute variable float_compute compute_torch")


def _dtypes(layer):
    """The layer's dtype facts `_in_scope` and the fused calls need.

    Kept per layer for its current dtype policy (a new policy, as
    `layer.dtype_policy = ...` sets, recomputes them): reading the dtypes
    through Keras' properties costs microseconds per sub-layer call.
    """
    policy = layer.dtype_policy
    cached = layer.__dict__.get(_DTYPES)
    if cached is None or cached.policy is not policy:
        compute = layer.compute_dtype
        cached = _DTypes(
            policy=policy,
            input_torch=_torch_dtype(layer.input_dtype),
            compute=compute,
            variable=layer.variable_dtype,
            float_compute=backend.is_float_dtype(compute),
            compute_torch=_torch_dtype(compute),
        )
        object.__setattr__(layer, _DTYPES, cached)
    return cached


def _direct_scope(layer, dtypes):
    """The autocast scope `Layer.__call__` would open for `layer`, or None."""
    current = backend.get_autocast_scope()
    if current is not None:
        if not layer.autocast or not dtypes.float_compute:
            return backend.AutocastScope(None)
        if current.dtype != dtypes.compute:
            return backend.AutocastScope(dtypes.compute)
        return None
    if dtypes.compute != dtypes.variable:
        return backend.AutocastScope(dtypes.compute)
    return None


def _has_own_hooks(layer):
    """Whether torch would run hooks of `layer`'s own around its `forward`."""
    return bool(layer._forward_hooks or layer._forward_pre_hooks or layer._backward_hooks or layer._backward_pre_hooks)


def _has_global_hooks():
    """Whether torch would run global module hooks around any `forward`."""
    module = torch.nn.modules.module
    return bool(
        module._global_forward_hooks
        or module._global_forward_pre_hooks
        or module._global_backward_hooks
        or module._global_backward_pre_hooks
    )


def _sublayer(layer, name):
    """`getattr(layer, name)` for a sub-layer, None where it has none.

    Keras' torch layers keep their sub-layers in torch's `_modules`, where
    attribute access reaches them only through `Module.__getattr__`'s
    fallback (0.8 µs against 0.05 here); `_flat_block_layers` asks for
    eleven per block and step.
    """
    found = layer.__dict__.get("_modules", {}).get(name)
    return found if found is not None else getattr(layer, name, None)


def _can_call_directly(layer):
    return (
        _can_call_without_hooks(layer)
        and not getattr(layer, "quantization_mode", None)
        and not _has_own_hooks(layer)
        and not _has_global_hooks()
    )


def _can_call_without_hooks(layer):
    """What `_can_call_directly` asks of `layer` besides its quantization and torch hooks."""
    return (
        layer.built
        and getattr(layer, "_remat_mode", None) is None
        and layer.activity_regularizer is None
    )


def _needs_layer_call(x):
    """Whether a block's input brings what only `Layer.__call__` handles:
    a Keras mask, or a distribution that lays out outputs."""
    return get_keras_mask(x) is not None or distribution_lib.distribution() is not None


def _in_scope(layer, function, x, *args, **kwargs):
    """`function(x, ...)` after what `Layer.__call__` does for `layer` around it.

    That is the dtype conversion of the (single, tensor) input and the
    autocast scope.
    """
    dtypes = _dtypes(layer)
    if not isinstance(x, torch.Tensor) or x.dtype != dtypes.input_torch:  # else nothing to convert
        x = dtypes.policy.convert_input(x, layer.autocast, layer.input_dtype)
    scope = _direct_scope(layer, dtypes)
    if scope is None:
        return function(x, *args, **kwargs)
    with scope:
        return function(x, *args, **kwargs)


def _direct(layer, x, **kwargs):
    """`layer(x, **kwargs)` without `Layer.__call__`'s per-call bookkeeping.

    The caller passes `training` explicitly and makes sure no Keras mask is
    involved.
    """
    if not _can_call_directly(layer):
        return layer(x, **kwargs)
    return _in_scope(layer, layer.call, x, **kwargs)


# The KerasHub blocks' direct paths (`fused_blocks`) build on the helpers
# above, and `fuse` and the graph below install and call them: imported
# here, once those helpers exist.
from keras_transfer.fused_blocks import (  # noqa: E402
    _direct_decoder_call,
    _direct_encoder_call,
    _is_plain_decoder,
    _is_plain_encoder,
)


# The functional graph's runner (`fused_graph`), which `fuse` installs:
# imported once the helpers it uses exist, as `fused_blocks` above.
from keras_transfer.fused_graph import (  # noqa: E402
    _assert_input_compatibility,
    _freeing_run_through_graph,
    _is_functional,
    _standardize_inputs,
)


_OVERRIDES = (
    ("call", _fused_call),
    ("_compute_attention", _fused_compute_attention),
    ("call", _fused_layer_norm_call),
    ("call", _direct_encoder_call),
    ("call", _direct_decoder_call),
    ("_run_through_graph", _freeing_run_through_graph),
    ("_standardize_inputs", _standardize_inputs),
    ("_assert_input_compatibility", _assert_input_compatibility),
)


def fuse(layer):
    """Makes the layers under `layer` run torch's fused kernels.

    - every `Dense` and plain-projection `EinsumDense`: one
      `torch.nn.functional.linear` (matmul and bias in one call);
    - every `MultiHeadAttention` (KerasHub's cached attention included):
      `scaled_dot_product_attention` whenever no dropout applies;
    - every `LayerNormalization`: one `torch.nn.functional.layer_norm`;
    - every KerasHub `TransformerEncoder` and `TransformerDecoder`: its
      sub-layers called without `Layer.__call__`'s per-call overhead;
    - every functional model (backbones, task models): intermediate
      outputs freed after their last use instead of at the end.

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
        elif isinstance(sub, keras.layers.LayerNormalization):
            _override(sub, "call", _fused_layer_norm_call)
            count += 1
        elif _is_plain_encoder(sub):
            _override(sub, "call", _direct_encoder_call)
            count += 1
        elif _is_plain_decoder(sub):
            _override(sub, "call", _direct_decoder_call)
            count += 1
        elif _is_functional(sub):
            _override(sub, "_run_through_graph", _freeing_run_through_graph)
            if type(sub)._standardize_inputs is Functional._standardize_inputs:
                _override(sub, "_standardize_inputs", _standardize_inputs)
            if type(sub)._assert_input_compatibility is Functional._assert_input_compatibility:
                _override(sub, "_assert_input_compatibility", _assert_input_compatibility)
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

    A model's compiled optimizer gets Keras' own step back too
    (`unfuse_optimizer`).

    Returns:
        The number of layers changed.
    """
    if not isinstance(layer, keras.layers.Layer):
        return 0
    unfuse_optimizer(getattr(layer, "optimizer", None))
    count = 0
    for sub in layer._flatten_layers(include_self=True, recursive=True):
        for attribute in (_FUSED, _GRAPH_PLAN, _DTYPES, "_kt_frozen_qkv"):  # the last: `fused_blocks._frozen_qkv`'s
            if sub.__dict__.get(attribute) is not None:
                object.__delattr__(sub, attribute)
        removed = [_remove_override(sub, name, function) for name, function in _OVERRIDES]
        count += any(removed)
    return count


def is_fused(layer):
    """Whether `layer` runs one of the fused paths."""
    return any(_has_override(layer, name, function) for name, function in _OVERRIDES)
