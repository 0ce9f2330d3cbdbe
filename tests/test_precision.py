"""Mixed precision and the fused-attention path of frozen backbones."""

import keras
import numpy as np
import torch

import keras_transfer as kt


def test_mixed_bfloat16_classifier_trains_and_predicts(bert_preset):
    model = kt.TextClassifier.from_preset(
        bert_preset, num_classes=2, sequence_length=16, dtype="mixed_bfloat16"
    )
    assert model.backbone.dtype_policy.name == "mixed_bfloat16"
    assert model.get_layer("logits").dtype_policy.name == "mixed_bfloat16"
    assert model.get_layer("logits").kernel.dtype == "float32"  # variables stay float32
    history = model.fit(["good film", "bad film"] * 4, [1, 0] * 4, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    predictions = model.predict(["good film", "bad"], verbose=0)
    assert predictions.shape == (2, 2)
    assert predictions.dtype == np.float32  # not ml_dtypes.bfloat16, which torch and pandas cannot read
    logits = model(model.preprocessor(["good film", "bad"]), training=False)
    assert str(logits.dtype) == "torch.bfloat16"
    np.testing.assert_array_equal(predictions, logits.detach().float().cpu().numpy())
    torch.from_numpy(predictions)


def test_frozen_backbone_takes_the_fused_attention_path_with_the_same_outputs(bert_preset):
    backbone, preprocessor = kt.load_backbone(bert_preset, sequence_length=16)
    batch = preprocessor(["a good film", "a bad awful film indeed"])
    unfused = backbone(batch, training=False)["sequence_output"]
    calls = []
    real = torch.nn.functional.scaled_dot_product_attention

    def spy(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    kt.freeze(backbone)
    torch.nn.functional.scaled_dot_product_attention = spy
    try:
        fused = backbone(batch)["sequence_output"]
    finally:
        torch.nn.functional.scaled_dot_product_attention = real
    assert calls, "a frozen backbone should call torch's fused attention"
    mask = batch["padding_mask"][..., None]
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(fused) * mask,
        keras.ops.convert_to_numpy(unfused) * mask,
        atol=1e-5,
    )


def test_jit_compile_gets_weight_decay_decided_before_tracing(bert_preset):
    model = kt.TextClassifier.from_preset(bert_preset, num_classes=2, freeze=False, compile=False)
    model.compile(jit_compile=True)
    model._prepare_for_jit_compile()
    cache = model.optimizer._exclude_from_weight_decay_cache
    keys = {model.optimizer._var_key(v): v for v in model.trainable_variables}
    assert set(keys) <= set(cache)
    assert not cache[model.optimizer._var_key(model.get_layer("logits").bias)]
    assert cache[model.optimizer._var_key(model.get_layer("logits").kernel)]


def test_jit_compile_steps_run_compiled_without_recompiling(bert_preset):
    # `jit_compile=True` traces the whole train step with torch.compile.
    # Python state that changes every call inside the traced code (a
    # counter, say) makes dynamo recompile the frame at every step until
    # its limit, then run it eagerly: after two warm-up steps, further
    # steps must find compiled graphs and make no new ones.
    import torch._dynamo

    torch._dynamo.reset()
    model = kt.TextClassifier.from_preset(bert_preset, num_classes=2, sequence_length=16, freeze=False)
    model.compile(jit_compile=True)
    batch = model.preprocessor(["a good film", "bad", "the plot is fun", "fine"])  # padded rows
    labels = np.array([1, 0, 1, 1])
    for _ in range(2):
        model.train_on_batch(batch, labels)
    stats = torch._dynamo.utils.counters["stats"]
    graphs = stats["unique_graphs"]
    assert graphs > 0  # the step was traced
    for _ in range(3):
        logs = model.train_on_batch(batch, labels, return_dict=True)
    assert stats["unique_graphs"] == graphs
    assert np.isfinite(logs["loss"])


def test_unused_pooler_is_frozen_when_built_over_a_trainable_backbone(bert_preset):
    backbone, preprocessor = kt.load_backbone(bert_preset, sequence_length=16)
    model = kt.TextClassifier(backbone, num_classes=2, preprocessor=preprocessor, pooling="mean")
    assert not backbone.get_layer("pooled_dense").trainable
    assert backbone.get_layer("transformer_layer_0").trainable
    pooled = kt.TextClassifier(backbone, num_classes=2, preprocessor=preprocessor, pooling="pooled")
    assert pooled.pooling == "pooled"


def test_auto_dtype_follows_the_hardware(monkeypatch):
    from keras_transfer import precision

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(precision, "_cpu_flags", lambda: frozenset({"avx2", "avx512_bf16"}))
    assert precision.resolve_dtype("auto") == "mixed_bfloat16"
    monkeypatch.setattr(precision, "_cpu_flags", lambda: frozenset({"avx2", "amx_bf16"}))
    assert precision.resolve_dtype("auto") == "mixed_bfloat16"
    monkeypatch.setattr(precision, "_cpu_flags", lambda: frozenset({"avx2", "avx512f"}))
    assert precision.resolve_dtype("auto") is None  # Keras' global policy
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: True)
    assert precision.resolve_dtype("auto") == "mixed_bfloat16"
    for explicit in (None, "float32", "bfloat16", "mixed_float16"):
        assert precision.resolve_dtype(explicit) == explicit


