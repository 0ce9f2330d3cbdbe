"""Functional models run by a leaner graph runner (part of `fuse`).

`fuse` gives every functional model (KerasHub backbones, task models) a
`_run_through_graph` that frees each intermediate output after the last
node that reads it, instead of holding all of them until the graph has run
(`_freeing_run_through_graph`: fewer live activations, fewer page faults).
Its nodes call KerasHub blocks, plain embedding, dropout, layer-norm and
dense layers, the `Add` of a backbone's embeddings and a backbone inside a
task model without `Layer.__call__` (`_block_node_call`), resolving
`training` as Keras does, and fill each node's arguments from a template
made once (`_argument_filler`). Inputs that need no change skip Keras'
standardization and input-spec checks (`_standardize_inputs`,
`_assert_input_compatibility`). The layer-level pieces are in `fused`, the
blocks' paths in `fused_blocks`.
"""

import keras
import torch
from keras.src import tree
from keras.src.backend import KerasTensor, get_keras_mask
from keras.src.backend.common import global_state
from keras.src.models.functional import Functional
from keras_hub.layers import PositionEmbedding, ReversibleEmbedding

from keras_transfer.fused import (
    _GRAPH_PLAN,
    _forward_passes,
    _can_call_directly,
    _dtypes,
    _in_scope,
    _needs_layer_call,
    _torch_dtype,
)
from keras_transfer.fused_blocks import _direct_decoder_call, _direct_encoder_call
from keras_transfer.layers import Pooling
from keras_transfer.method_overrides import has_override as _has_override
from keras_transfer.scalars import on_keras_device


def _graph_plan(model):
    """The functional graph's nodes in execution order, each with its
    argument filler (`_argument_filler`), and each tensor's uses.

    Computed once per graph (the plan remembers which `_nodes_by_depth` it
    was made from, so a copied model makes its own).
    """
    plan = model.__dict__.get(_GRAPH_PLAN)
    if plan is not None and plan[0] is model._nodes_by_depth:
        return plan[1:]
    nodes = [
        node
        for depth in sorted(model._nodes_by_depth, reverse=True)
        for node in model._nodes_by_depth[depth]
        if node.operation and not node.is_input
    ]
    uses = {}
    for node in nodes:
        for x in node.input_tensors:
            uses[id(x)] = uses.get(id(x), 0) + 1
    keep = frozenset(id(x) for x in model.outputs)
    steps = [(node, _argument_filler(node.arguments)) for node in nodes]
    model.__dict__[_GRAPH_PLAN] = (model._nodes_by_depth, steps, uses, keep)
    return steps, uses, keep


def _argument_filler(arguments):
    """`arguments.fill_in` for a node whose arguments nest at most one level.

    Keras' `SymbolicArguments.fill_in` maps over the arguments with its
    `tree` functions (torch's pytree here), 20-30 µs per node with keyword
    arguments; for flat ones the same result is a lookup per argument. An
    argument may itself be a list, tuple or dict of graph tensors and plain
    constants (the embeddings an `Add` sums, the inputs of a backbone inside
    a task model), filled into a new container of the same type and order,
    as Keras' `tree.map_structure` makes it. Returns a function of the
    tensor dict, or None (Keras' `fill_in`) for anything nested deeper or
    any other container.
    """
    args, kwargs = arguments.args, arguments.kwargs
    if not all(map(_fillable, (*args, *kwargs.values()))):
        return None

    def slot(value):  # (kind, what): a graph tensor's id, a container's slots, or a constant
        if isinstance(value, KerasTensor):
            return (_TENSOR, id(value))
        if type(value) is dict:
            return (_DICT, [(key, slot(v)) for key, v in value.items()])
        if type(value) in (list, tuple):
            return (type(value), [slot(v) for v in value])
        return (_CONSTANT, value)

    arg_slots = [slot(v) for v in args]
    kwarg_slots = [(key, slot(v)) for key, v in kwargs.items()]

    def fill_in(tensor_dict):
        get = tensor_dict.get

        def fill(kind, what):
            if kind is _TENSOR:
                return get(what)
            if kind is _CONSTANT:
                return what
            if kind is _DICT:
                return {key: fill(*inner) for key, inner in what}
            return kind(fill(*inner) for inner in what)

        return tuple(fill(*s) for s in arg_slots), {key: fill(*s) for key, s in kwarg_slots}

    return fill_in


