"""KerasHub's transformer blocks as direct torch calls (part of `fuse`).

`fuse` gives every KerasHub `TransformerEncoder` block (BERT, RoBERTa,
DistilBERT, ELECTRA, ALBERT, XLM-R, ...) and `TransformerDecoder` block
without cross-attention or cache (GPT-2 training and scoring) a `call`
that calls its sub-layers' `call` directly instead of through
`Layer.__call__` (`_direct_encoder_call`, `_direct_decoder_call`), and,
when every sub-layer is a plain fused one with the block's dtype policy,
runs the block as one flat sequence of the same torch calls
(`_flat_block`). The query, key and value projections of a frozen block
under a mixed-precision policy run as one matrix product on kept weights
(`_frozen_qkv`), and on a CUDA device as one product in training too
(`_joint_qkv`). An all-ones padding mask is dropped (`_all_ones`), and a
padded batch's attention mask is made once per forward pass, not once per
block (`fused._memoized_mask`). The layer-level pieces these use (fused
projections, layer norms, attention, scopes and casts) are in `fused`.
"""

import weakref
from itertools import chain

import keras
import torch
from keras.src import backend
from keras.src.backend.common.stateless_scope import in_stateless_scope
from keras_hub.layers import TransformerDecoder, TransformerEncoder
from keras_hub.src.layers.modeling.cached_multi_head_attention import CachedMultiHeadAttention
from keras_hub.src.layers.modeling.transformer_layer_utils import merge_padding_and_attention_mask

from keras_transfer.fused import (
    _FUSED,
    _activate,
    _addmm,
    _autocast_value,
    _can_call_directly,
    _can_call_without_hooks,
    _cast,
    _direct,
    _dtypes,
    _fused_call,
    _fused_compute_attention,
    _fused_layer_norm_call,
    _has_global_hooks,
    _has_own_hooks,
    _identity,
    _in_scope,
    _layer_norm,
    _memoized_mask,
    _mm,
    _needs_layer_call,
    _project,
    _sublayer,
    _torch_dtype,
)
from keras_transfer.method_overrides import has_override as _has_override

try:
    from keras_hub.src.layers.modeling.cached_multi_head_attention import get_vllm_context
except ImportError:  # a KerasHub without vLLM serving
    get_vllm_context = None


def _direct_self_attention(layer, x, attention_mask, training):
    """`layer(query=x, value=x, attention_mask=..., training=...)`, directly.

    The same steps as `MultiHeadAttention.call` for self-attention without
    Keras masks, gates or a sliding window (those, and subclasses with their
    own `call`, go through `__call__`).
    """
    if (
        not _can_call_directly(layer)
        or type(layer).call is not keras.layers.MultiHeadAttention.call
        or getattr(layer, "_use_gate", False)
        or getattr(layer, "_sliding_window", None) is not None
    ):
        return layer(query=x, value=x, attention_mask=attention_mask, training=training)
    return _in_scope(layer, _self_attention, x, layer, attention_mask, training)


def _self_attention(x, layer, attention_mask, training):
    attention_mask = layer._compute_attention_mask(x, x, attention_mask=attention_mask)
    query = _direct(layer._query_dense, x)
    key = _direct(layer._key_dense, x)
    value = _direct(layer._value_dense, x)
    output, _ = layer._compute_attention(query, key, value, attention_mask, training, False)
    return _direct(layer._output_dense, output)


def _direct_encoder_call(
    self,
    inputs,
    padding_mask=None,
    attention_mask=None,
    training=None,
    return_attention_scores=False,
):
    """KerasHub's `TransformerEncoder.call`, its sub-layers called directly.

    The same computation, step for step, as the class's own `call`; only
    the calls into the sub-layers skip `Layer.__call__` (see `_direct`).
    """
    if return_attention_scores or _needs_layer_call(inputs):
        return type(self).call(
            self,
            inputs,
            padding_mask=padding_mask,
            attention_mask=attention_mask,
            training=training,
            return_attention_scores=return_attention_scores,
        )
    if attention_mask is None and _all_ones(padding_mask):
        padding_mask = None  # every position attends: the same attention without a mask
    mask = _memoized_mask(
        "merged",
        (padding_mask, attention_mask),
        (tuple(inputs.shape),),
        lambda: merge_padding_and_attention_mask(inputs, padding_mask, attention_mask),
    )
    return _direct_block(self, inputs, _direct_self_attention, mask, training)


