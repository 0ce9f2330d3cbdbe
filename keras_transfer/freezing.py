"""Freezing and unfreezing backbones, through layer objects, visibly.

A frozen layer trains nothing and runs in inference mode:

- `layer.trainable = False` on the torch backend also sets
  `requires_grad=False` on its weights, so no gradient is computed for them
  and, with integer token ids as input, no autograd graph is built at all;
- every `Dropout` inside it (and the attention dropout of every
  `MultiHeadAttention`) is switched off. Besides removing the noise, a zero
  attention dropout lets Keras call PyTorch's fused
  `scaled_dot_product_attention` kernel. The original rates are remembered
  and restored by `unfreeze`.

Keras does not save per-layer trainable flags of a KerasHub backbone (its
config holds constructor arguments only), and reloads even a top-level
`trainable=False` with trainable weights (see `restore_frozen_state`). Task
models keep the state in their config; a backbone that `freeze` or
`unfreeze` touched also lists its frozen layers in its own config
(`FROZEN_LAYERS_KEY`, which KerasHub's constructor ignores), so a plain
model or a preset saved with a partly frozen backbone keeps it too.
`kt.load_model` and `kt.load_backbone` apply it again.
"""

import math
import re
import types

import keras
import keras_hub
import numpy as np

from keras_transfer.families import family_of


def _sublayers(layer):
    """All layers under `layer`, itself included, parents before children."""
    return list(layer._flatten_layers(include_self=True, recursive=True))


# Where each kind of layer keeps its dropout rate, and its config key.
_DROPOUT_RATES = (
    (keras.layers.Dropout, "rate", "rate"),
    (keras.layers.MultiHeadAttention, "_dropout", "dropout"),
)


def _switch_off(layer, attribute, key, off):
    """Sets `layer.<attribute>` to 0, remembering it, or restores it.

    While switched off, the layer's config still reports the original rate,
    so a model saved while frozen keeps its dropout for later fine-tuning.
    """
    saved = f"_kt_saved{attribute}"
    if off:
        if not hasattr(layer, saved):
            setattr(layer, saved, getattr(layer, attribute))
            get_config = layer.get_config

            def get_config_with_saved_rate():
                config = get_config()
                if hasattr(layer, saved):
                    config[key] = getattr(layer, saved)
                return config

            layer.get_config = get_config_with_saved_rate
        setattr(layer, attribute, 0.0)
    elif hasattr(layer, saved):
        setattr(layer, attribute, getattr(layer, saved))
        delattr(layer, saved)


def _set_inference_mode(layer, frozen):
    """Switches the dropout of `layer` and everything below it off or back."""
    for sub in _sublayers(layer):
        for kind, attribute, key in _DROPOUT_RATES:
            if isinstance(sub, kind):
                _switch_off(sub, attribute, key, frozen)


def _set_frozen(layer, frozen):
    layer.trainable = not frozen
    _set_inference_mode(layer, frozen)


def _backbone_of(model):
    """The backbone of a task model or of a plain model, or the layer itself.

    A plain Keras model built over one KerasHub backbone counts as that
    backbone; anything else is treated as a whole.
    """
    backbone = getattr(model, "backbone", None)
    if isinstance(backbone, keras.layers.Layer):
        return backbone
    if isinstance(model, keras_hub.models.Backbone):
        return model
    found = [
        layer
        for layer in model._flatten_layers(include_self=False, recursive=True)
        if isinstance(layer, keras_hub.models.Backbone)
    ]
    return found[0] if len(found) == 1 else model


def _check_layer(model, function):
    if not isinstance(model, keras.layers.Layer):
        raise ValueError(
            f"`kt.{function}` expects a Keras layer or model (a backbone or a "
            f"task model). Received: {model!r} of type {type(model).__name__}."
        )