def test_cpu_flags_are_read_from_cpuinfo():
    from keras_transfer import precision

    flags = precision._cpu_flags()
    assert isinstance(flags, frozenset)
    if flags:  # Linux: the flags line of /proc/cpuinfo
        assert any(flag.startswith(("sse", "neon", "fp", "avx")) for flag in flags)


def test_auto_dtype_reaches_the_model(bert_preset, monkeypatch):
    from keras_transfer import precision

    monkeypatch.setattr(precision, "fast_bfloat16", lambda: True)
    model = kt.TextClassifier.from_preset(bert_preset, num_classes=2, sequence_length=16, dtype="auto")
    assert model.backbone.dtype_policy.name == "mixed_bfloat16"
    assert model.get_layer("logits").dtype_policy.name == "mixed_bfloat16"
    monkeypatch.setattr(precision, "fast_bfloat16", lambda: False)
    model = kt.TextClassifier.from_preset(bert_preset, num_classes=2, sequence_length=16, dtype="auto")
    assert model.backbone.dtype_policy.name == keras.config.dtype_policy().name


def test_auto_dtype_reaches_the_translator_loader(bert_preset, monkeypatch):
    from keras_transfer import precision
    from keras_transfer.tasks import translator

    monkeypatch.setattr(precision, "fast_bfloat16", lambda: True)
    backbone, _ = translator._load(bert_preset, True, "auto")
    assert backbone.dtype_policy.name == "mixed_bfloat16"


def test_bfloat16_taggers_and_readers_predict_float32(bert_preset):
    tagger = kt.TokenClassifier.from_preset(
        bert_preset, tag_names=["O", "B-PER", "I-PER"], sequence_length=16, dtype="mixed_bfloat16"
    )
    rows = tagger.predict([["good", "film"], ["bad"]])
    assert all(r.dtype == np.float32 for r in rows) and rows[0].shape == (2, 3)
    reader = kt.QuestionAnswerer.from_preset(
        bert_preset, sequence_length=24, stride=6, max_question_length=8, dtype="mixed_bfloat16"
    )
    from keras_transfer import qa

    windows = reader.windows(["what ?"], ["the plot was boring"])
    outputs = reader.predict(qa.QABatches(reader.preprocessor, windows).inputs([0]), verbose=0)
    assert set(outputs) == {"start_logits", "end_logits"}
    assert all(array.dtype == np.float32 for array in outputs.values())


def _float16_models(preset):
    yield kt.TextClassifier.from_preset(preset, num_classes=2, sequence_length=16, freeze=False, dtype="mixed_float16")
    yield kt.TokenClassifier.from_preset(preset, tag_names=["O", "B-X", "I-X"], sequence_length=16, dtype="mixed_float16")
    yield kt.QuestionAnswerer.from_preset(preset, sequence_length=32, stride=4, max_question_length=8, dtype="mixed_float16")


def test_mixed_float16_tasks_get_loss_scaling(bert_preset):
    # Keras scales the loss only for a model whose own policy is
    # mixed_float16; the task model's must follow its backbone's, or small
    # float16 gradients underflow to zero.
    for model in _float16_models(bert_preset):
        assert model.dtype_policy.name == "mixed_float16", type(model).__name__
        assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer), type(model).__name__
    bfloat16 = kt.TextClassifier.from_preset(bert_preset, num_classes=2, sequence_length=16, dtype="mixed_bfloat16")
    assert not isinstance(bfloat16.optimizer, keras.optimizers.LossScaleOptimizer)


def test_mixed_float16_classifier_trains_and_reloads_with_its_loss_scale(bert_preset, tmp_path):
    keras.utils.set_random_seed(0)
    model = next(_float16_models(bert_preset))
    before = [w.numpy().copy() for w in model.backbone.trainable_weights]
    history = model.fit(["good film", "bad film"] * 4, [1, 0] * 4, epochs=2, batch_size=4, verbose=0)
    assert np.all(np.isfinite(history.history["loss"]))
    assert any(not np.array_equal(b, w.numpy()) for b, w in zip(before, model.backbone.trainable_weights))
    model.save(tmp_path / "m.keras")
    loaded = kt.load_model(tmp_path / "m.keras")
    assert isinstance(loaded.optimizer, keras.optimizers.LossScaleOptimizer)
    assert float(loaded.optimizer.dynamic_scale) == float(model.optimizer.dynamic_scale)
    assert int(loaded.optimizer.iterations) == int(model.optimizer.iterations)
    np.testing.assert_array_equal(
        loaded.predict(["good film"], verbose=0), model.predict(["good film"], verbose=0)
    )
