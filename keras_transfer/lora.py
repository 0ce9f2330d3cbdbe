"""LoRA on a task model's backbone, through KerasHub's `enable_lora`.

KerasHub's `backbone.enable_lora(rank)` freezes every weight of the
backbone and adds two small trainable matrices (`lora_kernel_a`,
`lora_kernel_b`) to the query and value projections of each attention
layer; the head stays trainable. What this module adds:

- the backbone's dropout is switched back on (a frozen backbone runs in
  inference mode; a LoRA-tuned one trains, as in peft);
- the rank is kept in the task's config, so `kt.load_model` brings a LoRA
  model back as one. Keras saves a LoRA layer with its adapters merged
  into the kernel (`kernel + a @ b * alpha / rank`) and reloads it with
  zero adapters: predictions are identical, and `reseed_adapters` gives the
  reloaded adapters a fresh random `a` (with `b` still zero, the output is
  unchanged) so that training can go on;
- `describe` says what trains, with counts.
"""

import math

import keras
import numpy as np

from keras_transfer import freezing
from keras_transfer.schedules import _is_integer
from keras_transfer.wording import counted


def _check_rank(rank):
    """`rank` as a Python int (a NumPy integer too), or a clear error."""
    if not _is_integer(rank) or rank < 1:
        raise ValueError(
            "Expected the LoRA `rank` to be a positive integer (usually 4 to "
            f"16). Received: rank={rank!r}"
        )
    return int(rank)


def _check_target_layer_names(target_layer_names):
    """A list of layer names: one name alone is taken as a list of one."""
    if target_layer_names is None:
        return None
    if isinstance(target_layer_names, str):
        return [target_layer_names]
    if isinstance(target_layer_names, (set, frozenset, np.ndarray)):
        target_layer_names = sorted(str(name) for name in target_layer_names)
    if not isinstance(target_layer_names, (list, tuple)) or not all(
        isinstance(name, str) for name in target_layer_names
    ):
        raise ValueError(
            "Expected `target_layer_names` to be a layer name or a list of layer "
            f"names, such as ['query', 'value']. Received: target_layer_names={target_layer_names!r}"
        )
    if not target_layer_names:
        raise ValueError(
            "Expected at least one name in `target_layer_names`, or `None` for "
            "the backbone's default LoRA targets."
        )
    return list(target_layer_names)


def lora_layers(model):
    """The layers of `model` that carry LoRA adapters."""
    return [
        layer
        for layer in model._flatten_layers(include_self=False, recursive=True)
        if getattr(layer, "lora_enabled", False)
    ]


def enable_lora(model, rank=8, target_layer_names=None):
    """Adds LoRA adapters to the backbone of `model` and freezes the rest of it.

    Args:
        model: a task model, or a model holding one KerasHub backbone.
        rank: rank of the adapters. Defaults to `8`.
        target_layer_names: name, or list of names, of the layers to
            adapt. Defaults to `None`: the backbone's own choice
            (`backbone.default_lora_layer_names()`, the attention's query and
            value projections).

    Returns:
        The backbone.
    """
    rank = _check_rank(rank)
    target_layer_names = _check_target_layer_names(target_layer_names)
    backbone = freezing._backbone_of(model)
    if backbone is model or not hasattr(backbone, "enable_lora"):
        raise ValueError(
            f"LoRA needs a KerasHub backbone; {model.name} has none. Build the "
            "model over a KerasHub backbone (for example with "
            "`kt.TextClassifier.from_preset`)."
        )
    if lora_layers(backbone):
        raise ValueError(
            f"LoRA is already enabled on {backbone.name} (rank "
            f"{getattr(backbone, '_lora_rank', '?')}); it can be enabled once. "
            "Build the model again for another rank."
        )
    if target_layer_names is not None:
        names = {layer.name for layer in backbone._flatten_layers(include_self=False)}
        missing = sorted(set(target_layer_names) - names)
        if missing:
            raise ValueError(
                f"No layers named {missing} in {backbone.name}. Its default LoRA "
                f"targets are {backbone.default_lora_layer_names()}."
            )
    backbone.enable_lora(rank, target_layer_names=target_layer_names)
    if not lora_layers(backbone):
        raise ValueError(
            f"enable_lora found none of the layers {target_layer_names or backbone.default_lora_layer_names()} "
            f"in {backbone.name}; pass `target_layer_names`."
        )
    # Trains (its adapters do), so dropout is on as in fine-tuning.
    freezing._set_inference_mode(backbone, False)
    backbone._kt_lora = {"rank": rank, "target_layer_names": target_layer_names}
    return backbone


def lora_config(model):
    """`{"rank", "target_layer_names"}` of a LoRA model, or `None`."""
    backbone = freezing._backbone_of(model)
    return dict(getattr(backbone, "_kt_lora", None) or {}) or None


def reseed_adapters(model):
    """Gives fresh random `a` matrices to adapters that are all zeros.

    Keras reloads LoRA layers with both adapter matrices at zero (their
    product was merged into the kernel on saving), where no gradient can
    move them. A random `a` with a zero `b` leaves every output unchanged
    and lets them train. Adapters with any non-zero value are left alone.

    Returns:
        The number of layers reseeded.
    """
    count = 0
    for layer in lora_layers(model):
        a, b = layer.lora_kernel_a, layer.lora_kernel_b
        if not keras.ops.any(a.value != 0) and not keras.ops.any(b.value != 0):
            a.assign(keras.initializers.HeUniform()(a.shape, dtype=a.dtype))
            count += 1
    return count


def describe(model):
    """One line on the LoRA adapters of `model`, or `None` without LoRA.

    Says what trains as it is now, counted from the backbone's trainable
    weights: the adapters (all, some or none of them, as the layers'
    `trainable` flags left them), the biases of the adapted layers, and any
    other backbone weights that train beside them.
    """
    layers = lora_layers(model)
    if not layers:
        return None
    backbone = freezing._backbone_of(model)
    trains = {id(variable) for variable in backbone.trainable_weights}

    def size(variables, training_only=False):
        return sum(math.prod(v.shape) for v in variables if not training_only or id(v) in trains)

    adapter_weights = [w for layer in layers for w in (layer.lora_kernel_a, layer.lora_kernel_b)]
    biases = [layer.bias for layer in layers if getattr(layer, "bias", None) is not None]
    adapters, adapters_training = size(adapter_weights), size(adapter_weights, training_only=True)
    biases_training = size(biases, training_only=True)
    others_training = size(backbone.trainable_weights) - adapters_training - biases_training
    names = sorted({layer.name for layer in layers})
    head = f"LoRA rank {layers[0].lora_rank} on {counted(len(layers), 'layer')} ({', '.join(names)}): "
    if not adapters_training and not biases_training and not others_training:
        return head + f"{adapters:,} adapter parameters, frozen with the rest of the backbone (none of it trains)"
    if adapters_training == adapters:
        what = f"{adapters:,} adapter parameters train"
    elif adapters_training:
        what = f"{adapters_training:,} of {adapters:,} adapter parameters train"
    else:
        what = f"the {adapters:,} adapter parameters are frozen"
    also = f" (and their {biases_training:,} bias parameters)" if biases_training and adapters_training else ""
    if biases_training and not adapters_training:
        also = f"; {biases_training:,} bias parameters of the adapted layers train"
    rest = (
        f"{others_training:,} other backbone parameters train too (unfrozen layers)"
        if others_training
        else "the rest of the backbone is frozen"
    )
    return f"{head}{what}{also}; {rest}"