# Devices where an all-ones padding mask is dropped: on CUDA a mask rules out
# the flash attention kernel, and on a CPU the kernel without one does less
# work (1-5% of a MiniLM forward pass at 16 x 128 on this project's CPU);
# elsewhere the read may cost more than it saves.
_MASK_DROP_DEVICES = ("cpu", "cuda")


def _all_ones(padding_mask):
    """Whether `padding_mask` (a tensor on a CPU or CUDA device) lets every position attend.

    On an accelerator reading that costs one device synchronization, so it
    is read once per mask (`_memoized_mask`): a backbone passes the same
    mask tensor to each of its blocks. (HF transformers drops an all-ones
    mask the same way, at the same cost.)
    """
    if not isinstance(padding_mask, torch.Tensor) or padding_mask.device.type not in _MASK_DROP_DEVICES:
        return False
    if torch.compiler.is_compiling() or (padding_mask.is_cuda and torch.cuda.is_current_stream_capturing()):
        return False  # a traced or captured step cannot branch on the mask's values
    return _memoized_mask("all ones", (padding_mask,), (), lambda: bool(padding_mask.all()))


def _direct_block(block, x, attend, mask, training):
    """The body both KerasHub blocks share: attention, then feedforward,
    each with dropout, a residual and a layer norm (before or after)."""
    y = _flat_block(block, x, attend, mask, training)
    if y is not None:
        return y
    residual = x
    if block.normalize_first:
        x = _direct(block._self_attention_layer_norm, x)
    x = attend(block._self_attention_layer, x, mask, training)
    x = _direct(block._self_attention_dropout, x, training=training)
    x = x + residual
    if not block.normalize_first:
        x = _direct(block._self_attention_layer_norm, x)

    residual = x
    if block.normalize_first:
        x = _direct(block._feedforward_layer_norm, x)
    x = _direct(block._feedforward_intermediate_dense, x)
    x = _direct(block._feedforward_output_dense, x)
    x = _direct(block._feedforward_dropout, x, training=training)
    x = x + residual
    if not block.normalize_first:
        x = _direct(block._feedforward_layer_norm, x)
    return x