def _declared_blocks(backbone):
    """The backbone's own `transformer_layers` list, flattened, if it has one.

    KerasHub backbones keep their blocks there, bottom first. ALBERT keeps
    a list of groups, each a list of layers that every depth of the group
    reuses: its blocks are the distinct layers, fewer than `num_layers`.
    """
    declared = getattr(backbone, "transformer_layers", None)
    if not isinstance(declared, (list, tuple)):
        return None
    found = []

    def flatten(items):
        for item in items:
            if isinstance(item, (list, tuple)):
                flatten(item)
            elif isinstance(item, keras.layers.Layer) and item not in found:
                found.append(item)

    flatten(declared)
    direct = backbone.layers
    if not found or not all(any(layer is d for d in direct) for layer in found):
        return None
    return found


def blocks(backbone):
    """The transformer blocks of a backbone, bottom first.

    A KerasHub backbone lists them in its `transformer_layers` attribute
    (for ALBERT, whose blocks share weights across depths, these are the
    distinct blocks). Otherwise blocks are found as the sub-layers named
    `<prefix>_<i>` whose count equals the backbone's `num_layers` (KerasHub
    names them `transformer_layer_0`, `decoder_block_0`, …).
    """
    declared = _declared_blocks(backbone)
    if declared is not None:
        return declared
    groups = {}
    for layer in backbone.layers:
        match = re.fullmatch(r"(.*?)_?(\d+)", layer.name)
        if match:
            groups.setdefault(match.group(1), []).append(
                (int(match.group(2)), layer)
            )
    num_layers = getattr(backbone, "num_layers", None)
    candidates = [group for group in groups.values() if len(group) == num_layers]
    if not candidates:
        expected = (
            f"expected {num_layers} layers named like `transformer_layer_<i>`"
            if num_layers is not None
            else "it is not a KerasHub backbone (no `num_layers`)"
        )
        raise ValueError(
            f"Could not find the transformer blocks of {backbone.name} "
            f"({type(backbone).__name__}): {expected}. Freeze or unfreeze it "
            "whole with `kt.freeze(model)` / `kt.unfreeze(model)`, or call "
            "`kt.unfreeze` on a model holding one KerasHub backbone."
        )
    group = max(candidates, key=len)
    return [layer for _, layer in sorted(group, key=lambda item: item[0])]


def _regions(backbone):
    """Splits a backbone's layers into (below the blocks, blocks, above)."""
    stack = blocks(backbone)
    layers = [
        layer
        for layer in backbone.layers
        if not isinstance(layer, keras.layers.InputLayer)
    ]
    first = layers.index(stack[0])
    last = layers.index(stack[-1])
    below = layers[:first]
    above = [layer for layer in layers[last + 1 :] if layer not in stack]
    return below, stack, above


#: The key under which a backbone's config lists its frozen sub-layers.
FROZEN_LAYERS_KEY = "keras_transfer_frozen_layers"


def _config_with_frozen_layers(backbone):
    config = type(backbone).get_config(backbone)
    frozen = [layer.name for layer in backbone.layers if not layer.trainable]
    if backbone.trainable and frozen:
        config[FROZEN_LAYERS_KEY] = frozen
    return config


def remember_frozen_layers(backbone):
    """Makes `backbone.get_config()` list its frozen sub-layers (as they are
    when it is saved), for `frozen_layers_in_config` to find on reload."""
    if isinstance(backbone, keras_hub.models.Backbone) and "get_config" not in backbone.__dict__:
        # A bound method (not a closure): a deep copy rebinds it to the copy.
        backbone.__dict__["get_config"] = types.MethodType(_config_with_frozen_layers, backbone)
    return backbone


def frozen_layers_in_config(config):
    """`{backbone name: [frozen sub-layer names]}` for every backbone a
    saved config (a model's or a preset's `config.json`) records."""
    found = {}
    if isinstance(config, dict):
        if FROZEN_LAYERS_KEY in config:
            found[config.get("name")] = list(config[FROZEN_LAYERS_KEY])
        for value in config.values():
            found.update(frozen_layers_in_config(value))
    elif isinstance(config, list):
        for value in config:
            found.update(frozen_layers_in_config(value))
    return found


