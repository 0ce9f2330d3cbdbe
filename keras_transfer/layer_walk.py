"""One flat walk of a model's layers for what Keras finds by recursion.

Keras answers `weights`, `trainable_weights`, `variables`, `metrics` and
`losses` by recursing through every layer's `_layers`, building and
deduplicating a list per layer (`Trainer.metrics` even recurses once per
layer). A BERT-base classifier has 183 layers: each of those reads costs
0.2-0.5 ms, and a train step asks for several of them. `order` lists the
same layers once, in the pre-order those recursions visit them; `Walk`
gives the same lists from it in one pass. A model with a layer whose
class defines one of those properties itself gets no order (None), and
its callers ask Keras.
"""

import keras
from keras.src.trainers.trainer import Trainer

_Layer = keras.layers.Layer
# The properties whose recursion reaches every layer, and the definitions
# these walks reproduce (a task model's `metrics` is added by `allow_metrics`).
_KNOWN = {
    "weights": {_Layer.__dict__["weights"]},
    "variables": {_Layer.__dict__["variables"]},
    "metrics": {_Layer.__dict__["metrics"], Trainer.__dict__["metrics"]},
}
_plain_types = {}  # class -> whether its recursive properties are the known ones


def allow_metrics(prop):
    """Count `prop` (a subclass's `metrics` that returns `Trainer.metrics`) as known."""
    _KNOWN["metrics"].add(prop)
    _plain_types.clear()


def _is_plain(cls):
    plain = _plain_types.get(cls)
    if plain is None:
        plain = _plain_types[cls] = all(getattr(cls, name) in known for name, known in _KNOWN.items())
    return plain


def order(model):
    """`model` and every layer under it in the pre-order of Keras' recursive
    properties (a layer reached twice is listed twice), or None when a
    layer's class defines `weights`, `variables` or `metrics` itself."""
    layers, stack = [], [model]
    plain = _plain_types
    while stack:
        layer = stack.pop()
        cls = type(layer)
        if not (plain.get(cls) or _is_plain(cls)):
            return None
        layers.append(layer)
        if layer._layers:
            stack.extend(reversed(layer._layers))
    return layers


def weights(layers):
    """`Layer.weights` of `layers[0]`: every layer's variables, each once, in Keras' order."""
    result = [
        variable
        for layer in layers
        for group in (layer._trainable_variables, layer._non_trainable_variables)
        for variable in group
    ]
    if len(set(map(id, result))) == len(result):
        return result
    seen, unique = set(), []  # a variable tracked twice: its first place, as Keras keeps it
    for variable in result:
        if id(variable) not in seen:
            seen.add(id(variable))
            unique.append(variable)
    return unique


def trainable_weights(layers):
    """`Layer.trainable_weights` of `layers[0]`."""
    return Walk(layers).trainable_weights


def variable_tensors(layers):
    """The tensors of every variable `Layer.variables` holds (seed states
    included), in a fixed order: equal lists mean the same torch tensors."""
    return Walk(layers).variable_tensors


def layer_metrics_are_empty(layers):
    """Whether no layer under `layers[0]` adds a metric to `Trainer.metrics`:
    none has metrics of its own, and no nested trainer is compiled (whose
    compiled metrics a layer above it would report)."""
    return Walk(layers).layer_metrics_are_empty


def losses_are_empty(layers):
    """Whether no layer (`layers[0]` included) holds a loss from `add_loss`."""
    return Walk(layers).losses_are_empty


class Walk:
    """What a train step asks of a model's layers, from one pass over `order(model)`.

    Asked separately, each of these would go through every layer again,
    minutes of Python apart in a step (the zero-grad, the loss, the
    metrics, the parameter-dict check), each finding the layers out of the
    processor's caches (0.7 ms for a BERT-base layout's 186 layers, against
    0.17 ms for the same walks back to back). One pass touches each layer
    and variable once and answers them all; the functions above read one
    answer each.
    """

    __slots__ = (
        "layers",
        "weights",
        "trainable_weights",
        "variable_tensors",
        "layer_metrics_are_empty",
        "losses_are_empty",
        "holds_torch_modules",
    )

    def __init__(self, layers):
        self.layers = layers
        variables, tensors = [], []
        add_variable, add_tensor = variables.append, tensors.append
        metrics_empty = losses_empty = True
        torch_modules = False
        wrapper = keras.layers.TorchModuleWrapper
        for index, layer in enumerate(layers):
            for variable in layer._trainable_variables:
                add_variable(variable)
                add_tensor(variable._value)
            for variable in layer._non_trainable_variables:
                add_variable(variable)
                add_tensor(variable._value)
            for generator in layer._seed_generators:
                add_tensor(generator.state._value)
            if layer._losses:
                losses_empty = False
            if index and (layer._metrics or (isinstance(layer, Trainer) and getattr(layer, "compiled", False))):
                metrics_empty = False
            if isinstance(layer, wrapper):
                torch_modules = True
        if len(set(map(id, variables))) != len(variables):
            variables = weights(layers)  # a variable tracked twice: Keras keeps its first place
        self.weights = variables
        self.trainable_weights = [v for v in variables if v.trainable] if layers[0].trainable else []
        self.variable_tensors = tensors
        self.layer_metrics_are_empty = metrics_empty
        self.losses_are_empty = losses_empty
        self.holds_torch_modules = torch_modules


def walk(model):
    """A `Walk` of `model`, or None where `order` gives none (ask Keras)."""
    layers = order(model)
    return None if layers is None else Walk(layers)
