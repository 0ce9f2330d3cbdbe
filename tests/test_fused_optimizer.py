"""torch's fused Adam kernel in place of Keras' `_foreach` Adam step (`fused.fuse_optimizer`)."""

import keras
import numpy as np
import pytest
import torch
from helpers import LABELS, TEXTS

import keras_transfer as kt
from keras_transfer import fused, fused_optimizer
from keras_transfer.schedules import WarmupLinearDecay

SHAPES = {"embeddings": (50, 8), "kernel": (8, 4), "bias": (4,), "gamma": (8,)}


@pytest.fixture
def kernel_calls(monkeypatch):
    """Counts calls of torch's fused Adam kernel."""
    calls = []
    kernel = torch._fused_adam_

    def counting(*args, **kwargs):
        calls.append(kwargs)
        return kernel(*args, **kwargs)

    monkeypatch.setattr(torch, "_fused_adam_", counting)
    return calls


def make_variables(seed=0):
    rng = np.random.default_rng(seed)
    return [
        keras.Variable(rng.normal(size=shape).astype("float32"), name=name)
        for name, shape in SHAPES.items()
    ]


def make_gradients(steps, seed=1):
    """Gradients of mixed scales: some so small that `epsilon` dominates the step."""
    rng = np.random.default_rng(seed)
    gradients = []
    for _ in range(steps):
        step = []
        for shape in SHAPES.values():
            scale = rng.choice([1e-9, 1e-3, 1.0], size=shape)
            step.append(torch.from_numpy((rng.normal(size=shape) * scale).astype("float32")))
        gradients.append(step)
    return gradients


OPTIMIZERS = {
    "adam": lambda: keras.optimizers.Adam(1e-2),
    "adamw": lambda: keras.optimizers.AdamW(1e-2, weight_decay=0.05),
    "adamw-schedule-excluded": lambda: keras.optimizers.AdamW(
        WarmupLinearDecay(1e-2, total_steps=8, warmup_steps=2), weight_decay=0.05
    ),
    "amsgrad": lambda: keras.optimizers.Adam(1e-2, amsgrad=True, epsilon=1e-6),
    "clipnorm": lambda: keras.optimizers.AdamW(1e-2, clipnorm=1e-3),
    "accumulation": lambda: keras.optimizers.AdamW(1e-2, gradient_accumulation_steps=2),
    "layerwise": lambda: kt.optimizers.LayerwiseAdamW(
        1e-2, multipliers={"embeddings": 0.25, "gamma": 0.0}, weight_decay=0.05
    ),
}


def train(optimizer, gradients, fuse):
    variables = make_variables()
    if fuse:
        assert fused.fuse_optimizer(optimizer)
    optimizer.build(variables)
    device = variables[0].value.device  # Keras' default device: a GPU where there is one
    for step in gradients:
        optimizer.apply([g.to(device, copy=True) for g in step], variables)
    return variables


@pytest.fixture(params=["host-numbers", "device-tensors"])
def kernel_inputs(request, monkeypatch):
    """Both ways of feeding the kernel; the accelerator one is forced on the CPU here."""
    if request.param == "device-tensors":
        monkeypatch.setattr(fused_optimizer, "_HOST_NUMBER_DEVICES", ())
    return request.param


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_fused_step_is_keras_own_step(name, kernel_calls, kernel_inputs):
    gradients = make_gradients(steps=6)
    keras_optimizer, fused_optimizer = OPTIMIZERS[name](), OPTIMIZERS[name]()
    if name == "adamw-schedule-excluded":
        for optimizer in (keras_optimizer, fused_optimizer):
            optimizer.exclude_from_weight_decay(var_names=["bias", "gamma"])
    expected = train(keras_optimizer, gradients, fuse=False)
    assert not kernel_calls
    actual = train(fused_optimizer, gradients, fuse=True)
    assert kernel_calls  # the kernel really ran ...
    on_device = kernel_inputs == "device-tensors" or actual[0].value.device.type != "cpu"
    assert {type(call["lr"]) for call in kernel_calls} == ({torch.Tensor} if on_device else {float})
    # ... and made the same updates: to a few float32 rounding steps of the
    # weights (about 1), where each update is about the learning rate (1e-2).
    for want, got in zip(expected, actual):
        np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-6, atol=2e-6, err_msg=got.name)
    # The optimizer's own state (moments, step count) is Keras' too, to a few
    # rounding steps of its largest entry (a moment is a sum that may cancel).
    # torch's CUDA kernel computes `1 - beta_2` in float32 (0.00099998713
    # for 0.999), so there the second moments differ by 1.3e-5 relative.
    rtol = 1e-6 if actual[0].value.device.type == "cpu" else 3e-5
    for want, got in zip(keras_optimizer.variables, fused_optimizer.variables):
        want, got = keras.ops.convert_to_numpy(want), keras.ops.convert_to_numpy(got)
        np.testing.assert_allclose(got, want, rtol=rtol, atol=rtol * np.abs(want).max())


class CountingSchedule(WarmupLinearDecay):
    calls = 0

    def __call__(self, step):
        CountingSchedule.calls += 1
        return super().__call__(step)


