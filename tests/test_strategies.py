"""Fine-tuning strategies: schedules, layer-wise rates, gradual unfreezing,
LoRA, the learning-rate finder, training curves, the two-stage recipe and
gradient accumulation. Each test proves which weights change, at what rate,
and what survives a save and reload, on the tiny 2-block BERT preset."""

import keras
import numpy as np
import pytest
from helpers import LABELS, TEXTS, changed, raises, snapshot

import keras_transfer as kt
from keras_transfer import freezing
from keras_transfer.optimizers import LayerwiseAdamW, add_variables

SEQUENCE_LENGTH = 16


def classifier(preset, freeze=True, seed=0, **kwargs):
    keras.utils.set_random_seed(seed)
    return kt.TextClassifier.from_preset(
        preset, num_classes=2, freeze=freeze, sequence_length=SEQUENCE_LENGTH, **kwargs
    )


@pytest.fixture(scope="module")
def untouched_model(bert_preset):
    """One uncompiled model for the tests of bad arguments (none changes it)."""
    return classifier(bert_preset, freeze=True, compile=False)


def region_paths(model):
    """{"embeddings" | "block_0" | "block_1" | "head": {weight paths}}."""
    below, stack, _ = freezing._regions(model.backbone)
    regions = {"embeddings": {v.path for layer in below for v in layer.weights}}
    for i, block in enumerate(stack):
        regions[f"block_{i}"] = {v.path for v in block.weights}
    backbone = {v.path for v in model.backbone.weights}
    regions["head"] = {v.path for v in model.weights} - backbone
    return regions


# ------------------------------------------------------------------ schedules


def test_one_cycle_values_at_known_steps():
    schedule = kt.schedules.OneCycle(1e-3, total_steps=100, pct_start=0.25, div_factor=25, final_div_factor=1e4)
    assert float(schedule(0)) == pytest.approx(1e-3 / 25, rel=1e-5)
    assert float(schedule(25)) == pytest.approx(1e-3, rel=1e-5)
    assert float(schedule(12.5)) == pytest.approx((1e-3 + 4e-5) / 2, rel=1e-5)  # cosine half-way up
    end = 4e-5 / 1e4
    assert float(schedule(62.5)) == pytest.approx((1e-3 + end) / 2, rel=1e-5)  # half-way down
    assert float(schedule(100)) == pytest.approx(end, rel=1e-5)
    assert float(schedule(500)) == pytest.approx(end, rel=1e-5)
    rates = [float(schedule(s)) for s in range(101)]
    assert np.argmax(rates) == 25
    assert all(a <= b for a, b in zip(rates[:25], rates[1:26]))
    assert all(a >= b for a, b in zip(rates[25:], rates[26:]))


def test_slanted_triangular_values_at_known_steps():
    schedule = kt.schedules.SlantedTriangular(0.01, total_steps=1000, cut_frac=0.1, ratio=32)
    assert float(schedule(0)) == pytest.approx(0.01 / 32, rel=1e-5)
    assert float(schedule(50)) == pytest.approx(0.01 * (1 + 0.5 * 31) / 32, rel=1e-5)
    assert float(schedule(100)) == pytest.approx(0.01, rel=1e-5)
    # p = 1 - (550 - 100) / (100 * (1 / 0.1 - 1)) = 0.5
    assert float(schedule(550)) == pytest.approx(0.01 * (1 + 0.5 * 31) / 32, rel=1e-5)
    assert float(schedule(1000)) == pytest.approx(0.01 / 32, rel=1e-5)
    shifted = kt.schedules.SlantedTriangular(0.01, total_steps=1000, start_step=7)
    assert float(shifted(107)) == pytest.approx(float(schedule(100)))


@pytest.mark.parametrize(
    "schedule",
    [
        kt.schedules.OneCycle(2e-3, total_steps=40, pct_start=0.3, div_factor=10, final_div_factor=100, start_step=3),
        kt.schedules.SlantedTriangular(5e-3, total_steps=40, cut_frac=0.2, ratio=8, start_step=3),
    ],
    ids=["one_cycle", "slanted_triangular"],
)
def test_schedules_round_trip_through_keras_serialization(schedule):
    config = keras.saving.serialize_keras_object(schedule)
    assert config["registered_name"].startswith("keras_transfer>")
    restored = keras.saving.deserialize_keras_object(config)
    assert type(restored) is type(schedule) and restored.get_config() == schedule.get_config()
    for step in (0, 5, 11, 20, 39, 60):
        assert float(restored(step)) == pytest.approx(float(schedule(step)))
    optimizer = keras.optimizers.deserialize(keras.optimizers.serialize(keras.optimizers.AdamW(schedule)))
    assert optimizer._learning_rate.get_config() == schedule.get_config()


@pytest.mark.parametrize(
    "build, fragments",
    [
        (lambda: kt.schedules.OneCycle(0, total_steps=10), ("max_learning_rate", "positive")),
        (lambda: kt.schedules.OneCycle(1e-3, total_steps=0), ("total_steps", "positive integer")),
        (lambda: kt.schedules.OneCycle(1e-3, total_steps=10, pct_start=1.0), ("pct_start", "(0, 1)")),
        (lambda: kt.schedules.OneCycle(1e-3, total_steps=10, div_factor=0.5), ("div_factor", ">= 1")),
        (lambda: kt.schedules.SlantedTriangular(1e-3, total_steps=10, cut_frac=0), ("cut_frac",)),
        (lambda: kt.schedules.SlantedTriangular(1e-3, total_steps=10, ratio=0.5), ("ratio", ">= 1")),
        (lambda: kt.schedules.SlantedTriangular(-1.0, total_steps=10), ("max_learning_rate",)),
    ],
)
def test_schedules_reject_bad_arguments(build, fragments):
    with raises(ValueError, *fragments):
        build()


