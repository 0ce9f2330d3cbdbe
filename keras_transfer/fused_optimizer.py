"""torch's fused Adam kernel for Keras' Adam and AdamW (`fuse_optimizer`).

Keras' torch Adam step is a dozen `_foreach` passes over the weights; this
gives `Adam`, `AdamW` and `kt.optimizers.LayerwiseAdamW` torch's fused
kernel instead (`_fused_adam_step`), the same update in one pass, on an
accelerator without reading anything back to the host. Around it: the
learning-rate schedule evaluated once per step (`_apply_with_one_rate`),
the weight-decay answers and the slot variables kept per set of
variables, the many tensors read without per-variable scope checks
(`values_of`). Task models get it at `compile()`; `unfuse_optimizer` (or
`keras_transfer.fused.unfuse` on the model) takes it back.
"""

import math

import keras
import torch
from keras.src import backend
from keras.src.backend.common.stateless_scope import in_stateless_scope

from keras_transfer.method_overrides import override as _override
from keras_transfer.method_overrides import remove_override as _remove_override


def _number(value):
    """A Python float for a float, a tensor or a Keras variable on the CPU."""
    value = getattr(value, "value", value)  # a Keras variable's tensor
    return float(value)


def _adam_kernel_applies(optimizer, grads, values):
    """Whether torch's fused Adam kernel computes Keras' Adam step for these.

    Weights and gradients of one floating dtype and matching shapes, on one
    device; not while `torch.compile` traces. Off the CPU float32 weights
    only (the rate goes to the kernel as a float32 tensor there).
    """
    if not values or torch.compiler.is_compiling():
        return False  # `jit_compile=True` traces Keras' own step
    for beta in (optimizer.beta_1, optimizer.beta_2):
        if isinstance(beta, bool) or not isinstance(beta, (int, float)) or not 0 <= beta < 1:
            return False
    if isinstance(optimizer.epsilon, bool) or not isinstance(optimizer.epsilon, (int, float)):
        return False
    dtype, device = values[0].dtype, values[0].device
    if not dtype.is_floating_point or (device.type not in _HOST_NUMBER_DEVICES and dtype != torch.float32):
        return False
    for grad, value in zip(grads, values):
        if (
            not isinstance(grad, torch.Tensor)
            or value.device != device
            or grad.device != device
            or value.dtype != dtype
            or grad.dtype != dtype
            or grad.layout != torch.strided
            or grad.shape != value.shape
        ):
            return False
    return True


def _fused_adam_step(self, grads, variables, learning_rate):
    """Keras' Adam step (`Adam._parallel_update_step`) as one fused kernel.

    Keras computes `alpha = lr * sqrt(1 - beta_2^t) / (1 - beta_1^t)` and
    `variable -= alpha * m / (sqrt(v) + epsilon)`; torch's kernel computes
    `variable -= lr / (1 - beta_1^t) * m / (sqrt(v) / sqrt(1 - beta_2^t) + eps)`.
    The moments update as in Keras (AMSGrad's maximum too). Decoupled weight
    decay is left to Keras' `_apply_weight_decay`, which runs before this
    step, as always. One pass over each weight instead of about a dozen, and
    no temporaries the size of the model.

    On the CPU the kernel gets host numbers: `lr` and `t` as they are, and
    `eps = epsilon / sqrt(1 - beta_2^t)`, which makes the two forms equal.
    On an accelerator, where reading `t` or the rate would stop the host
    until the device catches up, it gets device tensors instead: a step
    count so large that torch's bias corrections are exactly 1, and Keras'
    `alpha` (computed on the device) as the rate, which is Keras' form
    term for term.
    """
    values = values_of(variables)
    if not _adam_kernel_applies(self, grads, values):
        return type(self)._parallel_update_step(self, grads, variables, learning_rate)
    moments, velocities, maxima = (values_of(slots) for slots in _adam_slots(self, variables))
    grads = [grad if grad.is_contiguous() else grad.contiguous() for grad in grads]
    device = values[0].device
    if device.type in _HOST_NUMBER_DEVICES:
        step = _number(self.iterations) + 1
        correction = 1 - self.beta_2**step
        steps = torch.tensor(step, dtype=torch.float32)
        rate = _number(learning_rate)
        eps = float(self.epsilon) / math.sqrt(correction) if correction > 0 else math.inf
    else:
        steps = torch.full((), _UNBIASED_STEP, dtype=torch.float32, device=device)
        rate = _device_adam_rate(self, learning_rate, device)
        eps = float(self.epsilon)
    with torch.no_grad():
        torch._fused_adam_(
            values,
            grads,
            moments,
            velocities,
            maxima,
            [steps] * len(values),  # read, never written
            lr=rate,
            beta1=float(self.beta_1),
            beta2=float(self.beta_2),
            weight_decay=0.0,
            eps=eps,
            amsgrad=bool(self.amsgrad),
            maximize=False,
        )