def test_a_schedule_is_evaluated_once_per_step_and_read_afresh_after_a_resize(kernel_calls):
    # Keras' AdamW reads the rate twice per step (weight decay, update).
    gradients = make_gradients(steps=4)
    runs = {}
    for fuse in (False, True):
        schedule = CountingSchedule(1e-2, total_steps=8, warmup_steps=2)
        optimizer = keras.optimizers.AdamW(schedule, weight_decay=0.05)
        variables = make_variables()
        if fuse:
            assert fused.fuse_optimizer(optimizer)
        optimizer.build(variables)
        CountingSchedule.calls = 0
        for step in gradients[:2]:
            optimizer.apply([g.clone() for g in step], variables)
        per_step = CountingSchedule.calls / 2
        before = float(optimizer.learning_rate)  # read between steps: nothing kept
        schedule.resize(total_steps=6, start_step=2)  # as a second `fit` does: warmup again
        assert float(optimizer.learning_rate) != before
        for step in gradients[2:]:
            optimizer.apply([g.clone() for g in step], variables)
        runs[fuse] = (per_step, [v.numpy() for v in variables])
    assert runs[False][0] == 2 and runs[True][0] == 1
    for want, got in zip(runs[False][1], runs[True][1]):
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=2e-6)
    fused.unfuse_optimizer(optimizer)
    assert "apply" not in vars(optimizer) and "_get_current_learning_rate" not in vars(optimizer)
    assert "_apply_weight_decay" not in vars(optimizer)


@pytest.mark.filterwarnings("ignore:Gradients do not exist for variables")
def test_steps_over_changing_sets_of_variables_update_the_right_moments(kernel_calls):
    # A weight without a gradient in some step is left out of that step
    # (Keras filters empty gradients): the slots looked up for the others,
    # and the weight-decay answers, must follow the set of variables.
    gradients = make_gradients(steps=5)
    for step, missing in zip(gradients, [None, "bias", "kernel", None, "bias"]):
        if missing is not None:
            step[list(SHAPES).index(missing)] = None
    runs = []
    for fuse in (False, True):
        optimizer = keras.optimizers.AdamW(1e-2, weight_decay=0.05, amsgrad=True)
        optimizer.exclude_from_weight_decay(var_names=["gamma"])
        variables = make_variables()
        if fuse:
            assert fused.fuse_optimizer(optimizer)
        optimizer.build(variables)
        for step in gradients:
            optimizer.apply([None if g is None else g.clone() for g in step], variables)
        runs.append(([v.numpy() for v in variables], [keras.ops.convert_to_numpy(v) for v in optimizer.variables]))
    assert kernel_calls
    for want, got in zip(runs[0][0] + runs[0][1], runs[1][0] + runs[1][1]):
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=2e-6)


def test_optimizer_tensors_inside_an_autocast_scope_are_read_as_keras_reads_them():
    from keras.src.backend import AutocastScope

    variables = make_variables()
    with AutocastScope("bfloat16"):
        values = fused.values_of(variables)
    assert [v.dtype for v in values] == [torch.bfloat16] * len(variables)  # Keras' `value` casts there too
    assert all(a is v.value for a, v in zip(fused.values_of(variables), variables))


def test_layerwise_multiplier_zero_freezes_its_variables(kernel_calls):
    variables = train(OPTIMIZERS["layerwise"](), make_gradients(steps=3), fuse=True)
    gamma = variables[list(SHAPES).index("gamma")]
    np.testing.assert_array_equal(gamma.numpy(), make_variables()[list(SHAPES).index("gamma")].numpy())


def test_traced_steps_and_other_optimizers_keep_keras_own_step(kernel_calls, monkeypatch):
    assert not fused.fuse_optimizer(keras.optimizers.SGD(0.1))
    assert not fused.fuse_optimizer(keras.optimizers.Lion(0.1))

    class MyAdam(keras.optimizers.Adam):  # a subclass may change the step
        pass

    assert not fused.fuse_optimizer(MyAdam(0.1))
    # Under torch.compile (`jit_compile=True`) Keras' step is traced instead.
    monkeypatch.setattr(torch.compiler, "is_compiling", lambda: True)
    gradients = make_gradients(steps=2)
    for make in (lambda: keras.optimizers.Adam(1e-2), lambda: keras.optimizers.AdamW(1e-2, weight_decay=0.05)):
        expected = train(make(), gradients, fuse=False)
        actual = train(make(), gradients, fuse=True)
        assert not kernel_calls
        for want, got in zip(expected, actual):
            np.testing.assert_array_equal(got.numpy(), want.numpy())


def test_loss_scale_optimizer_fuses_its_inner_optimizer(kernel_calls):
    optimizer = keras.optimizers.LossScaleOptimizer(keras.optimizers.AdamW(1e-2))
    assert fused.fuse_optimizer(optimizer)
    variables = make_variables()
    optimizer.build(variables)
    optimizer.apply([g.to(variables[0].value.device) for g in make_gradients(steps=1)[0]], variables)
    assert kernel_calls
    assert fused.unfuse_optimizer(optimizer)
    assert not fused.unfuse_optimizer(optimizer)


def test_task_models_train_with_the_fused_step_and_unfuse_takes_it_back(bert_preset, kernel_calls):
    model = kt.TextClassifier.from_preset(bert_preset, num_classes=2, sequence_length=16)
    model.compile(learning_rate=1e-3)
    model.fit(TEXTS, LABELS, epochs=1, batch_size=4, verbose=0, cache_features=False)
    assert kernel_calls
    kernel_calls.clear()
    fused.unfuse(model)
    model.fit(TEXTS, LABELS, epochs=1, batch_size=4, verbose=0, cache_features=False)
    assert not kernel_calls


def test_a_functional_model_over_load_backbone_can_take_the_fused_step(bert_preset, kernel_calls):
    backbone, preprocessor = kt.load_backbone(bert_preset, sequence_length=16)
    inputs = backbone.input
    features = backbone(inputs)["pooled_output"]
    model = keras.Model(inputs, keras.layers.Dense(2)(features))
    model.compile(optimizer=keras.optimizers.AdamW(1e-3), loss="sparse_categorical_crossentropy")
    assert fused.fuse_optimizer(model.optimizer)
    model.train_on_batch(preprocessor(TEXTS[:4]), np.array(LABELS[:4]))
    assert kernel_calls