# ------------------------------------------------------- layer-wise learning rates


def measured_rates(model, texts=TEXTS, labels=LABELS):
    """{weight path: the learning rate it received in one AdamW step}.

    Adam's first step moves each element by `lr * g / (|g| + eps)`, that is
    by `lr` wherever the gradient is not tiny; the largest move of a weight
    is the rate it was given.
    """
    before = snapshot(model)
    model.fit(texts, labels, batch_size=len(texts), epochs=1, shuffle=False, verbose=0)
    after = snapshot(model)
    return {path: float(np.max(np.abs(after[path] - before[path]))) for path in before}


def test_layer_decay_gives_each_block_its_rate(bert_preset):
    model = classifier(bert_preset, freeze=False, dropout=0.0)
    model.compile(learning_rate=1e-2, layer_decay=0.5, warmup=0.0, weight_decay=0.0)
    assert isinstance(model.optimizer, LayerwiseAdamW)
    rates = measured_rates(model)
    expected = {"head": 1e-2, "block_1": 5e-3, "block_0": 2.5e-3, "embeddings": 1.25e-3}
    for region, paths in region_paths(model).items():
        # No weight moved further than its region's rate (weights with tiny
        # gradients, like the query bias, move less: g / (|g| + eps) < 1) ...
        assert all(rates[p] <= expected[region] * (1 + 1e-3) for p in paths), region
        # ... and the region's weights did move at that rate.
        assert max(rates[p] for p in paths) == pytest.approx(expected[region], rel=1e-3), region


def test_backbone_learning_rate_alone_is_one_rate_for_the_backbone(bert_preset):
    model = classifier(bert_preset, freeze=False, dropout=0.0)
    model.compile(learning_rate=1e-2, backbone_learning_rate=1e-3, warmup=0.0, weight_decay=0.0)
    rates = measured_rates(model)
    for region, paths in region_paths(model).items():
        want = 1e-2 if region == "head" else 1e-3
        assert max(rates[p] for p in paths) == pytest.approx(want, rel=1e-3), region


def test_layerwise_rates_follow_the_schedule(bert_preset):
    """The multipliers scale the scheduled rate: half-way through a warmup,
    each weight gets half its peak rate."""
    model = classifier(bert_preset, freeze=False, dropout=0.0)
    schedule = kt.schedules.WarmupLinearDecay(1e-2, total_steps=10, warmup_steps=2)  # step 0: peak / 2
    multipliers = kt.optimizers.layerwise_multipliers(model, layer_decay=0.5)
    model.compile(optimizer=LayerwiseAdamW(schedule, multipliers=multipliers, weight_decay=0.0))
    rates = measured_rates(model)
    regions = region_paths(model)
    assert max(rates[p] for p in regions["head"]) == pytest.approx(5e-3, rel=1e-3)
    assert max(rates[p] for p in regions["block_0"]) == pytest.approx(5e-3 * 0.25, rel=1e-3)


def test_layerwise_weight_decay_is_scaled_per_variable(bert_preset):
    model = classifier(bert_preset, freeze=False)
    kernel = model.get_layer("logits").kernel
    block_kernel = freezing.blocks(model.backbone)[0]._self_attention_layer._query_dense.kernel
    optimizer = LayerwiseAdamW(0.1, multipliers={kernel.path: 1.0, block_kernel.path: 0.25}, weight_decay=0.5)
    optimizer.build([kernel, block_kernel])
    before = [np.array(kernel.numpy()), np.array(block_kernel.numpy())]
    optimizer._apply_weight_decay([kernel, block_kernel])
    np.testing.assert_allclose(kernel.numpy(), before[0] * (1 - 0.5 * 0.1), rtol=1e-6)
    np.testing.assert_allclose(block_kernel.numpy(), before[1] * (1 - 0.5 * 0.1 * 0.25), rtol=1e-6)


def test_layerwise_optimizer_survives_save_and_load(bert_preset, tmp_path):
    model = classifier(bert_preset, freeze=False)
    model.compile(learning_rate=1e-3, layer_decay=0.7)
    model.fit(TEXTS, LABELS, batch_size=10, epochs=1, verbose=0)
    path = tmp_path / "layerwise.keras"
    model.save(path)
    loaded = kt.load_model(path)
    assert isinstance(loaded.optimizer, LayerwiseAdamW)
    assert loaded.optimizer.multipliers == model.optimizer.multipliers
    assert loaded.optimizer.multipliers["token_embedding/embeddings"] == pytest.approx(0.7**3)
    for a, b in zip(model.optimizer.variables, loaded.optimizer.variables):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    loaded.fit(TEXTS, LABELS, batch_size=10, epochs=1, verbose=0)  # and trains on


@pytest.mark.parametrize(
    "kwargs, fragments",
    [
        ({"layer_decay": 0}, ("layer_decay", "(0, 1]")),
        ({"layer_decay": 1.5}, ("layer_decay", "(0, 1]")),
        ({"backbone_learning_rate": -1e-3}, ("backbone_learning_rate", "positive")),
        ({"gradient_accumulation_steps": 0}, ("gradient_accumulation_steps", "positive integer")),
        ({"optimizer": "sgd", "layer_decay": 0.8}, ("default optimizer", "LayerwiseAdamW")),
    ],
)
def test_compile_rejects_bad_strategy_arguments(untouched_model, kwargs, fragments):
    with raises(ValueError, *fragments):
        untouched_model.compile(**kwargs)