def _flat_block(block, x, attend, mask, training):
    """`_direct_block` as one flat sequence of torch calls, or None.

    When every sub-layer is a plain fused one sharing the block's dtype
    policy (`_flat_block_layers`), each sub-layer call of `_direct_block`
    reduces to the same arithmetic on weights read in the block's autocast
    scope; what it still asked per sub-layer (hooks, scope, dtypes, the
    fused call's own checks: 0.1 ms of a 0.7 ms BERT-layout block here) is
    asked once for the block. The torch calls and their order are the
    ones `_direct_block` makes, so the results are identical.
    """
    layers = _flat_block_layers(block, attend)
    if layers is None or x.ndim != 3:
        attention = _sublayer(block, "_self_attention_layer")
        _drop_frozen_qkv(None if attention is None else _sublayer(attention, "_query_dense"))
        return None
    attention, query_dense, key_dense, value_dense, output_dense = layers[:5]
    norm1, norm2, dropout1, dropout2, intermediate, output = layers[5:]
    scope = backend.get_autocast_scope()
    policy = block._dtype_policy
    if scope is None:
        if policy.compute_dtype != policy.variable_dtype:
            return None
        target = None
    elif scope.dtype != policy.compute_dtype:
        return None
    else:
        target = _torch_dtype(scope.dtype)
    compute = _dtypes(block).compute_torch
    if x.dtype != compute:
        return None

    uninitialized = []

    def read(variable, autocast=True):
        value = variable._value
        if value is None:
            uninitialized.append(variable)
        if value is None or target is None or not autocast or not variable._autocast:
            return value
        return _autocast_value(variable, value, target)

    def weights(layer):  # (kernel, bias) of a projection
        return read(layer._kernel), None if layer.bias is None else read(layer.bias)

    def norm_weights(layer):  # (gamma, beta), read as the layer's own scope would (LayerNormalization: no autocast)
        gamma = None if layer.gamma is None else read(layer.gamma, layer.autocast)
        return gamma, None if layer.beta is None else read(layer.beta, layer.autocast)

    w_norm1, w_norm2 = norm_weights(norm1), norm_weights(norm2)
    qkv_layers = (query_dense, key_dense, value_dense)
    # Frozen query, key and value projections under a casting scope, with
    # no gradient to take through them (nor through a layer norm before
    # them), run as one matrix product on kept weights (`_frozen_qkv`); on
    # a CUDA device, any run as one (`_joint_qkv`).
    differentiates = torch.is_grad_enabled() and (
        x.requires_grad
        or (block.normalize_first and any(w is not None and w.requires_grad for w in w_norm1))
    )
    qkv = None if differentiates else _frozen_qkv(qkv_layers, target, x)
    if qkv is None:
        _drop_frozen_qkv(query_dense)
    if qkv is None and x.device.type in _JOINT_QKV_DEVICES:
        qkv = _joint_qkv(qkv_layers, target, x)
    w_output, w_intermediate, w_ff_output = projections = [
        weights(layer) for layer in (output_dense, intermediate, output)
    ]
    if qkv is None:
        w_query, w_key, w_value = qkv_projections = [weights(layer) for layer in qkv_layers]
        projections = qkv_projections + projections
    if uninitialized:
        return None
    if any(tensor is not None and tensor.dtype != x.dtype for tensor in chain.from_iterable(projections)) or (
        qkv is None and x.shape[-1] != w_query[0].shape[0]
    ):
        return None  # the direct path falls back (or fails) as Keras does

    def project(layer, h, weights):
        kernel, bias = weights
        y = _project(h, kernel, bias, *layer.__dict__[_FUSED])
        return y if layer.activation is None else _activate(layer.activation, y)

    def normalize(layer, h, weights):
        return _layer_norm(layer, h, *weights, h.ndim - 1, compute)

    def drop(layer, h):
        if not training or layer.rate == 0:
            return h
        return torch.nn.functional.dropout(h, layer.rate, training=True)

    causal = attend is _direct_causal_self_attention
    if attend is _direct_self_attention and mask is not None:
        # `_compute_attention_mask`, no Keras masks involved
        mask = _memoized_mask("boolean", (mask,), (), lambda: keras.ops.cast(mask, "bool"))
    residual = x
    if block.normalize_first:
        x = normalize(norm1, x, w_norm1)
    if qkv is None:
        query = project(query_dense, x, w_query)
        key = project(key_dense, x, w_key)
        value = project(value_dense, x, w_value)
    else:
        query, key, value = _project_qkv(x, *qkv)
    h, _ = _fused_compute_attention(
        attention, query, key, value, mask, training, False, **({"use_causal_mask": True} if causal else {})
    )
    h = drop(dropout1, project(output_dense, h, w_output))
    x = h + residual
    if not block.normalize_first:
        x = normalize(norm1, x, w_norm1)
    residual = x
    if block.normalize_first:
        x = normalize(norm2, x, w_norm2)
    h = project(output, project(intermediate, x, w_intermediate), w_ff_output)
    x = drop(dropout2, h) + residual
    if not block.normalize_first:
        x = normalize(norm2, x, w_norm2)
    return x


_ATTENTION_PROJECTIONS = ("_query_dense", "_key_dense", "_value_dense", "_output_dense")
_BLOCK_SUBLAYERS = (
    "_self_attention_layer_norm",
    "_feedforward_layer_norm",
    "_self_attention_dropout",
    "_feedforward_dropout",
    "_feedforward_intermediate_dense",
    "_feedforward_output_dense",
)


def _qkv_sources(layers, x, target, frozen):
    """The kernels and biases (raw tensors) of a block's query, key and
    value projections, and their common kernel shape; or None where they
    cannot run as one product: an activation, an uninitialized or integer
    weight, one Keras would not cast, shapes or biases that differ, an
    input of another width or (once cast to `target`) dtype; with
    `frozen`, a weight that trains."""
    sources = []
    for layer in layers:
        if layer.activation not in (None, _identity):  # Keras' default: `linear`, which returns its input
            return None
        for variable in (layer._kernel, layer.bias):
            if variable is None:
                sources.append(None)
                continue
            value = variable._value
            if (
                value is None
                or (frozen and value.requires_grad)
                or not variable._autocast
                or not value.is_floating_point()
                or (value.dtype if target is None else target) != x.dtype
            ):
                return None
            sources.append(value)
    kernels, biases = sources[0::2], sources[1::2]
    shape = kernels[0].shape
    if any(kernel.shape != shape for kernel in kernels) or len(shape) != 3 or x.shape[-1] != shape[0]:
        return None
    if any(bias is None for bias in biases) and any(bias is not None for bias in biases):
        return None
    return sources, shape