def restore_frozen_layers(model, config):
    """Freezes again the backbone sub-layers that `config` (the saved
    config of `model`) lists as frozen; returns `model`."""
    recorded = frozen_layers_in_config(config)
    if not recorded:
        return model
    for layer in [model, *_sublayers(model)]:
        if isinstance(layer, keras_hub.models.Backbone) and layer.name in recorded and layer.trainable:
            restore_frozen_state(layer, {"trainable": True, "frozen_layers": recorded[layer.name]})
    return model


def _check_no_lora(backbone, function):
    """Refuses to change what trains in a LoRA backbone: its frozen state is
    per weight (kernels frozen, adapters training), which `freeze` and
    `unfreeze` would overwrite layer by layer, and which a reload could not
    bring back."""
    from keras_transfer.lora import lora_layers  # lora imports this module

    if lora_layers(backbone):
        raise ValueError(
            f"LoRA is enabled on {backbone.name}: its pretrained weights are frozen and its "
            f"adapters train. `kt.{function}` would change that layer by layer (unfreezing "
            "would train every weight, freezing would stop the adapters). Train the LoRA "
            "model as it is with `fit`, or build the model again without LoRA to freeze or "
            "unfreeze blocks."
        )


def freeze(model):
    """Freezes a backbone, or the backbone of a task model.

    Frozen weights get no gradients and the frozen layers run in inference
    mode (no dropout). Call `compile()` again after changing what trains.

    Args:
        model: a KerasHub backbone, a task model with a `.backbone`, or any
            Keras layer (frozen whole).

    Returns:
        The layer that was frozen.
    """
    _check_layer(model, "freeze")
    backbone = _backbone_of(model)
    _check_no_lora(backbone, "freeze")
    _set_frozen(backbone, True)
    remember_frozen_layers(backbone)
    return backbone


def check_embeddings_flag(embeddings):
    """Refuses an `embeddings` flag that is not True or False: any string,
    `"no"` and `"false"` included, is truthy and would train the
    embeddings without a word."""
    if not isinstance(embeddings, (bool, np.bool_)):
        raise ValueError(
            f"Expected `embeddings` to be True or False. Received: embeddings={embeddings!r}"
        )


def unfreeze(model, top=None, embeddings=False):
    """Makes a backbone trainable again, whole or only its top blocks.

    Args:
        model: a KerasHub backbone or a task model with a `.backbone`.
        top: number of transformer blocks to train, counted from the top;
            the layers above the blocks (final norm, pooler) train with
            them. `None` unfreezes everything. Defaults to `None`.
        embeddings: also train the embedding layers when `top` is given.
            Defaults to `False`.

    Returns:
        The backbone.

    Example:
    ```python
    kt.unfreeze(model, top=2)   # the last two blocks train, the rest stays frozen
    model.compile(learning_rate=2e-5)
    ```
    """
    _check_layer(model, "unfreeze")
    check_embeddings_flag(embeddings)
    backbone = _backbone_of(model)
    _check_no_lora(backbone, "unfreeze")
    if top is None:
        _set_frozen(backbone, False)
    else:
        _unfreeze_top(backbone, top, embeddings)
    freeze_unused_pooler(model, backbone)
    remember_frozen_layers(backbone)
    return backbone


def freeze_unused_pooler(model, backbone):
    """Keeps BERT's pooler frozen when the head does not read it.

    Otherwise its weights would be "trainable" but get no gradient, and
    Keras warns at every step.
    """
    pooling = getattr(model, "pooling", None)
    if pooling is None or pooling == "pooled":
        return
    try:
        pooler = family_of(backbone).pooler
    except ValueError:
        return
    for layer in backbone.layers:
        if layer.name == pooler:
            _set_frozen(layer, True)