def test_layerwise_optimizer_rejects_bad_multipliers():
    with raises(ValueError, "non-negative", "logits/kernel"):
        LayerwiseAdamW(1e-3, multipliers={"logits/kernel": -1.0})
    with raises(ValueError, "variable paths"):
        LayerwiseAdamW(1e-3, multipliers={3: 1.0})


# ------------------------------------------------------------- gradual unfreezing


def test_gradual_unfreezing_unfreezes_one_block_per_epoch(bert_preset):
    model = classifier(bert_preset, freeze=True)
    model.compile(learning_rate=1e-3)
    regions = region_paths(model)
    before = snapshot(model)
    history = model.fit(
        TEXTS, LABELS, batch_size=10, epochs=2, verbose=0,
        callbacks=[kt.callbacks.GradualUnfreezing(every=1, verbose=0)],
    )
    # Feature caching is off: the backbone ran inside the task model.
    assert history.model is model
    assert history.history["unfrozen_blocks"] == [0, 1]
    moved = changed(before, model)
    assert regions["head"] <= moved
    assert moved & regions["block_1"]  # unfrozen for epoch 2
    assert not moved & regions["block_0"]
    assert not moved & regions["embeddings"]
    assert freezing.blocks(model.backbone)[1].trainable and not freezing.blocks(model.backbone)[0].trainable


def test_gradual_unfreezing_by_steps_with_embeddings_last(bert_preset):
    model = classifier(bert_preset, freeze=True)
    model.compile(learning_rate=1e-3)
    regions = region_paths(model)
    before = snapshot(model)
    # 5 steps: head (0), +block 1 (1), +block 0 (2), +embeddings (3, 4).
    history = model.fit(
        TEXTS, LABELS, batch_size=2, epochs=1, verbose=0,
        callbacks=[kt.callbacks.GradualUnfreezing(every=1, unit="step", embeddings=True, verbose=0)],
    )
    assert history.history["unfrozen_blocks"] == [2]
    moved = changed(before, model)
    for region in ("head", "block_1", "block_0", "embeddings"):
        assert moved & regions[region], region


def test_gradual_unfreezing_with_layerwise_rates_and_accumulation(bert_preset):
    """The grown optimizer keeps its gradient accumulators and multipliers."""
    model = classifier(bert_preset, freeze=True, compile=False)
    model.compile(learning_rate=1e-3, layer_decay=0.5, gradient_accumulation_steps=2)
    regions = region_paths(model)
    before = snapshot(model)
    model.fit(
        TEXTS, LABELS, batch_size=5, epochs=2, verbose=0,
        callbacks=[kt.callbacks.GradualUnfreezing(verbose=0)],
    )
    optimizer = model.optimizer
    assert len(optimizer._accumulated_gradients) == len(model.trainable_variables)
    assert optimizer.multiplier(model.get_layer("logits").kernel) == 1.0
    moved = changed(before, model)
    assert regions["head"] <= moved and moved & regions["block_1"] and not moved & regions["block_0"]


def test_gradual_unfreezing_stops_at_max_blocks(bert_preset):
    model = classifier(bert_preset, freeze=True)
    model.compile(learning_rate=1e-3)
    history = model.fit(
        TEXTS, LABELS, batch_size=10, epochs=3, verbose=0,
        callbacks=[kt.callbacks.GradualUnfreezing(max_blocks=1, verbose=0)],
    )
    assert history.history["unfrozen_blocks"] == [0, 1, 1]


def test_add_variables_keeps_the_optimizer_state_of_known_weights(bert_preset):
    model = classifier(bert_preset, freeze=True)
    model.compile(learning_rate=1e-3)
    model.fit(TEXTS, LABELS, batch_size=10, epochs=1, verbose=0, cache_features=False)
    optimizer = model.optimizer
    head = list(model.trainable_variables)
    state = {v.path: (np.array(optimizer._momentums[optimizer._get_variable_index(v)].numpy()),
                      np.array(optimizer._velocities[optimizer._get_variable_index(v)].numpy())) for v in head}
    assert any(np.any(m != 0) for m, _ in state.values())
    iterations = int(optimizer.iterations.numpy())

    kt.unfreeze(model, top=1)
    new = add_variables(optimizer, model.trainable_variables)
    assert {v.path for v in new} == {v.path for v in freezing.blocks(model.backbone)[1].trainable_weights}
    assert int(optimizer.iterations.numpy()) == iterations
    for v in head:
        index = optimizer._get_variable_index(v)
        np.testing.assert_array_equal(optimizer._momentums[index].numpy(), state[v.path][0])
        np.testing.assert_array_equal(optimizer._velocities[index].numpy(), state[v.path][1])
    for v in new:
        assert not np.any(optimizer._momentums[optimizer._get_variable_index(v)].numpy())
    # The iteration count, and one momentum and one velocity per trainable
    # weight: nothing stale.
    assert len(optimizer.variables) == 1 + 2 * len(model.trainable_variables)
    model.fit(TEXTS, LABELS, batch_size=10, epochs=1, verbose=0)  # no "compile again" error
    assert add_variables(optimizer, model.trainable_variables) == []


def test_gradually_unfrozen_model_reloads_with_its_optimizer_state(bert_preset, tmp_path):
    model = classifier(bert_preset, freeze=True)
    model.compile(learning_rate=1e-3)
    model.fit(TEXTS, LABELS, batch_size=10, epochs=2, verbose=0,
              callbacks=[kt.callbacks.GradualUnfreezing(verbose=0)])
    model.save(tmp_path / "gradual.keras")
    loaded = kt.load_model(tmp_path / "gradual.keras")
    assert [v.path for v in loaded.trainable_variables] == [v.path for v in model.trainable_variables]
    assert len(loaded.optimizer.variables) == len(model.optimizer.variables)
    for a, b in zip(model.optimizer.variables, loaded.optimizer.variables):
        assert a.path == b.path
        np.testing.assert_array_equal(a.numpy(), b.numpy())


