"""Discriminative (layer-wise) learning rates, and growing an optimizer.

`LayerwiseAdamW` is Keras' AdamW with a learning-rate multiplier per
variable: the head learns at the (scheduled) base rate, the backbone's
blocks at smaller rates, lower blocks smaller still (ULMFiT's
discriminative fine-tuning; ELECTRA's and BEiT's layer-wise decay).
`layerwise_multipliers` computes the multipliers of a task model from its
layer objects; `Task.compile(backbone_learning_rate=…, layer_decay=…)`
builds the optimizer for you.

`add_variables` lets a built optimizer learn of weights that became
trainable after it was built (gradual unfreezing), keeping the state it
has for the others.
"""

import math

import keras

from keras_transfer import freezing
from keras_transfer.schedules import _is_integer, _is_number

try:  # Keras' own fused (torch._foreach) Adam step, used when available.
    from keras.src.backend.torch.optimizers.torch_adam import Adam as _TorchAdam
except ImportError:  # pragma: no cover - other backends
    _TorchAdam = None


def inner_optimizer(optimizer):
    """The optimizer that updates the weights: the one inside Keras'
    `LossScaleOptimizer` (which `compile` adds under "mixed_float16")."""
    return getattr(optimizer, "inner_optimizer", None) or optimizer


def _check_rate(name, value, allow_none=True):
    """`value` as a Python float (`None` stays `None` where allowed)."""
    if value is None and allow_none:
        return None
    if not _is_number(value) or not value > 0:
        raise ValueError(f"Expected `{name}` to be a positive number. Received: {name}={value!r}")
    return float(value)


def _check_weight_decay(weight_decay):
    """`weight_decay` as a Python float, refused unless a number >= 0."""
    if not _is_number(weight_decay) or not weight_decay >= 0:
        raise ValueError(
            "Expected `weight_decay` to be a number >= 0 (the decoupled AdamW "
            "weight decay; 0 turns it off, 0.01 is BERT's). "
            f"Received: weight_decay={weight_decay!r}"
        )
    return float(weight_decay)