def values_of(variables):
    """The tensors of many Keras variables: `[v.value for v in variables]`.

    Outside a stateless scope and a casting autocast scope (an optimizer
    step and a callback are outside both), each variable's value is its
    tensor as it is, read here without asking about the scopes once per
    variable (0.6 ms per step for a BERT-base model's weights and Adam
    moments); inside one, each is read by Keras' `value` property.
    """
    if not in_stateless_scope():
        scope = backend.get_autocast_scope()
        if scope is None or scope.dtype is None:
            values = [variable._value for variable in variables]
            if all(value is not None for value in values):
                return values
    return [variable.value for variable in variables]


def _adam_slots(optimizer, variables):
    """The moment, velocity and (AMSGrad) maximum variables of `variables`,
    kept for the same variables between steps: an optimizer's slots are
    made once, when it is built, and looking each one up is two dict
    lookups per variable and slot."""
    key = (tuple(map(id, variables)), bool(optimizer.amsgrad))
    kept = optimizer.__dict__.get("_kt_adam_slots")
    if kept is not None and kept[0] == key and kept[1] is optimizer._momentums:
        return kept[2]
    index = optimizer._get_variable_index
    slots = (
        [optimizer._momentums[index(variable)] for variable in variables],
        [optimizer._velocities[index(variable)] for variable in variables],
        [optimizer._velocity_hats[index(variable)] for variable in variables] if optimizer.amsgrad else [],
    )
    optimizer.__dict__["_kt_adam_slots"] = (key, optimizer._momentums, slots)
    return slots


def _fused_weight_decay(self, variables):
    """Keras' torch `_apply_weight_decay` (decoupled decay, AdamW), asking
    which variables decay once per set of variables instead of each step.

    Which variables decay is fixed once the optimizer is built (Keras
    refuses `exclude_from_weight_decay` after that), so the answers are
    kept for the same variables; the decay itself is Keras' one
    `_foreach_mul_` by `1 - weight_decay * learning_rate`.
    """
    if torch.compiler.is_compiling():  # `jit_compile=True` traces Keras' own
        return type(self)._apply_weight_decay(self, variables)
    if self.weight_decay is None:
        return
    key = tuple(map(id, variables))
    kept = self.__dict__.get("_kt_decayed")
    if kept is None or kept[0] != key:
        kept = (key, [self._use_weight_decay(variable) for variable in variables])
        self.__dict__["_kt_decayed"] = kept
    decayed = [variable for variable, decays in zip(variables, kept[1]) if decays]
    with torch.no_grad():
        torch._foreach_mul_(values_of(decayed), 1 - self.weight_decay * self._get_current_learning_rate())


# Devices where the fused step reads the step count and rate as host numbers.
_HOST_NUMBER_DEVICES = ("cpu",)
# beta ** this is 0 for every beta below 1 (in float32 and in float64), so
# torch's bias corrections `1 - beta ** step` are exactly 1.
_UNBIASED_STEP = 2.0**100


def _device_adam_rate(optimizer, learning_rate, device):
    """Keras' `alpha = lr * sqrt(1 - beta_2^t) / (1 - beta_1^t)` on the device, float32."""
    learning_rate = getattr(learning_rate, "value", learning_rate)
    if isinstance(learning_rate, torch.Tensor):
        rate = learning_rate.to(device=device, dtype=torch.float32)
    else:
        rate = torch.full((), float(learning_rate), dtype=torch.float32, device=device)
    iterations = optimizer.iterations  # a variable, or a tensor under gradient accumulation
    step = getattr(iterations, "value", iterations).to(device=device, dtype=torch.float32) + 1
    beta_1_power = torch.pow(float(optimizer.beta_1), step)  # float32, on the step's device
    beta_2_power = torch.pow(float(optimizer.beta_2), step)
    return rate * torch.sqrt(1 - beta_2_power) / (1 - beta_1_power)


def _keras_torch_weight_decay():
    try:
        from keras.src.backend.torch.optimizers.torch_optimizer import TorchOptimizer
    except ImportError:  # pragma: no cover - a Keras without torch optimizers
        return None
    return TorchOptimizer._apply_weight_decay