_TENSOR, _CONSTANT, _DICT = "tensor", "constant", "dict"  # slot kinds of `_argument_filler`
_LEAF_CONSTANTS = (type(None), bool, int, float, str)


def _fillable(value):
    """Whether `_argument_filler` fills `value` as Keras' `fill_in` would:
    not a container, or a plain list, tuple or dict of graph tensors and
    plain constants (None, bools, numbers, strings)."""
    if type(value) in (list, tuple):
        items = value
    elif type(value) is dict:
        items = value.values()
    else:
        return not isinstance(value, (list, tuple, dict))
    return all(isinstance(v, KerasTensor) or type(v) in _LEAF_CONSTANTS for v in items)


def _operation_for_node(function, node):
    """Keras' `Function._get_operation_for_node` without its `hasattr`, which
    on a torch model raises and catches an `AttributeError` per node: the
    node's operation, or its stand-in where Keras (JAX's NNX) mapped one."""
    mapping = function.__dict__.get("_nnx_op_mapping")
    return node.operation if mapping is None else mapping.get(id(node.operation), node.operation)


def _freeing_run_through_graph(self, inputs, operation_fn=lambda op: op, call_fn=None):
    """Keras' `Function._run_through_graph`, freeing each tensor after its last use.

    Keras keeps every intermediate output of a functional model (the
    embeddings, each block's hidden states) until the whole graph has run.
    That is a dozen extra activations alive at once in a BERT, which on
    these machines costs page faults on every step, about a tenth of a
    MiniLM forward pass. Here a tensor is dropped once the last node that
    reads it has run; the nodes run in Keras' order and the outputs are
    the same objects.

    A symbolic run (`keras.models.clone_model`, whose `operation_fn`
    clones each layer; the long road of `compute_output_spec`) is Keras'
    own: nothing is freed there, and its `operation_fn` is not the
    functional call's, which the direct path assumes.
    """
    if torch.compiler.is_compiling():
        # Traced: masks are made afresh (`fused._memoized_mask`), and a
        # counter that changes every call would make dynamo recompile.
        return _run_nodes(self, inputs, operation_fn, call_fn)
    # A mask made from inference tensors is kept for one forward pass
    # (`fused._source_version`): this call's, nested backbones included.
    _forward_passes[0] += 1
    _forward_passes[1] += 1
    try:
        return _run_nodes(self, inputs, operation_fn, call_fn)
    finally:
        _forward_passes[1] -= 1


def _run_nodes(self, inputs, operation_fn, call_fn):
    """`_freeing_run_through_graph`'s body."""
    flat_inputs = tree.flatten(inputs)
    if flat_inputs and isinstance(flat_inputs[0], KerasTensor):
        return type(self)._run_through_graph(self, inputs, operation_fn, call_fn)
    steps, uses, keep = _graph_plan(self)
    tensor_dict = {}
    for x, y in zip(self.inputs, flat_inputs):
        tensor_dict[id(x)] = y
    remaining = dict(uses)
    injected = operation_fn(_ContextProbe())()  # the `training` Functional.call passes on
    for node, fill_in in steps:
        if any(id(x) not in tensor_dict for x in node.input_tensors):
            continue  # not computable from these inputs, as in Keras
        args, kwargs = fill_in(tensor_dict) if fill_in is not None else node.arguments.fill_in(tensor_dict)
        if call_fn is not None:
            outputs = call_fn(operation_fn(node.operation), *args, **kwargs)
        else:
            operation = _operation_for_node(self, node)
            outputs = _block_node_call(operation, args, kwargs, injected)
            if outputs is None:
                outputs = operation_fn(operation)(*args, **kwargs)
        del args, kwargs
        for x in node.input_tensors:
            key = id(x)
            remaining[key] -= 1
            if remaining[key] == 0 and key not in keep:
                tensor_dict.pop(key, None)
        flat = (outputs,) if isinstance(outputs, torch.Tensor) else tree.flatten(outputs)
        for x, y in zip(node.outputs, flat):
            tensor_dict[id(x)] = y
    output_tensors = []
    for i, x in enumerate(self.outputs):
        if id(x) not in tensor_dict:
            path = ".".join(str(p) for p in tree.flatten_with_path(self._outputs_struct)[i][0])
            raise ValueError(f"Output with path `{path}` is not connected to `inputs`")
        output_tensors.append(tensor_dict[id(x)])
    return tree.pack_sequence_as(self._outputs_struct, output_tensors)