@keras.saving.register_keras_serializable(package="keras_transfer")
class LayerwiseAdamW(keras.optimizers.AdamW):
    """AdamW with a learning-rate multiplier per variable.

    Each variable's step uses `learning_rate * multiplier`, where
    `learning_rate` is the optimizer's rate at this step (a float or any
    `LearningRateSchedule`) and `multiplier` is looked up by the variable's
    path (`variable.path`, for example
    `"transformer_layer_0/self_attention_layer/query/kernel"`). Variables
    not listed use `default_multiplier`. Decoupled weight decay is scaled
    the same way, as in PyTorch's per-parameter-group AdamW. The
    multipliers are part of the config, so a saved model reloads with them.

    Args:
        learning_rate: the base rate, a float or a schedule. Defaults to
            `0.001`.
        multipliers: `{variable path: multiplier}`. Defaults to `None`
            (every variable at the base rate: plain AdamW).
        default_multiplier: multiplier of variables not in `multipliers`.
            Defaults to `1.0`.
        weight_decay: decoupled weight decay. Defaults to `0.004` (Keras'
            AdamW default).
        **kwargs: everything else Keras' `AdamW` takes (`beta_1`,
            `epsilon`, `gradient_accumulation_steps`, `clipnorm`, …).

    Example:
    ```python
    multipliers = kt.optimizers.layerwise_multipliers(model, layer_decay=0.8)
    optimizer = kt.optimizers.LayerwiseAdamW(2e-5, multipliers=multipliers)
    model.compile(optimizer=optimizer)
    # or simply: model.compile(learning_rate=2e-5, layer_decay=0.8)
    ```
    """

    def __init__(
        self,
        learning_rate=0.001,
        multipliers=None,
        default_multiplier=1.0,
        weight_decay=0.004,
        **kwargs,
    ):
        if _is_number(learning_rate):
            if not 0 <= learning_rate < math.inf:
                # Keras takes it: a negative rate climbs the loss, without a word.
                raise ValueError(
                    "Expected `learning_rate` to be a finite number >= 0 or a schedule. "
                    f"Received: learning_rate={learning_rate!r}"
                )
            learning_rate = float(learning_rate)  # a NumPy number too, as a plain float in the config
        super().__init__(learning_rate=learning_rate, weight_decay=_check_weight_decay(weight_decay), **kwargs)
        multipliers = dict(multipliers or {})
        for path, value in multipliers.items():
            if not isinstance(path, str):
                raise ValueError(
                    "`multipliers` must map variable paths (strings such as "
                    f"'logits/kernel') to numbers. Received the key {path!r}."
                )
            if not _is_number(value) or not value >= 0:
                raise ValueError(
                    f"Expected a non-negative learning-rate multiplier for {path!r}. "
                    f"Received: {value!r}"
                )
        self.multipliers = {path: float(value) for path, value in multipliers.items()}
        self.default_multiplier = _check_rate("default_multiplier", default_multiplier, allow_none=False)

    def multiplier(self, variable):
        """The learning-rate multiplier of `variable` (looked up by path)."""
        return self.multipliers.get(variable.path, self.default_multiplier)

    def _groups(self, grads, variables):
        """Splits (grads, variables) by multiplier, keeping their order."""
        groups = {}
        for grad, variable in zip(grads, variables):
            grads_of, vars_of = groups.setdefault(self.multiplier(variable), ([], []))
            grads_of.append(grad)
            vars_of.append(variable)
        return groups

    def _parallel_update_step(self, grads, variables, learning_rate):
        # Keras' torch Adam step (`_foreach` ops) on one group of variables;
        # `kt.fused.fuse_optimizer` replaces it with torch's fused kernel.
        _TorchAdam._parallel_update_step(self, grads, variables, learning_rate)

    def _backend_update_step(self, grads, trainable_variables, learning_rate):
        torch_step = _TorchAdam is not None and keras.config.backend() == "torch"
        for multiplier, (grads_of, vars_of) in self._groups(grads, trainable_variables).items():
            if multiplier == 0:
                continue
            rate = learning_rate * multiplier
            if torch_step:
                import torch

                with torch.no_grad():
                    self._parallel_update_step(grads_of, vars_of, rate)
            else:  # pragma: no cover - other backends
                for grad, variable in zip(grads_of, vars_of):
                    self.update_step(grad, variable, rate)

    def _apply_weight_decay(self, variables):
        if self.weight_decay is None:
            return
        rate = self._get_current_learning_rate()
        groups = {}
        for variable in variables:
            if self._use_weight_decay(variable):
                groups.setdefault(self.multiplier(variable), []).append(variable)
        for multiplier, group in groups.items():
            if multiplier == 0:
                continue
            scale = 1 - self.weight_decay * rate * multiplier
            if keras.config.backend() == "torch":
                import torch

                with torch.no_grad():  # in place, as Keras' torch AdamW decays
                    torch._foreach_mul_([variable.value for variable in group], scale)
            else:  # pragma: no cover - other backends
                for variable in group:
                    variable.assign(variable * keras.ops.cast(scale, variable.dtype))

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "multipliers": dict(self.multipliers),
                "default_multiplier": self.default_multiplier,
            }
        )
        return config