@pytest.mark.parametrize(
    "kwargs, fragments",
    [
        ({"every": 0}, ("every", "positive integer")),
        ({"unit": "batch"}, ("unit", "'epoch'", "'step'")),
        ({"max_blocks": 0}, ("max_blocks",)),
    ],
)
def test_gradual_unfreezing_rejects_bad_arguments(kwargs, fragments):
    with raises(ValueError, *fragments):
        kt.callbacks.GradualUnfreezing(**kwargs)


# ------------------------------------------------------------------------ LoRA


def test_lora_trains_adapters_and_head_only(bert_preset):
    model = classifier(bert_preset, freeze=True)
    model.enable_lora(rank=2)
    model.compile(learning_rate=1e-2)
    lines = "\n".join(model.describe_freezing())
    assert "LoRA rank 2 on 4 layers (query, value)" in lines
    trainable = {v.path for v in model.trainable_variables}
    lora = {p for p in trainable if "lora_kernel" in p}
    assert len(lora) == 8  # a and b, for query and value, in 2 blocks
    regions = region_paths(model)
    assert regions["head"] <= trainable
    before = snapshot(model)
    model.fit(TEXTS, LABELS, batch_size=5, epochs=1, verbose=0)
    moved = changed(before, model)
    assert moved <= trainable and lora & moved and regions["head"] <= moved
    assert not any(p.endswith("/kernel") and p not in regions["head"] for p in moved)
    trains, frozen = kt.count_params(model)
    assert 0 < trains < frozen


def test_lora_model_reloads_with_the_same_predictions_and_trains_on(bert_preset, tmp_path):
    model = classifier(bert_preset, freeze=True)
    model.enable_lora(rank=2)
    model.compile(learning_rate=1e-2)
    model.fit(TEXTS, LABELS, batch_size=10, epochs=1, verbose=0)
    predictions = model.predict(TEXTS, verbose=0)
    model.save(tmp_path / "lora.keras")

    loaded = kt.load_model(tmp_path / "lora.keras")
    np.testing.assert_allclose(loaded.predict(TEXTS, verbose=0), predictions, atol=1e-5)
    assert kt.count_params(loaded) == kt.count_params(model)
    assert {v.path for v in loaded.trainable_variables} == {v.path for v in model.trainable_variables}
    # Keras merged the adapters into the kernels; the reloaded ones start
    # at zero and get a fresh random `a`, so training goes on.
    kernels = {v.path: np.array(v.numpy()) for v in loaded.backbone.weights if v.path.endswith("query/kernel")}
    loaded.fit(TEXTS, LABELS, batch_size=10, epochs=1, verbose=0)
    assert not np.allclose(loaded.predict(TEXTS, verbose=0), predictions, atol=1e-6)
    for v in loaded.backbone.weights:
        if v.path in kernels:
            np.testing.assert_array_equal(v.numpy(), kernels[v.path])


def test_lora_rejects_bad_rank_and_a_second_call(bert_preset):
    model = classifier(bert_preset, freeze=True, compile=False)
    with raises(ValueError, "rank", "positive integer"):
        model.enable_lora(rank=0)
    with raises(ValueError, "No layers named ['nope']"):
        model.enable_lora(rank=2, target_layer_names=["nope"])
    model.enable_lora(rank=2)
    with raises(ValueError, "already enabled"):
        model.enable_lora(rank=4)


# --------------------------------------------------------------- LR finder


@pytest.mark.parametrize("freeze", [True, False], ids=["frozen_cached", "unfrozen"])
def test_find_learning_rate_restores_weights_and_optimizer(bert_preset, tmp_path, monkeypatch, freeze):
    model = classifier(bert_preset, freeze=freeze)
    model.fit(TEXTS, LABELS, batch_size=10, epochs=1, verbose=0)  # the optimizer has state
    weights = snapshot(model)
    optimizer = model.optimizer
    state = [np.array(v.numpy()) for v in optimizer.variables]
    cached = []
    original = type(model)._fit_on_cached_features
    monkeypatch.setattr(
        type(model), "_fit_on_cached_features",
        lambda self, *a, **k: cached.append(1) or original(self, *a, **k),
    )

    result = model.find_learning_rate(TEXTS, LABELS, min_lr=1e-5, max_lr=10.0, steps=5, batch_size=2)

    assert bool(cached) == freeze  # the frozen backbone's features were cached
    assert changed(weights, model) == set()
    assert model.optimizer is optimizer
    for value, v in zip(state, optimizer.variables):
        np.testing.assert_array_equal(v.numpy(), value)
    assert 2 <= len(result.learning_rates) <= 5 and len(result.losses) == len(result.learning_rates)
    assert result.learning_rates[0] == pytest.approx(1e-5)
    ratios = result.learning_rates[1:] / result.learning_rates[:-1]
    np.testing.assert_allclose(ratios, (10.0 / 1e-5) ** (1 / 4), rtol=1e-4)  # exponential
    assert 1e-5 <= result.suggestion <= 10.0 and 1e-5 <= result.min_loss_rate <= 10.0
    figure = result.plot(path=tmp_path / "lr.png")
    assert (tmp_path / "lr.png").read_bytes()[:4] == b"\x89PNG"
    assert figure.axes[0].get_xscale() == "log"
    model.fit(TEXTS, LABELS, batch_size=10, epochs=1, verbose=0)  # still compiled as before