def _joined(sources, shape, target):
    """`(weight, bias)`: the three kernels side by side as one `(inputs,
    3 * heads * size)` matrix and the biases as one vector, cast to
    `target` (None: as they are). The cast of the joined tensor is the
    cast of each part, and its gradient goes back to each part."""
    kernels, biases = sources[0::2], sources[1::2]
    # (inputs, heads, size) side by side on the heads axis, then flattened:
    # the query's columns, the key's, the value's.
    weight = torch.cat(kernels, dim=1).view(shape[0], -1)
    bias = None if biases[0] is None else torch.cat(biases).view(-1)
    if target is not None:
        weight = _cast(weight, target)
        bias = None if bias is None else _cast(bias, target)
    return weight, bias


def _frozen_qkv(layers, target, x):
    """`(weight, bias, kernel_shape)` for a block's query, key and value
    projections (`layers`) as one (`_joined`), kept; or None.

    A frozen block under a mixed-precision policy keeps a cast of each
    weight (`_frozen_cast`) and makes three matrix products from one
    input. With the three kernels in one matrix it makes one: two kernel
    launches and ten dispatched ops fewer per block on a GPU, the same
    memory as the three casts it replaces. Each output is the same dot
    product over the same inputs (the query's, key's and value's columns
    of one product; this CPU's kernels give the same bits, which the tests
    check); only where nothing differentiates through it, since the
    input's gradient would add the three parts in another order (the
    caller checks the input; this, that no weight trains). Kept with the
    query projection until one of the six tensors is replaced or written
    (torch's version counters) or `target` changes. None where nothing is
    cast (`target` None: a kept copy would be extra memory) and where
    `_qkv_sources` finds none.
    """
    if target is None:
        return None
    found = _qkv_sources(layers, x, target, frozen=True)
    if found is None:
        return None
    sources, shape = found
    versions = tuple(None if source is None else source._version for source in sources)
    kept = layers[0].__dict__.get("_kt_frozen_qkv")
    if (
        kept is not None
        and kept[2] is target
        and kept[1] == versions
        and all(ref() is source for ref, source in zip(kept[0], sources) if source is not None)
    ):
        return kept[3]
    with torch.inference_mode(False), torch.no_grad():  # usable outside inference mode too
        qkv = (*_joined(sources, shape, target), shape)
    # Weak references: a replaced tensor is not kept alive by its old copy.
    refs = tuple(None if source is None else weakref.ref(source) for source in sources)
    layers[0].__dict__["_kt_frozen_qkv"] = (refs, versions, target, qkv)
    return qkv


# Devices where a block's query, key and value projections run as one
# product in training too (`_joint_qkv`). Its input gradient adds the three
# parts in one matrix product instead of three plus two additions, which
# rounds differently; on a CUDA device, where the step is bound by the
# host's time to launch kernels at the batch sizes of fine-tuning, it saves
# 11 dispatched ops per block in the forward pass (counted on the CPU) and
# about a dozen kernel launches per block and step (counted from the ops,
# not measured on a GPU), as HF's GPT-2 does with its joint `c_attn`. On a
# CPU the arithmetic sets the pace and the blocks keep the three products
# (and bit-for-bit the same gradients as Keras' layers).
# `benchmarks/host_overhead.py --cuda-paths` adds "cpu".
_JOINT_QKV_DEVICES = ("cuda",)


def _joint_qkv(layers, target, x):
    """`(weight, bias, kernel_shape)` joined afresh for this call (weights
    that train: autograd sees the concatenation and cast), or None."""
    found = _qkv_sources(layers, x, target, frozen=False)
    if found is None:
        return None
    sources, shape = found
    return (*_joined(sources, shape, target), shape)


def _drop_frozen_qkv(query_dense):
    """Lets `_frozen_qkv`'s kept weights go where that path is not taken
    (the block trains, takes LoRA or another path): they would otherwise
    stay alive, a compute-dtype copy of the three kernels, while unused."""
    if query_dense is not None and "_kt_frozen_qkv" in query_dense.__dict__:
        del query_dense.__dict__["_kt_frozen_qkv"]