def layerwise_multipliers(model, learning_rate=1.0, backbone_learning_rate=None, layer_decay=None):
    """Learning-rate multipliers for a task model, by depth in the backbone.

    The head (everything outside the backbone) learns at `learning_rate`.
    In the backbone, counting the top transformer block as depth 1 and the
    bottom one as depth `L`:

    - layers above the blocks (final norm, pooler): `backbone_learning_rate`;
    - the block at depth `d`: `backbone_learning_rate * layer_decay**(d - 1)`;
    - the embeddings: `backbone_learning_rate * layer_decay**L` (lowest).

    `backbone_learning_rate` defaults to `learning_rate * layer_decay`, so
    with `layer_decay` alone the block at depth `d` gets
    `learning_rate * layer_decay**d`. With `backbone_learning_rate` alone the
    whole backbone shares one rate.

    Multipliers are returned for every weight, trainable or frozen, so
    that blocks unfrozen later (gradual unfreezing) get theirs.

    Args:
        model: a task model (or a model holding one KerasHub backbone).
        learning_rate: the head's rate. Defaults to `1.0` (the result is
            then the multiplier itself).
        backbone_learning_rate: the rate of the top of the backbone.
            Defaults to `None` (see above).
        layer_decay: factor between one block and the block below, in
            (0, 1]. Defaults to `None` (no decay: `1.0`).

    Returns:
        `{variable path: rate / learning_rate}`, for `LayerwiseAdamW`.

    Example:
    ```python
    kt.optimizers.layerwise_multipliers(model, layer_decay=0.5)
    # {'logits/kernel': 1.0, …, 'transformer_layer_1/…/kernel': 0.5,
    #  'transformer_layer_0/…/kernel': 0.25, 'token_embedding/embeddings': 0.125}
    ```
    """
    freezing._check_layer(model, "optimizers.layerwise_multipliers")
    learning_rate = _check_rate("learning_rate", learning_rate, allow_none=False)
    backbone_learning_rate = _check_rate("backbone_learning_rate", backbone_learning_rate)
    if layer_decay is not None and (not _is_number(layer_decay) or not 0 < layer_decay <= 1):
        raise ValueError(
            "Expected `layer_decay` in (0, 1]: the factor between one block's "
            f"learning rate and the block below. Received: layer_decay={layer_decay!r}"
        )
    decay = 1.0 if layer_decay is None else float(layer_decay)
    if backbone_learning_rate is None:
        backbone_learning_rate = learning_rate * decay
    backbone = freezing._backbone_of(model)
    if backbone is model:
        raise ValueError(
            f"{model.name} holds no KerasHub backbone, so there are no blocks to "
            "give smaller learning rates. Use one learning rate, or pass "
            "`multipliers` to `kt.optimizers.LayerwiseAdamW` yourself."
        )
    below, stack, above = freezing._regions(backbone)
    top = backbone_learning_rate / learning_rate
    rates = {}

    def assign(layer, multiplier):
        for variable in layer.weights:
            previous = rates.setdefault(variable.path, multiplier)
            if previous != multiplier:
                raise ValueError(
                    f"Two weights share the path {variable.path!r} but sit at "
                    "different depths; rename one of their layers."
                )

    for variable in model.weights:
        rates[variable.path] = 1.0
    backbone_paths = {variable.path for variable in backbone.weights}
    for path in backbone_paths:
        del rates[path]
    for layer in above:
        assign(layer, top)
    for depth, layer in enumerate(reversed(stack), start=1):
        assign(layer, top * decay ** (depth - 1))
    for layer in below:
        assign(layer, top * decay ** len(stack))
    for variable in backbone.weights:  # anything the regions missed
        rates.setdefault(variable.path, top)
    return rates


def _slot_lists(optimizer):
    """The optimizer's per-variable state lists (momentums, velocities, …).

    Found as the list attributes holding one Keras variable (or `None`)
    per trainable variable the optimizer was built with.
    """
    count = len(optimizer._trainable_variables)
    if count == 0:
        return {}
    skip = {"_trainable_variables", "_variables"}
    return {
        name: value
        for name, value in vars(optimizer).items()
        if name not in skip
        and isinstance(value, list)
        and len(value) == count
        and all(item is None or isinstance(item, keras.Variable) for item in value)
        and any(item is not None for item in value)
    }