def test_lr_finder_stops_when_the_loss_diverges(bert_preset):
    model = classifier(bert_preset, freeze=True)
    result = model.find_learning_rate(TEXTS, LABELS, min_lr=1.0, max_lr=1e8, steps=30, batch_size=2)
    assert result.stopped_early and len(result.losses) < 30


def test_lr_finder_smoothing_and_suggestion():
    rates = np.geomspace(1e-5, 1, 50)
    losses = 1 / (1 + np.exp(4 * (np.log10(rates) + 2.5)))  # steepest at 10**-2.5
    losses[40:] += np.linspace(0, 5, 10)  # then diverges
    result = kt.lr_finder.LRFinderResult(rates, losses, smoothing=0.0, stopped_early=False)
    np.testing.assert_array_equal(result.losses, losses)  # beta 0: no smoothing
    assert result.suggestion == pytest.approx(10**-2.5, rel=0.3)
    smoothed = kt.lr_finder.LRFinderResult(rates[:2], [1.0, 3.0], smoothing=0.5, stopped_early=False).losses
    np.testing.assert_allclose(smoothed, [1.0, (0.25 * 1 + 0.5 * 3) / 0.75])  # bias-corrected EMA


@pytest.mark.parametrize(
    "kwargs, fragments",
    [
        ({"min_lr": 1.0, "max_lr": 0.1}, ("min_lr < max_lr",)),
        ({"steps": 2}, ("steps", "at least 5")),
        ({"min_lr": 0}, ("min_lr", "positive")),
    ],
)
def test_lr_finder_rejects_bad_arguments(untouched_model, kwargs, fragments):
    with raises(ValueError, *fragments):
        untouched_model.find_learning_rate(TEXTS, LABELS, **kwargs)


# ----------------------------------------------------------- training curves


def test_plot_history_draws_each_quantity_and_writes_a_png(bert_preset, tmp_path):
    model = classifier(bert_preset, freeze=True)
    history = model.fit(
        TEXTS, LABELS, validation_data=(TEXTS, LABELS), batch_size=10, epochs=2, verbose=0,
        callbacks=[kt.callbacks.LearningRateLogger()],
    )
    # The rate of each epoch's last step: 2 steps of warmup-free linear decay from 3e-3.
    np.testing.assert_allclose(history.history["learning_rate"], [3e-3, 1.5e-3], rtol=1e-5)
    figure = kt.plot_history(history, path=tmp_path / "curves.png")
    assert (tmp_path / "curves.png").read_bytes()[:4] == b"\x89PNG"
    titles = [ax.get_title() for ax in figure.axes]
    assert titles == ["loss", "accuracy", "learning rate"]
    assert [len(ax.get_lines()) for ax in figure.axes] == [2, 2, 1]  # train + validation
    assert figure.axes[2].get_yscale() == "log"
    assert [ax.get_title() for ax in kt.plot_history(history.history, metrics=["loss"]).axes] == ["loss"]


def test_plot_history_rejects_what_it_cannot_draw():
    with raises(ValueError, "empty"):
        kt.plot_history({"loss": []})
    with raises(ValueError, "History"):
        kt.plot_history([0.1, 0.2])
    with raises(ValueError, "['auc']", "loss"):
        kt.plot_history({"loss": [1.0]}, metrics=["auc"])


# ---------------------------------------------------------- two-stage recipe


def test_fine_tune_trains_the_head_then_the_top_block(bert_preset, tmp_path):
    model = classifier(bert_preset, freeze=False)
    regions = region_paths(model)
    before = snapshot(model)
    history = model.fine_tune(
        TEXTS, LABELS, validation_data=(TEXTS, LABELS), head_epochs=2, epochs=2, unfreeze=1,
        head_learning_rate=1e-2, learning_rate=1e-3, batch_size=10, checkpoint=tmp_path / "best.keras",
        verbose=0,
    )
    assert history.history["stage"] == [1, 1, 2, 2][: len(history.epoch)]
    assert history.history["stage"].count(1) >= 1 and history.history["stage"].count(2) >= 1
    assert len(history.history["loss"]) == len(history.history["val_loss"]) == len(history.epoch)
    assert all(rate >= 0 for rate in history.history["learning_rate"])
    moved = changed(before, model)
    assert regions["head"] <= moved and moved & regions["block_1"]
    assert not moved & (regions["block_0"] | regions["embeddings"])
    assert (tmp_path / "best.keras").is_file()
    # Early stopping put back stage 2's best weights.
    stage_2 = [v for v, s in zip(history.history["val_loss"], history.history["stage"]) if s == 2]
    final = model.evaluate(TEXTS, LABELS, batch_size=10, return_dict=True, verbose=0)["loss"]
    assert final == pytest.approx(min(stage_2), rel=1e-4)


def test_fine_tune_caches_stage_one_features_where_told(bert_preset, tmp_path, monkeypatch):
    from keras_transfer.tasks import base

    files = []
    original = base._FeatureStorage.empty

    def recording(self, shape, dtype):
        array = original(self, shape, dtype)
        files.append(getattr(array, "filename", None))
        return array

    monkeypatch.setattr(base._FeatureStorage, "empty", recording)
    model = classifier(bert_preset, freeze=True)
    model.fine_tune(TEXTS, LABELS, head_epochs=1, epochs=1, batch_size=10, verbose=0,
                    cache_memory_limit=0, cache_dir=tmp_path)
    assert files and all(name is not None and name.startswith(str(tmp_path)) for name in files)
    assert list(tmp_path.iterdir()) == []  # removed when stage 1's fit returned