def _project_qkv(x, weight, bias, kernel_shape):
    """Query, key and value (each `(batch, sequence, heads, size)`, strided
    views of one product) from `_frozen_qkv`'s weights."""
    batch, steps = x.shape[0], x.shape[1]
    rows = x.reshape(batch * steps, kernel_shape[0])
    y = _mm(rows, weight) if bias is None else _addmm(bias, rows, weight)
    return y.view(batch, steps, 3, kernel_shape[1], kernel_shape[2]).unbind(2)


def _flat_block_layers(block, attend):
    """The sub-layers `_flat_block` calls, or None where one of them needs
    its own path: each built, without hooks, rematerialization or an
    activity regularizer, with the block's (unquantized) dtype policy, and
    fused as `fuse` leaves it (projections without LoRA, layer norms over
    the last axis, unseeded dropout, attention with the fused kernel)."""
    policy = block._dtype_policy
    if (
        _has_global_hooks()
        or not isinstance(policy, keras.DTypePolicy)
        or isinstance(policy, keras.dtype_policies.DTypePolicyMap)
        or policy.quantization_mode
        or in_stateless_scope()
    ):
        return None
    attention = _sublayer(block, "_self_attention_layer")
    if attend is _direct_self_attention:
        if (
            type(attention).call is not keras.layers.MultiHeadAttention.call
            or getattr(attention, "_use_gate", False)
            or getattr(attention, "_sliding_window", None) is not None
        ):
            return None
    elif attend not in (_direct_cached_self_attention, _direct_causal_self_attention) or (
        get_vllm_context is not None and get_vllm_context() is not None
    ):
        return None
    if not _has_override(attention, "_compute_attention", _fused_compute_attention):
        return None
    layers = (
        attention,
        *(_sublayer(attention, name) for name in _ATTENTION_PROJECTIONS),
        *(_sublayer(block, name) for name in _BLOCK_SUBLAYERS),
    )
    # `_can_call_directly` for each, with the global hooks and the (shared)
    # policy's quantization asked once above.
    for layer in layers:
        if layer._dtype_policy is not policy or _has_own_hooks(layer) or not _can_call_without_hooks(layer):
            return None
    projections = (*layers[1:5], *layers[9:11])
    for layer, plan in zip(projections, ((1, 2), (1, 2), (1, 2), (2, 1), (1, 1), (1, 1))):
        if (
            layer.__dict__.get(_FUSED) != plan
            or not _has_override(layer, "call", _fused_call)
            or not layer.autocast
            or getattr(layer, "lora_enabled", False)
            or not isinstance(layer.__dict__.get("_kernel"), keras.Variable)
        ):
            return None
    for norm in layers[5:7]:
        if (
            not _has_override(norm, "call", _fused_layer_norm_call)
            or norm.rms_scaling
            or norm.axis not in (-1, [-1])
        ):
            return None
    for dropout in layers[7:9]:
        if type(dropout) is not keras.layers.Dropout or dropout.seed is not None or dropout.noise_shape is not None:
            return None
        if not 0 <= dropout.rate < 1:
            return None
    return layers