# The decoupled weight decay `_fused_weight_decay` stands in for.
_KERAS_TORCH_WEIGHT_DECAY = _keras_torch_weight_decay()


def _is_fusable_optimizer(optimizer):
    """Keras' own torch Adam/AdamW classes, or `kt.optimizers.LayerwiseAdamW`."""
    try:
        from keras.src.backend.torch.optimizers.torch_adam import Adam
        from keras.src.backend.torch.optimizers.torch_adamw import AdamW
    except ImportError:  # pragma: no cover - a Keras without torch optimizers
        return False
    from keras_transfer.optimizers import LayerwiseAdamW

    return type(optimizer) in (Adam, AdamW, LayerwiseAdamW)


def fuse_optimizer(optimizer):
    """Gives a Keras `Adam` or `AdamW` torch's fused Adam kernel.

    Keras' torch Adam step is a dozen `_foreach` passes over the weights,
    five of them into new tensors the size of the model: on a CPU, about
    160 ms per step for a 22M-parameter MiniLM, against 13 ms for torch's
    fused kernel (the one HF's Trainer uses by default); on a GPU the same
    passes cost memory bandwidth. The update is the same (see
    `_fused_adam_step`), to float rounding; weight decay, gradient
    clipping, gradient accumulation, EMA and loss scaling stay Keras' own.
    Keras' step runs instead under `jit_compile=True`, and for weights or
    gradients the kernel does not take (off the CPU: other than float32).
    A learning-rate schedule is evaluated once per step instead of twice
    (`_apply_with_one_rate`), and Keras' decoupled weight decay asks which
    variables decay once per set of variables (`_fused_weight_decay`).
    Task models get it at `compile()`;
    `unfuse_optimizer` takes it back.

    Args:
        optimizer: a Keras optimizer; a `LossScaleOptimizer` is looked
            through. Other optimizers, and subclasses, are left alone.

    Returns:
        Whether the optimizer now has the fused step.
    """
    if keras.config.backend() != "torch":
        return False
    optimizer = getattr(optimizer, "inner_optimizer", optimizer)
    if not _is_fusable_optimizer(optimizer):
        return False
    _override(optimizer, "_parallel_update_step", _fused_adam_step)
    _override(optimizer, "apply", _apply_with_one_rate)
    _override(optimizer, "_get_current_learning_rate", _current_learning_rate)
    if type(optimizer)._apply_weight_decay is _KERAS_TORCH_WEIGHT_DECAY:
        _override(optimizer, "_apply_weight_decay", _fused_weight_decay)
    return True


def unfuse_optimizer(optimizer):
    """Gives an optimizer back Keras' own Adam step. Returns whether it had the fused one."""
    optimizer = getattr(optimizer, "inner_optimizer", optimizer)
    if optimizer is None:
        return False
    _remove_override(optimizer, "apply", _apply_with_one_rate)
    _remove_override(optimizer, "_get_current_learning_rate", _current_learning_rate)
    _remove_override(optimizer, "_apply_weight_decay", _fused_weight_decay)
    return _remove_override(optimizer, "_parallel_update_step", _fused_adam_step)


def _apply_with_one_rate(self, grads, trainable_variables=None):
    """`Optimizer.apply`, evaluating a learning-rate schedule once.

    Keras' `AdamW` asks for the rate twice per step, for its weight decay
    and for the update; a schedule is a dozen small ops each time (kernel
    launches on a GPU). Within one `apply` the step count and the schedule
    are fixed, so the first answer is kept until `apply` returns
    (`_current_learning_rate`); nothing is kept between steps, so a
    schedule `fit` resizes, or a new step count, is always read afresh.
    """
    if torch.compiler.is_compiling():
        return type(self).apply(self, grads, trainable_variables)
    self.__dict__["_kt_rate"] = None
    try:
        return type(self).apply(self, grads, trainable_variables)
    finally:
        self.__dict__.pop("_kt_rate", None)


def _current_learning_rate(self):
    """`Optimizer._get_current_learning_rate`, kept during one `apply` while
    the step count's tensor is unchanged (torch's version counter)."""
    step = getattr(self._iterations, "_value", None)
    if "_kt_rate" not in self.__dict__ or not isinstance(step, torch.Tensor) or torch.compiler.is_compiling():
        return type(self)._get_current_learning_rate(self)
    kept = self.__dict__["_kt_rate"]
    if kept is not None and kept[0] is step and kept[1] == step._version:
        return kept[2]
    rate = type(self)._get_current_learning_rate(self)
    self.__dict__["_kt_rate"] = (step, step._version, rate)
    return rate