def test_fine_tune_without_validation_runs_every_epoch(bert_preset):
    model = classifier(bert_preset, freeze=True)
    history = model.fine_tune(TEXTS, LABELS, head_epochs=1, epochs=1, batch_size=10, verbose=0)
    assert history.history["stage"] == [1, 2]
    assert model.backbone.trainable and all(b.trainable for b in freezing.blocks(model.backbone))


@pytest.mark.parametrize(
    "kwargs, fragments",
    [
        ({"unfreeze": 0}, ("unfreeze", "'all'", "from 1 to 2")),
        ({"unfreeze": "some"}, ("unfreeze",)),
        ({"head_epochs": -1}, ("head_epochs", ">= 0")),
        ({"epochs": 0}, ("epochs", ">= 1")),
        ({"checkpoint": "best.h5"}, ("checkpoint", ".keras")),
        ({"cache_memory_limit": "1GB"}, ("cache_memory_limit", "number of bytes")),
        ({"cache_dir": "/nonexistent/kt-cache"}, ("cache_dir", "not an existing directory")),
        ({"layer_decay": 5}, ("layer_decay", "(0, 1]")),
        ({"learning_rate": -1}, ("learning_rate", "positive number")),
        ({"head_learning_rate": "x"}, ("head_learning_rate", "positive number")),
    ],
)
def test_fine_tune_rejects_bad_arguments(untouched_model, kwargs, fragments):
    with raises(ValueError, *fragments):
        untouched_model.fine_tune(TEXTS, LABELS, **kwargs)


@pytest.mark.parametrize(
    "data, fragments",
    [
        ({"y": [5] * len(TEXTS)}, ("Label 5",)),
        ({"y": None}, ("no labels",)),
        ({"validation_data": (TEXTS, [0, 7] * 5)}, ("Label 7",)),
        ({"validation_data": (TEXTS, None)}, ("no labels",)),
    ],
)
def test_fine_tune_checks_the_data_before_changing_the_model(bert_preset, data, fragments):
    model = classifier(bert_preset, freeze=1, compile=False)
    model.compile(optimizer=keras.optimizers.SGD(0.01), metrics=["sparse_categorical_accuracy"])
    optimizer, state = model.optimizer, freezing.frozen_state(model)
    kwargs = {"y": LABELS, **data}
    with raises(ValueError, *fragments):
        model.fine_tune(TEXTS, head_epochs=1, epochs=1, verbose=0, **kwargs)
    assert model.optimizer is optimizer and freezing.frozen_state(model) == state


def test_fine_tune_tokenizes_the_data_once(bert_preset, monkeypatch):
    model = classifier(bert_preset, freeze=True)
    calls = []
    original = type(model.preprocessor).tokenize

    def counting(self, texts, *args, **kwargs):
        calls.append(len(texts))
        return original(self, texts, *args, **kwargs)

    monkeypatch.setattr(type(model.preprocessor), "tokenize", counting)
    model.fine_tune(TEXTS, LABELS, validation_data=(TEXTS[:4], LABELS[:4]), head_epochs=1, epochs=1,
                    batch_size=5, verbose=0)
    assert sorted(calls) == [4, len(TEXTS)]  # training and validation texts, once each for both stages


# ------------------------------------------------------ gradient accumulation


def test_gradient_accumulation_matches_one_larger_batch(bert_preset):
    """Two accumulated batches of 4 make the same update as one batch of 8."""
    texts, labels = TEXTS[:8], LABELS[:8]
    models = []
    for accumulation, batch_size in ((2, 4), (None, 8)):
        model = classifier(bert_preset, freeze=True, dropout=0.0, compile=False)
        model.compile(learning_rate=1e-2, warmup=0.0, gradient_accumulation_steps=accumulation)
        model.fit(texts, labels, batch_size=batch_size, epochs=1, verbose=0)
        models.append(model)
    accumulated, large = models
    assert accumulated.optimizer.gradient_accumulation_steps == 2
    assert int(accumulated.optimizer.iterations.numpy()) == int(large.optimizer.iterations.numpy()) == 1
    start = classifier(bert_preset, freeze=True, dropout=0.0, compile=False)
    head = region_paths(start)["head"]
    a, b, s = snapshot(accumulated), snapshot(large), snapshot(start)
    for path in head:
        assert not np.allclose(a[path], s[path])  # it did train
        np.testing.assert_allclose(a[path], b[path], atol=1e-6)


# ------------------------------------------------ NumPy numbers and misuse


def plain_numbers_only(config):
    """Whether a config holds Python numbers only (no NumPy scalars), at any depth."""
    if isinstance(config, dict):
        return all(plain_numbers_only(value) for value in config.values())
    if isinstance(config, (list, tuple)):
        return all(plain_numbers_only(value) for value in config)
    return not isinstance(config, np.generic)


def test_schedules_take_numpy_numbers_as_python_numbers():
    schedules = [
        kt.schedules.OneCycle(np.float32(1e-3), total_steps=np.int64(10), pct_start=np.float64(0.3)),
        kt.schedules.SlantedTriangular(np.float32(1e-3), total_steps=np.int32(10), ratio=np.int64(32)),
        kt.schedules.WarmupLinearDecay(np.float32(1e-3), total_steps=np.int64(10), warmup_steps=np.int64(2)),
    ]
    for schedule in schedules:
        config = schedule.get_config()
        assert plain_numbers_only(config), config
        assert config["total_steps"] == 10 and type(config["total_steps"]) is int
    assert float(schedules[2](1)) == pytest.approx(1e-3)
    for build in (lambda: kt.schedules.OneCycle(1e-3, total_steps=True), lambda: kt.schedules.OneCycle(True, 10)):
        with raises(ValueError, "OneCycle"):
            build()  # bools are still refused