def _direct_decoder_call(
    self,
    decoder_sequence,
    encoder_sequence=None,
    decoder_padding_mask=None,
    decoder_attention_mask=None,
    encoder_padding_mask=None,
    encoder_attention_mask=None,
    self_attention_cache=None,
    self_attention_cache_update_index=None,
    cross_attention_cache=None,
    cross_attention_cache_update_index=None,
    use_causal_mask=True,
    training=None,
):
    """KerasHub's `TransformerDecoder.call` without cross-attention or cache
    (GPT-2 training and scoring), its sub-layers called directly.

    Generation with a cache, cross-attention (BART) and everything listed
    for the encoder block take the class's own `call`.
    """
    if (
        encoder_sequence is not None
        or self._cross_attention_layer is not None
        or self_attention_cache is not None
        or cross_attention_cache is not None
        or self_attention_cache_update_index is not None
        or _needs_layer_call(decoder_sequence)
        or not _is_plain_cached_attention(self._self_attention_layer)
    ):
        return type(self).call(
            self,
            decoder_sequence,
            encoder_sequence=encoder_sequence,
            decoder_padding_mask=decoder_padding_mask,
            decoder_attention_mask=decoder_attention_mask,
            encoder_padding_mask=encoder_padding_mask,
            encoder_attention_mask=encoder_attention_mask,
            self_attention_cache=self_attention_cache,
            self_attention_cache_update_index=self_attention_cache_update_index,
            cross_attention_cache=cross_attention_cache,
            cross_attention_cache_update_index=cross_attention_cache_update_index,
            use_causal_mask=use_causal_mask,
            training=training,
        )
    if (
        use_causal_mask
        and decoder_attention_mask is None
        and (decoder_padding_mask is None or _all_ones(decoder_padding_mask))
        and _takes_causal_flag(self._self_attention_layer)
    ):
        # Only the causal mask is left: the attention kernel's own causal
        # path, as HF does (flash attention on a GPU), instead of a built mask.
        return _direct_block(self, decoder_sequence, _direct_causal_self_attention, None, training)
    mask = _memoized_mask(
        "decoder",
        (decoder_padding_mask, decoder_attention_mask),
        (
            tuple(decoder_sequence.shape),
            decoder_sequence.device,  # without masks, only the causal mask: the shape's, on this device
            bool(use_causal_mask),
            type(self)._compute_self_attention_mask,
        ),
        lambda: self._compute_self_attention_mask(
            decoder_sequence=decoder_sequence,
            decoder_padding_mask=decoder_padding_mask,
            decoder_attention_mask=decoder_attention_mask,
            use_causal_mask=use_causal_mask,
            self_attention_cache=None,
            self_attention_cache_update_index=None,
        ),
    )
    return _direct_block(self, decoder_sequence, _direct_cached_self_attention, mask, training)


def _is_plain_cached_attention(layer):
    return isinstance(layer, CachedMultiHeadAttention) and type(layer).call is CachedMultiHeadAttention.call


def _direct_cached_self_attention(layer, x, attention_mask, training):
    """`CachedMultiHeadAttention.call` without a cache, its projections called directly."""
    if not _can_call_cached_attention_directly(layer):
        return layer(query=x, value=x, attention_mask=attention_mask, training=training)
    return _in_scope(layer, _cached_self_attention, x, layer, attention_mask, training)


def _can_call_cached_attention_directly(layer):
    """`_can_call_directly`, and no vLLM serving context (its cache is Keras' call's business)."""
    return _can_call_directly(layer) and (get_vllm_context is None or get_vllm_context() is None)


def _cached_self_attention(x, layer, attention_mask, training, use_causal_mask=False):
    query = _direct(layer._query_dense, x)
    key = _direct(layer._key_dense, x)
    value = _direct(layer._value_dense, x)
    output, _ = layer._compute_attention(
        query=query,
        key=key,
        value=value,
        attention_mask=attention_mask,
        return_attention_scores=False,
        training=training,
        **({"use_causal_mask": True} if use_causal_mask else {}),
    )
    return _direct(layer._output_dense, output)


def _takes_causal_flag(attention):
    """Whether `attention` can be called directly with `use_causal_mask=True`
    and no mask: its `_compute_attention` is this module's or Keras' own
    (both build or apply the causal mask themselves; a subclass's may not)."""
    return _can_call_cached_attention_directly(attention) and (
        _has_override(attention, "_compute_attention", _fused_compute_attention)
        or (
            "_compute_attention" not in attention.__dict__
            and type(attention)._compute_attention is keras.layers.MultiHeadAttention._compute_attention
        )
    )


def _direct_causal_self_attention(layer, x, attention_mask, training):
    """`_direct_cached_self_attention` with only a causal mask (`attention_mask`
    is None): the kernel applies it (`_takes_causal_flag` was checked)."""
    return _in_scope(layer, _cached_self_attention, x, layer, None, training, True)


def _is_plain_decoder(layer):
    """A KerasHub `TransformerDecoder` whose `call` is the class's own."""
    return isinstance(layer, TransformerDecoder) and type(layer).call is TransformerDecoder.call


def _is_plain_encoder(layer):
    """A KerasHub `TransformerEncoder` whose `call` is the class's own."""
    return isinstance(layer, TransformerEncoder) and type(layer).call is TransformerEncoder.call