def _unfreeze_top(backbone, top, embeddings):
    below, stack, above = _regions(backbone)
    if isinstance(top, np.integer):
        top = int(top)
    if isinstance(top, bool) or not isinstance(top, int) or not 0 <= top <= len(stack):
        raise ValueError(
            f"Expected `top` to be an integer between 0 and {len(stack)} (the "
            f"number of blocks in {backbone.name}). Received: top={top!r}"
        )
    # A frozen parent hides all its children's weights from training, so
    # the backbone itself must be trainable and its parts frozen one by one.
    backbone.trainable = True
    for layer in below:
        _set_frozen(layer, not embeddings)
    for index, layer in enumerate(stack):
        _set_frozen(layer, index < len(stack) - top)
    for layer in above:
        _set_frozen(layer, top == 0)
    if top == 0 and not embeddings:
        _set_frozen(backbone, True)


def frozen_state(model):
    """The frozen/trainable state of a backbone, as plain data.

    Returns `{"trainable": bool, "frozen_layers": [names]}` where the names
    are the backbone's direct sub-layers that are frozen.
    """
    _check_layer(model, "frozen_state")
    backbone = _backbone_of(model)
    return {
        "trainable": bool(backbone.trainable),
        "frozen_layers": [
            layer.name for layer in backbone.layers if not layer.trainable
        ],
    }


def restore_frozen_state(model, state=None):
    """Applies a `frozen_state` again, or repairs flags after a reload.

    Keras reloads `trainable=False` layers with trainable weights (the flag
    is set before the weights exist), so a `fit` after `load_model` would
    silently train a "frozen" backbone. This sets every flag again so that
    it reaches the weights.

    Args:
        model: a backbone, a task model, or any Keras model.
        state: what `frozen_state` returned; `None` re-applies the flags the
            layers already carry, for every layer of `model`.
    """
    _check_layer(model, "restore_frozen_state")
    if state is None:
        for layer in _sublayers(model):
            if not layer.trainable:
                _set_frozen(layer, True)
        return model
    if (
        not isinstance(state, dict)
        or not isinstance(state.get("trainable"), bool)
        or not isinstance(state.get("frozen_layers"), (list, tuple))
    ):
        raise ValueError(
            "Expected `state` to be what `kt.frozen_state(model)` returns: "
            '{"trainable": bool, "frozen_layers": [layer names]}. '
            f"Received: state={state!r}"
        )
    backbone = _backbone_of(model)
    remember_frozen_layers(backbone)
    if not state["trainable"]:
        _set_frozen(backbone, True)
        return model
    _set_frozen(backbone, False)
    by_name = {layer.name: layer for layer in backbone.layers}
    for name in state["frozen_layers"]:
        if name in by_name:
            _set_frozen(by_name[name], True)
    return model


def count_params(model):
    """Returns `(trainable, frozen)` parameter counts of a model or layer."""
    _check_layer(model, "count_params")
    trainable = sum(math.prod(v.shape) for v in model.trainable_weights)
    frozen = sum(math.prod(v.shape) for v in model.non_trainable_weights)
    return trainable, frozen


def describe(backbone):
    """One line saying which parts of a backbone train and which are frozen."""
    if not backbone.trainable:
        return "frozen whole (inference mode, no gradients)"
    frozen = [layer for layer in backbone.layers if not layer.trainable]
    if not frozen:
        return "trains whole"
    try:
        below, stack, above = _regions(backbone)
    except ValueError:
        return f"{len(frozen)} of {len(backbone.layers)} layers frozen"
    training = [i for i, layer in enumerate(stack) if layer.trainable]
    parts = ["embeddings " + ("train" if all(l.trainable for l in below) else "frozen")]
    if training:
        which = f"block {training[0]}" if len(training) == 1 else f"blocks {training[0]}-{training[-1]}"
        parts.append(f"{which} of 0-{len(stack) - 1} train{'s' if len(training) == 1 else ''}")
    else:
        parts.append(f"all {len(stack)} blocks frozen" if len(stack) != 1 else "its 1 block frozen")
    return ", ".join(parts)