def _standardize_inputs(self, inputs):
    """`Functional._standardize_inputs` for inputs that need no change.

    Keras checks the inputs' structure against the model's with its `tree`
    functions, converts each to its input's dtype and adjusts ranks: 0.15
    ms per call, twice per step for a backbone inside a task model. When
    the inputs need no change (`_inputs_as_they_are`), all of that returns
    the tensors as they are, in the model's (sorted) order; that case is
    answered directly, every other by Keras.
    """
    flat = _inputs_as_they_are(self, inputs)
    if flat is not None:
        return flat
    return type(self)._standardize_inputs(self, inputs)


def _assert_input_compatibility(self, *args):
    """`Functional._assert_input_compatibility` for inputs that need no change.

    Keras builds an `InputSpec` per input and checks the inputs against
    them on every outermost call (60-100 µs for a task model). For inputs
    that need no change (`_inputs_as_they_are`), where no input fixes a
    dimension beyond the batch, every check passes; that case returns at
    once, every other is Keras'.
    """
    if (
        len(args) == 1
        and not hasattr(self, "_manual_input_spec")
        and type(self).input_spec is Functional.input_spec
        and _inputs_as_they_are(self, args[0]) is not None
        and all(dim is None for spec in self._inputs for dim in spec.shape[1:])
    ):
        return None
    return type(self)._assert_input_compatibility(self, *args)


def _inputs_as_they_are(model, inputs):
    """The model's inputs in its (sorted) order when `inputs` need no change
    from Keras: a dict with the model's input names, each a tensor with its
    input's dtype and rank on Keras' device (`_unchanged_input`); else None."""
    struct = model._inputs_struct
    if not (isinstance(struct, dict) and isinstance(inputs, dict) and inputs.keys() == struct.keys()):
        return None
    flat = [inputs[key] for key in sorted(inputs)]
    return flat if all(map(_unchanged_input, flat, model._inputs)) else None


def _unchanged_input(x, spec):
    """Whether Keras' conversion and rank adjustment leave `x` as it is for `spec`."""
    return (
        type(x) is torch.Tensor
        and len(x.shape) == len(spec.shape)
        and not spec.sparse
        and x.dtype == _torch_dtype(spec.dtype)
        and on_keras_device(x)
    )


class _ContextProbe:
    """Stands in for a layer taking `training`: calling `operation_fn(probe)()`
    returns the keyword arguments the functional model injects into such a
    layer's call (its own `training`, when not None)."""

    _call_context_args = ("training",)

    def __call__(self, **kwargs):
        return kwargs


def _block_node_call(layer, args, kwargs, injected):
    """A graph node's call of a KerasHub block, a plain layer, an `Add` or a
    submodel, without `Layer.__call__`; or None.

    `Layer.__call__` around a whole block costs as much again as the
    block's own Python (0.17 against 0.29 ms for a small BERT layer), and
    around an embedding, dropout, layer norm or dense layer (`_PLAIN_LEAVES`)
    0.1-0.3 ms. For a block that runs the direct path anyway
    (`_direct_encoder_call`, `_direct_decoder_call`), or such a layer,
    called from inside a model with one input tensor (and integer masks),
    and for an `Add`, `Pooling` or a functional submodel (a backbone in a
    task model: 0.2-0.4 ms of wrapper each) with a flat list or dict of
    them (`_direct_first_argument`), what the wrapper does reduces to:
    resolve `training` as Keras does (the functional model's own
    `training` when not None, `injected`, else the node's, else the
    enclosing call context's), stash it in the context for later layers,
    convert the input's dtype and open the autocast scope (`_in_scope`),
    and pass `training` to a layer whose `call` takes it. A plain layer's,
    an `Add`'s or a submodel's input spec was checked when the graph was
    built (a block with one keeps Keras' path). Anything else (a Keras
    mask, float tensors among the other arguments, torch hooks, a call
    from outside a model) returns None: Keras' own path.
    """
    leaf = _is_plain_leaf(layer)
    structured = leaf or _is_plain_merge(layer) or _is_fused_submodel(layer)
    if not (structured or _is_fused_block(layer)) or not _can_call_directly(layer):
        return None
    if layer.input_spec is not None and not structured:
        return None
    first = _direct_first_argument(layer, args[0] if args else None, structured)
    if first is None:
        return None
    if not isinstance(kwargs.get("training"), (bool, type(None))):
        return None  # a tensor `training`: Keras' path
    if not all(map(_is_mask_argument, args[1:])) or not all(map(_is_mask_argument, kwargs.values())):
        return None
    context = global_state.get_global_attribute("current_call_ctx")
    if context is None or set(layer._call_context_args) != {"training"}:
        return None
    kwargs.update(injected)
    training = kwargs.pop("training", None)
    if training is None:
        training = context.get_value("training")
    context.set_value("training", training)
    if not layer._called:  # Keras sets it through its tracking __setattr__ (30 µs a call)
        layer._called = True
    if layer._call_has_training_arg:
        kwargs["training"] = training
    return _in_scope(layer, layer.call, first, *args[1:], **kwargs)