def test_compile_takes_numpy_numbers_and_keeps_python_numbers_in_the_config(bert_preset):
    model = classifier(bert_preset, freeze=False, compile=False)
    model.compile(
        learning_rate=np.float32(1e-3),
        layer_decay=np.float32(0.5),
        weight_decay=np.float32(0.01),
        gradient_accumulation_steps=np.int64(2),
    )
    optimizer = model.optimizer
    assert isinstance(optimizer, LayerwiseAdamW)
    assert optimizer.gradient_accumulation_steps == 2 and type(optimizer.gradient_accumulation_steps) is int
    assert optimizer._learning_rate.peak_learning_rate == pytest.approx(1e-3)
    assert optimizer.multipliers["token_embedding/embeddings"] == pytest.approx(0.5**3)
    assert plain_numbers_only(keras.optimizers.serialize(optimizer))
    model.compile(learning_rate=np.float64(1e-3), gradient_accumulation_steps=np.int32(1))  # plain AdamW
    assert model.optimizer.gradient_accumulation_steps is None
    optimizer = LayerwiseAdamW(
        np.float32(1e-3), multipliers={"logits/kernel": np.float32(0.5)}, default_multiplier=np.float64(1.0),
        weight_decay=np.float32(0.01),
    )
    assert optimizer.multipliers == {"logits/kernel": 0.5}
    assert plain_numbers_only(optimizer.get_config())
    with raises(ValueError, "non-negative", "logits/kernel"):
        LayerwiseAdamW(1e-3, multipliers={"logits/kernel": True})  # bools are still refused


@pytest.mark.parametrize("schedule", [kt.schedules.OneCycle(1e-3, 10), kt.schedules.SlantedTriangular(1e-3, 10)])
@pytest.mark.parametrize("kwargs", [{}, {"layer_decay": 0.8}])
def test_compile_explains_where_a_schedule_goes(untouched_model, schedule, kwargs):
    with raises(
        ValueError, "`learning_rate` of `compile()` to be a number", type(schedule).__name__,
        "optimizer=keras.optimizers.AdamW(learning_rate=schedule)",
    ):
        untouched_model.compile(learning_rate=schedule, **kwargs)


@pytest.mark.parametrize("weight_decay", [-1, -0.01, "0.01", None, True, float("nan")])
def test_compile_refuses_a_weight_decay_that_is_not_a_number_from_zero(untouched_model, weight_decay):
    with raises(ValueError, "`weight_decay` to be a number >= 0", f"weight_decay={weight_decay!r}"):
        untouched_model.compile(weight_decay=weight_decay)
    with raises(ValueError, "`weight_decay` to be a number >= 0"):
        LayerwiseAdamW(1e-3, weight_decay=weight_decay)


def test_default_optimizer_takes_a_weight_decay_of_zero(untouched_model):
    optimizer = kt.optimizers.default_optimizer(untouched_model, 1e-3, weight_decay=0)
    assert optimizer.weight_decay == 0.0 and type(optimizer.weight_decay) is float


def test_lr_finder_keeps_biases_and_norms_out_of_weight_decay(bert_preset, monkeypatch):
    model = classifier(bert_preset, freeze=False, dropout=0.0)  # compile(): no decay of bias, gamma, beta
    seen = []
    monkeypatch.setattr(
        kt.lr_finder._Sweep, "on_train_begin", lambda self, logs=None: seen.append(self.model.optimizer),
        raising=False,
    )
    model.find_learning_rate(TEXTS, LABELS, steps=5, batch_size=5)
    sweep = seen[0]
    assert sweep is not model.optimizer
    for variable in model.trainable_variables:
        excluded = variable.name in ("bias", "gamma", "beta")
        assert sweep._use_weight_decay(variable) == model.optimizer._use_weight_decay(variable) == (not excluded)
    # Variables excluded one by one (`var_list`) stay excluded too.
    kernel = model.get_layer("logits").kernel
    optimizer = keras.optimizers.AdamW(1e-3)
    optimizer.exclude_from_weight_decay(var_list=[kernel])
    copy = kt.lr_finder._sweep_optimizer(optimizer, kt.lr_finder.ExponentialSweep(1e-5, 1.0, 5))
    assert not copy._use_weight_decay(kernel)


def test_lr_finder_takes_numpy_numbers(bert_preset):
    model = classifier(bert_preset, freeze=True)
    result = model.find_learning_rate(
        TEXTS, LABELS, min_lr=np.float32(1e-4), max_lr=np.float32(1.0), steps=np.int64(5),
        smoothing=np.float64(0.5), diverge=np.float32(4.0), batch_size=2,
    )
    assert result.learning_rates[0] == pytest.approx(1e-4) and result.smoothing == 0.5
    with raises(ValueError, "smoothing", "[0, 1)"):
        model.find_learning_rate(TEXTS, LABELS, smoothing="0.9")
    with raises(ValueError, "diverge", "> 1"):
        model.find_learning_rate(TEXTS, LABELS, diverge=None)


def test_lora_takes_numpy_rank_and_one_layer_name(bert_preset):
    model = classifier(bert_preset, freeze=True, compile=False)
    model.enable_lora(rank=np.int64(2), target_layer_names="query")
    assert {layer.name for layer in kt.lora.lora_layers(model)} == {"query"}
    config = kt.lora.lora_config(model)
    assert config == {"rank": 2, "target_layer_names": ["query"]} and type(config["rank"]) is int
    assert plain_numbers_only(model.get_config())