def add_variables(optimizer, variables):
    """Lets a built optimizer update `variables`, keeping its state.

    A Keras optimizer creates its state (Adam's momentums and velocities,
    gradient accumulators, EMA copies) for the variables it is first
    built with, and refuses any other. This rebuilds it on `variables`
    (in their order, as a fresh build on the model's trainable variables
    would, so that a saved model's optimizer state reloads into the same
    places) and copies the state of every variable it already knew. New
    variables start from zero state, as they would in a fresh optimizer;
    the iteration count and the learning rate are unchanged.

    Args:
        optimizer: a Keras optimizer, built or not.
        variables: every variable it should update from now on, usually
            `model.trainable_variables`.

    Returns:
        The variables that are new to the optimizer.
    """
    if not isinstance(optimizer, keras.optimizers.Optimizer):
        # `model.optimizer` is None until the model is compiled.
        raise ValueError(
            "Expected `optimizer` to be a Keras optimizer, such as a compiled model's "
            f"`model.optimizer`. Received: optimizer={optimizer!r}. Compile the model first."
        )
    variables = list(variables)
    inner = getattr(optimizer, "inner_optimizer", None)
    if inner is not None:
        # Keras' LossScaleOptimizer (under "mixed_float16"): the optimizer
        # inside holds the state; the wrapper keeps its loss scale and only
        # needs to know the variables.
        new = add_variables(inner, variables)
        if optimizer.built:
            optimizer._trainable_variables_indices.clear()
            for index, variable in enumerate(variables):
                optimizer._trainable_variables_indices[optimizer._var_key(variable)] = index
            optimizer._trainable_variables = variables[:]
        return new
    if not optimizer.built:
        return variables
    known = optimizer._trainable_variables_indices
    new = [v for v in variables if optimizer._var_key(v) not in known]
    if not new:
        return []
    old_variables = list(optimizer._trainable_variables)
    old_state = {
        name: {optimizer._var_key(v): slot for v, slot in zip(old_variables, slots)}
        for name, slots in _slot_lists(optimizer).items()
    }
    stale = {id(slot) for slots in old_state.values() for slot in slots.values() if slot is not None}
    # Drop the old state variables (the tracker's list is edited in place).
    optimizer._variables[:] = [v for v in optimizer._variables if id(v) not in stale]
    optimizer._tracker.stored_ids["variables"].difference_update(stale)
    optimizer._trainable_variables_indices.clear()
    optimizer.built = False
    with keras.name_scope(optimizer.name, caller=optimizer):
        optimizer.build(variables)
    for name, slots in _slot_lists(optimizer).items():
        previous = old_state.get(name, {})
        for variable, slot in zip(variables, slots):
            old = previous.get(optimizer._var_key(variable))
            if old is not None and slot is not None:
                slot.assign(old)
    return new


def default_optimizer(
    model,
    learning_rate,
    weight_decay=0.01,
    backbone_learning_rate=None,
    layer_decay=None,
    gradient_accumulation_steps=None,
):
    """The optimizer of `Task.compile()`: AdamW, layer-wise when asked.

    `learning_rate` is the head's rate (a float or a schedule, whose peak
    is the head's peak); `backbone_learning_rate` and `layer_decay` are
    as in `layerwise_multipliers` (a float `backbone_learning_rate` is
    turned into a ratio to the peak). NumPy numbers are taken as Python's.
    """
    if gradient_accumulation_steps is not None and (
        not _is_integer(gradient_accumulation_steps) or gradient_accumulation_steps < 1
    ):
        raise ValueError(
            "Expected `gradient_accumulation_steps` to be a positive integer "
            "(the number of batches whose gradients are averaged per update). "
            f"Received: gradient_accumulation_steps={gradient_accumulation_steps!r}"
        )
    if gradient_accumulation_steps is not None:
        gradient_accumulation_steps = int(gradient_accumulation_steps)  # np.int64(2) -> 2, for the config
    if gradient_accumulation_steps == 1:
        gradient_accumulation_steps = None
    weight_decay = _check_weight_decay(weight_decay)
    if _is_number(learning_rate):
        learning_rate = float(learning_rate)
    if backbone_learning_rate is None and layer_decay is None:
        return keras.optimizers.AdamW(
            learning_rate=learning_rate,
            weight_decay=weight_decay,
            gradient_accumulation_steps=gradient_accumulation_steps,
        )
    # The peak of a schedule: WarmupLinearDecay's, OneCycle's or SlantedTriangular's.
    peak = getattr(learning_rate, "peak_learning_rate", getattr(learning_rate, "max_learning_rate", learning_rate))
    peak = _check_rate("learning_rate", peak, allow_none=False)
    multipliers = layerwise_multipliers(
        model,
        learning_rate=peak,
        backbone_learning_rate=backbone_learning_rate,
        layer_decay=layer_decay,
    )
    return LayerwiseAdamW(
        learning_rate=learning_rate,
        multipliers=multipliers,
        weight_decay=weight_decay,
        gradient_accumulation_steps=gradient_accumulation_steps,
    )