def _direct_first_argument(layer, x, structured):
    """The first argument of a direct call, as `Layer.__call__` would pass
    it on, or None where only that wrapper can handle it.

    A tensor; or, for layers whose `call` takes several (`structured`: an
    `Add` of embeddings, `Pooling` of a backbone's outputs, a backbone
    inside a task model), a flat list, tuple or dict of tensors, each
    converted to the layer's input dtype as the wrapper does. None for
    anything with a Keras mask or under a distribution (`_needs_layer_call`).
    """
    if isinstance(x, torch.Tensor):
        return None if _needs_layer_call(x) else x
    if not structured or not isinstance(x, (list, tuple, dict)):
        return None
    values = _flat_values(x)
    if not values or not all(isinstance(v, torch.Tensor) and not _needs_layer_call(v) for v in values):
        return None
    if not layer._convert_input_args:
        return x
    dtypes = _dtypes(layer)

    def convert(v):
        if v.dtype == dtypes.input_torch:
            return v
        return dtypes.policy.convert_input(v, layer.autocast, layer.input_dtype)

    if isinstance(x, dict):
        return {key: convert(v) for key, v in x.items()}
    return type(x)(convert(v) for v in x)


def _flat_values(x):
    """The values of a flat list, tuple or dict."""
    return list(x.values()) if isinstance(x, dict) else list(x)


def _is_mask_argument(value):
    """None, a bool, an integer/bool tensor without a Keras mask, or a flat
    structure of Nones (the `mask` a graph records for a submodel's inputs):
    what `Layer.__call__` would pass through unchanged."""
    if value is None or isinstance(value, bool):
        return True
    if isinstance(value, (list, tuple, dict)):
        return all(v is None for v in _flat_values(value))
    return isinstance(value, torch.Tensor) and not value.is_floating_point() and get_keras_mask(value) is None


# Layers whose `Layer.__call__` inside a graph reduces to what `_block_node_call`
# does when their input has no Keras mask: no mask of their own (an
# embedding with `mask_zero` makes one), no call-time input checks beyond an
# input spec the graph already satisfied when it was built.
_PLAIN_LEAVES = tuple(
    cls
    for cls in (
        keras.layers.Dense,
        keras.layers.EinsumDense,
        keras.layers.LayerNormalization,
        keras.layers.Dropout,
        keras.layers.Embedding,
        getattr(keras.layers, "ReversibleEmbedding", None),  # Keras' own, which KerasHub models use
        ReversibleEmbedding,  # KerasHub's older one
        PositionEmbedding,
        Pooling,
    )
    if cls is not None
)


def _is_plain_leaf(layer):
    """One of `_PLAIN_LEAVES` exactly (not a subclass), without `mask_zero`."""
    return type(layer) in _PLAIN_LEAVES and not getattr(layer, "mask_zero", False)


def _is_plain_merge(layer):
    """A Keras `Add` (how KerasHub backbones sum their embeddings)."""
    return type(layer) is keras.layers.Add


def _is_fused_submodel(layer):
    """A functional model (a backbone inside a task model) whose graph runs
    here and whose `call` is Keras' own."""
    return (
        _has_override(layer, "_run_through_graph", _freeing_run_through_graph)
        and type(layer).call is Functional.call
    )


def _is_fused_block(layer):
    return _has_override(layer, "call", _direct_encoder_call) or _has_override(layer, "call", _direct_decoder_call)


def _is_functional(layer):
    return (
        isinstance(layer, Functional)
        and hasattr(layer, "_nodes_by_depth")
        and type(layer)._run_through_graph is Functional._run_through_graph
    )