@pytest.mark.parametrize(
    "names, fragments",
    [
        ([], ("at least one name", "`target_layer_names`")),
        (3, ("a layer name or a list of layer names", "target_layer_names=3")),
        (["query", 3], ("a layer name or a list of layer names",)),
    ],
)
def test_lora_rejects_bad_target_layer_names(untouched_model, names, fragments):
    with raises(ValueError, *fragments):
        untouched_model.enable_lora(rank=2, target_layer_names=names)
    assert not kt.lora.lora_layers(untouched_model)


def test_lora_description_says_what_trains_now(bert_preset):
    model = classifier(bert_preset, freeze=True, compile=False)
    model.enable_lora(rank=2)
    layers = kt.lora.lora_layers(model)  # query and value of 2 blocks
    adapters = sum(int(np.prod(w.shape)) for layer in layers for w in (layer.lora_kernel_a, layer.lora_kernel_b))
    biases = sum(int(np.prod(layer.bias.shape)) for layer in layers)
    assert kt.lora.describe(model) == (
        f"LoRA rank 2 on 4 layers (query, value): {adapters:,} adapter parameters train "
        f"(and their {biases:,} bias parameters); the rest of the backbone is frozen"
    )
    # Keras' own flags (kt.freeze and kt.unfreeze refuse a LoRA model):
    # block 1 trains whole, block 0 (and its adapters) is frozen.
    block_0, block_1 = freezing.blocks(model.backbone)
    block_1.trainable = True
    block_0.trainable = False
    backbone_trains = sum(int(np.prod(v.shape)) for v in model.backbone.trainable_weights)
    line = kt.lora.describe(model)
    half, half_biases = adapters // 2, biases // 2
    assert f"{half:,} of {adapters:,} adapter parameters train (and their {half_biases:,} bias parameters)" in line
    assert f"{backbone_trains - half - half_biases:,} other backbone parameters train too" in line
    assert "rest of the backbone is frozen" not in line
    assert line in model.describe_freezing()
    model.backbone.trainable = False
    assert kt.lora.describe(model).endswith(
        f"{adapters:,} adapter parameters, frozen with the rest of the backbone (none of it trains)"
    )


def test_plot_history_takes_one_name_and_refuses_no_names():
    history = {"loss": [1.0, 0.5], "accuracy": [0.5, 0.7]}
    assert [ax.get_title() for ax in kt.plot_history(history, metrics="accuracy").axes] == ["accuracy"]
    with raises(ValueError, "at least one name", "['accuracy', 'loss']"):
        kt.plot_history(history, metrics=[])
    with raises(ValueError, "`metrics`", "a name or a list of names"):
        kt.plot_history(history, metrics=3)


def test_plots_refuse_a_missing_folder_before_drawing(tmp_path, monkeypatch):
    from keras_transfer import plotting

    monkeypatch.setattr(plotting, "new_figure", lambda **kwargs: pytest.fail("drew before checking the path"))
    missing = tmp_path / "missing"
    with raises(FileNotFoundError, f"the folder {str(missing)!r} does not exist", "Create it first"):
        kt.plot_history({"loss": [1.0]}, path=missing / "curves.png")
    with raises(FileNotFoundError, f"the folder {str(missing)!r} does not exist"):
        kt.lr_finder.LRFinderResult([1e-3, 1e-2], [1.0, 0.5], 0.0, False).plot(path=str(missing / "lr.png"))
    with raises(ValueError, "it is a folder"):
        kt.plot_history({"loss": [1.0]}, path=tmp_path)
    assert not missing.exists()


def test_freezing_a_lora_model_is_refused_before_anything_changes(bert_preset):
    model = classifier(bert_preset, freeze=True)
    model.enable_lora(rank=2)
    trainable = {v.path for v in model.trainable_weights}
    for call in (
        lambda: kt.freeze(model),
        lambda: kt.unfreeze(model, top=1),
        lambda: model.unfreeze(),
        lambda: model.fine_tune(TEXTS, LABELS, head_epochs=1, epochs=1, verbose=0),
    ):
        with raises(ValueError, "LoRA is enabled", "Train the LoRA model as it is with `fit`"):
            call()
        assert {v.path for v in model.trainable_weights} == trainable


def test_a_fit_too_short_for_one_accumulated_update_is_refused(bert_preset):
    model = classifier(bert_preset, freeze=True, compile=False)
    model.compile(gradient_accumulation_steps=4)
    with raises(ValueError, "2 batches in all", "gradient_accumulation_steps=4", "no weight would change"):
        model.fit(TEXTS, LABELS, batch_size=10, epochs=2, verbose=0)
    assert int(model.optimizer.iterations) == 0
    model.fit(TEXTS, LABELS, batch_size=10, epochs=6, verbose=0)  # 6 batches: 1 update, 2 pending
    assert int(model.optimizer.iterations) == 1
    model.fit(TEXTS, LABELS, batch_size=10, epochs=2, verbose=0)  # the 2 pending + 2: one more update
    assert int(model.optimizer.iterations) == 2
    with raises(ValueError, "1 batch in all"):
        model.fit(TEXTS, LABELS, batch_size=10, epochs=1, verbose=0)


def test_lora_takes_a_set_of_layer_names(bert_preset):
    model = classifier(bert_preset, freeze=True)
    model.enable_lora(rank=2, target_layer_names={"value", "query"})
    assert {layer.name for layer in kt.lora.lora_layers(model)} == {"query", "value"}
