"""Translation: packing, training, decoding, BLEU, save/load, bad input.

Tiny encoder-decoders (BART with a byte-level BPE trained here, T5 with a
SentencePiece model trained here) and the tiny GPT-2 preset learn a
six-sentence "English to German" task well enough to reproduce it.
"""

import io

import keras
import keras_hub
import numpy as np
import pytest

import keras_transfer as kt
from helpers import raises
from keras_transfer.seq2seq import Seq2SeqBatches, Seq2SeqPreprocessor
from keras_transfer.tasks.translator import Translator

SOURCES = [
    "a dog runs in the park",
    "a man walks to the house",
    "the dog sleeps in the house",
    "the man runs in the park",
    "a dog walks to the park",
    "the man sleeps in the house",
]
TARGETS = [
    "ein hund rennt im park",
    "ein mann geht zum haus",
    "der hund schläft im haus",
    "der mann rennt im park",
    "ein hund geht zum park",
    "der mann schläft im haus",
]


@pytest.fixture(scope="module")
def bart_tokenizer(tmp_path_factory):
    import tokenizers

    bpe = tokenizers.ByteLevelBPETokenizer()
    bpe.train_from_iterator(
        SOURCES + TARGETS,
        vocab_size=300,
        min_frequency=1,
        special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"],
    )
    folder = tmp_path_factory.mktemp("bpe")
    bpe.save_model(str(folder))
    merges = [line for line in (folder / "merges.txt").read_text().split("\n")[1:] if line]
    return keras_hub.models.BartTokenizer(vocabulary=bpe.get_vocab(), merges=merges)


@pytest.fixture(scope="module")
def t5_tokenizer():
    import sentencepiece

    model = io.BytesIO()
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(SOURCES + TARGETS),
        model_writer=model,
        vocab_size=24,
        hard_vocab_limit=False,
        model_type="word",
        pad_id=0,
        eos_id=1,
        unk_id=2,
        bos_id=-1,
    )
    return keras_hub.models.T5Tokenizer(proto=model.getvalue())


def tiny_bart(tokenizer, seed=0):
    keras.utils.set_random_seed(seed)
    backbone = keras_hub.models.BartBackbone(
        vocabulary_size=tokenizer.vocabulary_size(),
        num_layers=1,
        num_heads=2,
        hidden_dim=32,
        intermediate_dim=64,
        dropout=0.0,
        max_sequence_length=32,
    )
    preprocessor = Seq2SeqPreprocessor(tokenizer, "BartBackbone", source_length=16, target_length=16)
    return Translator(backbone, preprocessor)


def train(model, epochs=60, learning_rate=1e-2):
    model.compile(learning_rate=learning_rate, warmup=0.0, weight_decay=0.0)
    return model.fit(SOURCES, TARGETS, batch_size=6, epochs=epochs, seed=0, verbose=0)


@pytest.fixture(scope="module")
def trained_bart(bart_tokenizer):
    model = tiny_bart(bart_tokenizer)
    history = train(model)
    return model, history


# Packing -------------------------------------------------------------------


def test_bart_packing_matches_kerashub_convention(bart_tokenizer):
    pre = Seq2SeqPreprocessor(bart_tokenizer, "BartBackbone", source_length=16, target_length=16)
    ids = lambda text: list(np.asarray(bart_tokenizer([text])[0]))  # noqa: E731
    s, e, p = bart_tokenizer.start_token_id, bart_tokenizer.end_token_id, bart_tokenizer.pad_token_id
    x, y, w = pre.collate(pre.pack(["a dog runs", "the man"], ["ein hund", "der"]))
    assert x["encoder_token_ids"][0].tolist() == [s, *ids("a dog runs"), e]
    # BART's decoder starts from `</s> <s>`, as KerasHub's preprocessor packs it.
    full = [e, s, *ids("ein hund"), e]
    assert x["decoder_token_ids"][0].tolist() == full[:-1]
    assert y[0].tolist() == full[1:]
    # The first label (<s> after </s>) is fixed, not learned; padding is not.
    assert w[0].tolist() == [0.0] + [1.0] * (len(full) - 2)
    short = [e, s, *ids("der"), e]
    assert x["decoder_token_ids"][1, : len(short)].tolist() == short
    assert set(x["decoder_token_ids"][1, len(short) :].tolist()) <= {p}
    assert w[1].sum() == len(short) - 2
    lengths = [len(ids("a dog runs")) + 2, len(ids("the man")) + 2]
    assert x["encoder_padding_mask"].sum(axis=1).tolist() == lengths


def test_t5_packing(t5_tokenizer):
    pre = Seq2SeqPreprocessor(t5_tokenizer, "T5Backbone", source_length=8, target_length=8)
    x, y, w = pre.collate(pre.pack(["a dog runs"], ["ein hund rennt"]))
    ids = lambda text: np.asarray(t5_tokenizer([text])[0]).tolist()  # noqa: E731
    assert x["encoder_token_ids"][0].tolist() == ids("a dog runs") + [1]
    assert x["decoder_token_ids"][0].tolist() == [0] + ids("ein hund rennt")
    assert y[0].tolist() == ids("ein hund rennt") + [1]
    assert w[0].tolist() == [1.0] * 4


def test_decoder_only_packing_weights_only_the_target(gpt2_preset):
    model = Translator.from_preset(gpt2_preset, prompt="{source} =", source_length=12, target_length=8)
    pre = model.preprocessor
    (source, target), = pre.pack(["good film"], ["great movie"])
    tokenizer = pre.tokenizer
    assert source.tolist() == [tokenizer.start_token_id, *np.asarray(tokenizer(["good film"])[0]), *np.asarray(tokenizer([" ="])[0])]
    assert target.tolist() == [*np.asarray(tokenizer([" great movie"])[0]), tokenizer.end_token_id]
    x, y, w = pre.collate([(source, target)])
    # Position i predicts token i + 1: weights cover exactly the target.
    assert y[0, w[0] > 0].tolist() == target.tolist()
    assert x["token_ids"].shape[1] == len(source) + len(target) - 1


def test_truncation_keeps_end_tokens(bart_tokenizer):
    pre = Seq2SeqPreprocessor(bart_tokenizer, "BartBackbone", source_length=5, target_length=5)
    (source, target), = pre.pack([" ".join(SOURCES)], [" ".join(TARGETS)])
    assert len(source) == 5 and source[-1] == bart_tokenizer.end_token_id
    assert len(target) + 1 == 5 and target[-1] == bart_tokenizer.end_token_id


def test_batches_bucket_and_keep_every_pair(bart_tokenizer):
    pre = Seq2SeqPreprocessor(bart_tokenizer, "BartBackbone", source_length=16, target_length=16)
    batches = Seq2SeqBatches(pre, SOURCES, TARGETS, batch_size=4, shuffle=True, seed=1)
    seen = np.concatenate(batches._batches)
    assert sorted(seen.tolist()) == list(range(len(SOURCES)))
    first = [b.tolist() for b in batches._batches]
    batches.on_epoch_end()
    again = Seq2SeqBatches(pre, SOURCES, TARGETS, batch_size=4, shuffle=True, seed=1)
    assert [b.tolist() for b in again._batches] == first


# Training and decoding -------------------------------------------------------


def test_bart_learns_the_task_and_decodes_it(trained_bart):
    model, history = trained_bart
    losses = history.history["loss"]
    assert losses[-1] < 0.2 * losses[0]
    metrics = model.evaluate(SOURCES, TARGETS, return_dict=True, verbose=0)
    assert metrics["accuracy"] > 0.85
    greedy = model.translate(SOURCES)
    assert sum(g == t for g, t in zip(greedy, TARGETS)) >= 3, greedy
    beam = model.translate(SOURCES, sampler="beam")
    assert len(beam) == len(SOURCES) and all(isinstance(b, str) for b in beam)
    scores = model.evaluate_bleu(SOURCES, TARGETS)
    assert scores["translations"] == greedy
    assert scores["bleu"] > 25


def reference_greedy(model, source, steps):
    """Greedy decoding by hand: one full forward pass per new token."""
    pre = model.preprocessor
    packed = pre.pack_sources([source])[0]
    end = pre.end_token_id
    if pre.decoder_only:
        tokens = list(packed)
        for _ in range(steps):
            x = {"token_ids": np.array([tokens]), "padding_mask": np.ones((1, len(tokens)), bool)}
            token = int(np.argmax(model.predict(x, verbose=0)[0, -1]))
            if token == end:
                break
            tokens.append(token)
        generated = tokens[len(packed):]
    else:
        tokens = pre.decoder_prompt()
        start = len(tokens)
        for _ in range(steps):
            x = {
                "encoder_token_ids": packed[None],
                "encoder_padding_mask": np.ones((1, len(packed)), bool),
                "decoder_token_ids": np.array([tokens]),
                "decoder_padding_mask": np.ones((1, len(tokens)), bool),
            }
            token = int(np.argmax(model.predict(x, verbose=0)[0, -1]))
            if token == end:
                break
            tokens.append(token)
        generated = tokens[start:]
    return generated


@pytest.mark.parametrize("family", ["bart", "t5", "gpt2"])
def test_translate_equals_step_by_step_greedy_decoding(family, request):
    """KerasHub's cached generation over our graph == argmax of `predict`."""
    if family == "gpt2":
        model = Translator.from_preset(
            request.getfixturevalue("gpt2_preset"), prompt="{source} =", source_length=12, target_length=6
        )
    else:
        model = tiny_bart(request.getfixturevalue("bart_tokenizer")) if family == "bart" else tiny_t5(
            request.getfixturevalue("t5_tokenizer")
        )
    # Random weights: whatever it writes, the two decoders must agree.
    sources = ["good film", "bad plot"] if family == "gpt2" else SOURCES[:2]
    steps = model.preprocessor.target_length - len(getattr(model.preprocessor.family, "decoder_start", ()))
    for source, text in zip(sources, model.translate(sources)):
        ids = reference_greedy(model, source, steps)
        expected = model.preprocessor.decode([[0] + ids], [1])[0].strip() if ids else ""
        assert text == expected


def test_translate_keeps_input_order_across_batches(trained_bart):
    model, _ = trained_bart
    expected = model.translate(SOURCES, batch_size=6)
    order = [5, 0, 3, 1, 4, 2]
    assert model.translate([SOURCES[i] for i in order], batch_size=4) == [expected[i] for i in order]
    assert model.translate([]) == []


def test_save_and_load_keep_translations(trained_bart, tmp_path):
    model, _ = trained_bart
    path = tmp_path / "translator.keras"
    model.save(path)
    loaded = kt.load_model(path)
    assert isinstance(loaded, Translator)
    assert loaded.preprocessor.target_length == 16
    assert loaded.translate(SOURCES) == model.translate(SOURCES)
    x, _, _ = model.preprocessor.collate(model.preprocessor.pack(SOURCES, TARGETS))
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6)


def tiny_t5(tokenizer):
    keras.utils.set_random_seed(0)
    backbone = keras_hub.models.T5Backbone(
        vocabulary_size=tokenizer.vocabulary_size(),
        num_layers=1,
        num_heads=2,
        hidden_dim=32,
        intermediate_dim=64,
        key_value_dim=16,
        dropout=0.0,
    )
    return Translator(backbone, Seq2SeqPreprocessor(tokenizer, "T5Backbone", source_length=12, target_length=8))


def test_t5_and_decoder_only_routes_train(t5_tokenizer, gpt2_preset):
    model = tiny_t5(t5_tokenizer)
    history = train(model, epochs=12, learning_rate=5e-2)
    assert history.history["loss"][-1] < 0.9 * history.history["loss"][0]
    model = Translator.from_preset(gpt2_preset, prompt="{source} =", source_length=16, target_length=6)
    model.compile(learning_rate=3e-2, warmup=0.0)
    history = model.fit(["good film", "bad plot"], ["great movie", "awful story"], batch_size=2, epochs=12, seed=0, verbose=0)
    assert history.history["loss"][-1] < 0.8 * history.history["loss"][0]


def test_freezing_the_encoder_trains_only_the_decoder(bart_tokenizer):
    model = tiny_bart(bart_tokenizer)
    model.freeze_encoder()
    encoder = [v for v in model.backbone.weights if "encoder" in v.path and "decoder" not in v.path]
    decoder = [v for v in model.backbone.weights if "decoder" in v.path]
    before = {v.path: np.array(v.numpy()) for v in model.backbone.weights}
    train(model, epochs=2)
    assert encoder and all(np.array_equal(v.numpy(), before[v.path]) for v in encoder)
    assert any(not np.array_equal(v.numpy(), before[v.path]) for v in decoder)
    assert "Frozen: 0 " not in " ".join(model.describe_freezing())


# Metrics and data --------------------------------------------------------------


def test_bleu_and_chrf_values():
    hyp = ["the cat sat on the mat today"]
    assert kt.metrics.bleu(hyp, hyp) == pytest.approx(100.0)
    assert kt.metrics.chrf(hyp, hyp) == pytest.approx(100.0)
    # Half the words right: 4-gram precision 0 → BLEU 0 without smoothing,
    # but chrF still gives partial credit.
    assert kt.metrics.bleu(["the cat ran off a rug"], ["the cat sat on the mat"]) < 20
    assert 0 < kt.metrics.chrf(["the cat ran off a rug"], ["the cat sat on the mat"]) < 100
    with raises(ValueError, "2 hypotheses", "1 reference:"):
        kt.metrics.bleu(["a", "b"], ["a"])


def test_read_parallel_and_multi30k(tmp_path):
    (tmp_path / "train.en").write_text("A dog.\nA man.\n\n", encoding="utf-8")
    (tmp_path / "train.de").write_text("Ein Hund.\nEin Mann.\n\n", encoding="utf-8")
    data = kt.datasets.multi30k(tmp_path, "train")
    assert data.sources == ["A dog.", "A man."] and data.targets == ["Ein Hund.", "Ein Mann."]
    assert len(data.take(1)) == 1
    reverse = kt.datasets.multi30k(tmp_path, "train", source_language="de", target_language="en")
    assert reverse.sources[0] == "Ein Hund."
    (tmp_path / "val.en").write_text("A dog.\nA man.\n", encoding="utf-8")
    (tmp_path / "val.de").write_text("Ein Hund.\n", encoding="utf-8")
    with raises(ValueError, "not aligned"):
        kt.datasets.multi30k(tmp_path, "val")
    (tmp_path / "test.en").write_text("A dog.\n\nA cat.\n", encoding="utf-8")
    (tmp_path / "test.de").write_text("Ein Hund.\nEine Maus.\nEine Katze.\n", encoding="utf-8")
    with raises(ValueError, "Line 2", "one side only"):
        kt.datasets.multi30k(tmp_path, "test")
    with raises(FileNotFoundError, "No file"):
        kt.datasets.read_parallel(tmp_path / "nope.en", tmp_path / "nope.de")
    with raises(ValueError, "Unknown split"):
        kt.datasets.multi30k(tmp_path, "dev")


def test_fit_takes_parallel_data(bart_tokenizer):
    model = tiny_bart(bart_tokenizer)
    data = kt.datasets.ParallelData(SOURCES, TARGETS)
    history = model.fit(data, batch_size=3, epochs=1, validation_data=data, verbose=0)
    assert {"loss", "val_loss", "accuracy", "val_accuracy"} <= set(history.history)


# Bad input ----------------------------------------------------------------------


def test_bad_inputs(bart_tokenizer, bert_preset, gpt2_preset):
    model = tiny_bart(bart_tokenizer)
    with raises(ValueError, "3 sources", "2 targets"):
        model.fit(SOURCES[:3], TARGETS[:2], verbose=0)
    with raises(ValueError, "single string"):
        model.fit("a dog", "ein hund", verbose=0)
    with raises(ValueError, "needs target texts"):
        model.fit(SOURCES, verbose=0)
    with raises(ValueError, "targets[1]", "int"):
        model.fit(SOURCES[:2], ["ein hund", 3], verbose=0)
    with raises(ValueError, "freeze", "'encoder'"):
        Translator.from_preset(gpt2_preset, freeze=True)
    with raises(ValueError, "has no encoder"):
        Translator.from_preset(gpt2_preset, freeze="encoder")
    with raises(ValueError, "cannot generate text with BertBackbone"):
        Translator.from_preset(bert_preset)
    with raises(ValueError, "{source}"):
        Translator.from_preset(gpt2_preset, prompt="Translate this")
    with raises(ValueError, "Unknown preset", "bart_base_en"):
        Translator.from_preset("bart_bas_en")
    with raises(ValueError, "source_length"):
        Seq2SeqPreprocessor(bart_tokenizer, "BartBackbone", source_length=2)


def test_lengths_must_fit_the_backbone_positions(bart_tokenizer, gpt2_preset):
    # Left out, the lengths share a decoder's positions (the tiny GPT-2 has 64).
    model = Translator.from_preset(gpt2_preset)
    pre = model.preprocessor
    assert pre.source_length + pre.target_length <= model.backbone.max_sequence_length
    assert len(model.translate(["good film"])) == 1
    model.fit([" ".join(SOURCES)], [" ".join(TARGETS)], epochs=1, verbose=0)
    given = Translator.from_preset(gpt2_preset, source_length=40, prompt="{source} =").preprocessor
    assert (given.source_length, given.target_length) == (40, 24)
    with raises(ValueError, "source_length=64 + target_length=64", "max_sequence_length=64", "at most 64"):
        Translator.from_preset(gpt2_preset, source_length=64, target_length=64)
    with raises(ValueError, "target_length=62 leaves 2", "smaller target_length"):
        Translator.from_preset(gpt2_preset, target_length=62)
    with raises(ValueError, "takes", "no room for the source", "source_length=8"):
        Translator.from_preset(gpt2_preset, source_length=8)  # the default prompt is longer
    # An encoder-decoder: each length against the backbone's positions (32).
    backbone = tiny_bart(bart_tokenizer).backbone
    with raises(ValueError, "source_length=64", "32 positions of BartBackbone", "source_length=32 or less"):
        Translator(backbone, Seq2SeqPreprocessor(bart_tokenizer, "BartBackbone", source_length=64, target_length=64))
    model = Translator(backbone, Seq2SeqPreprocessor(bart_tokenizer, "BartBackbone", source_length=32, target_length=32))
    with raises(ValueError, "target_length=40"):
        model.preprocessor = Seq2SeqPreprocessor(bart_tokenizer, "BartBackbone", source_length=16, target_length=40)
    with raises(ValueError, "packs for GPT2Backbone", "'BartBackbone'"):
        Translator(backbone, Translator.from_preset(gpt2_preset, prompt="{source} =").preprocessor)


def test_predict_and_find_learning_rate_read_text_as_a_translator(bart_tokenizer):
    model = tiny_bart(bart_tokenizer)
    with raises(ValueError, "Translator.predict takes token-id inputs", "model.translate(sources)"):
        model.predict(["a dog"])
    with raises(ValueError, "model.translate(sources)"):
        model.predict(kt.datasets.ParallelData(SOURCES, TARGETS))
    before = [np.array(v.numpy()) for v in model.weights]
    result = model.find_learning_rate(SOURCES, TARGETS, steps=5, batch_size=3)
    assert len(result.learning_rates) == 5 and np.isfinite(result.suggestion)
    assert all(np.array_equal(v.numpy(), b) for v, b in zip(model.weights, before))
    with raises(ValueError, "needs target texts"):
        model.find_learning_rate(SOURCES, steps=5)


def test_fine_tune_has_no_head_stage_and_trains_the_whole_model(bart_tokenizer, tmp_path):
    model = tiny_bart(bart_tokenizer)
    model.freeze_encoder()
    frozen = model.describe_freezing()
    data = kt.datasets.ParallelData(SOURCES, TARGETS)
    for head_epochs in (1, np.int64(3)):
        with raises(ValueError, f"head_epochs={head_epochs}", "no head-only stage", "head_epochs=0"):
            model.fine_tune(data, head_epochs=head_epochs, epochs=1)
    assert model.describe_freezing() == frozen  # refused before changing anything
    with raises(ValueError, "head_epochs=2", "no weights outside its backbone", "head_epochs=0"):
        kt.recipes.fine_tune(model, data, head_epochs=2, epochs=1)  # the recipe itself checks too
    assert model.describe_freezing() == frozen
    history = model.fine_tune(data, validation_data=data, epochs=2, batch_size=3, verbose=0)
    assert history.history["stage"] == [2, 2] and "val_loss" in history.history
    assert "Frozen: 0 " in model.describe_freezing()[0]
    history = model.fine_tune(SOURCES, TARGETS, validation_data=(SOURCES, TARGETS), epochs=1, unfreeze=1, verbose=0)
    assert history.history["stage"] == [2] and "val_accuracy" in history.history
    # `fit` takes Task.fit's caching arguments; a translator has no cache.
    model.fit(data, epochs=1, cache_features=False, cache_memory_limit=0, cache_dir=tmp_path, verbose=0)
    with raises(ValueError, "cache_features=True", "no feature cache"):
        model.fit(data, cache_features=True)
    with raises(ValueError, "cache_memory_limit"):
        model.fit(data, cache_memory_limit=-1)


def test_fit_refuses_a_translator_with_nothing_to_train(bart_tokenizer):
    model = tiny_bart(bart_tokenizer)
    kt.freeze(model)
    before = [np.array(v.numpy()) for v in model.weights]
    with raises(ValueError, "Nothing in this Translator trains", "model.unfreeze()", "compile"):
        model.fit(SOURCES, TARGETS, verbose=0)
    assert all(np.array_equal(v.numpy(), b) for v, b in zip(model.weights, before))
    model.unfreeze()
    model.compile()
    model.fit(SOURCES, TARGETS, epochs=1, verbose=0)


def test_lone_surrogates_become_replacement_characters(bart_tokenizer):
    model = tiny_bart(bart_tokenizer)
    pre = model.preprocessor
    broken = "a dog \ud800 runs"
    assert [p.tolist() for p in pre.pack_sources([broken])] == [
        p.tolist() for p in pre.pack_sources(["a dog \ufffd runs"])
    ]
    assert len(model.translate([broken])) == 1
    model.fit([broken], ["ein \udcff hund"], epochs=1, verbose=0)


def test_typed_special_tokens_stay_text(bart_tokenizer, gpt2_preset):
    pre = tiny_bart(bart_tokenizer).preprocessor
    end = bart_tokenizer.end_token_id
    (source, target), = pre.pack(["a dog </s> runs"], ["ein </s> hund"])
    assert source.tolist().count(end) == 1 and target.tolist().count(end) == 1
    pre = Translator.from_preset(gpt2_preset, prompt="{source} =").preprocessor
    (prompt,) = pre.pack_sources(["good <|endoftext|> film"])
    assert prompt.tolist().count(pre.end_token_id) == 1  # the start token only


def test_backbone_class_may_be_a_class_or_a_backbone(bart_tokenizer):
    by_class = Seq2SeqPreprocessor(bart_tokenizer, keras_hub.models.BartBackbone)
    assert by_class.backbone_class == "BartBackbone" and by_class.get_config()["backbone_class"] == "BartBackbone"
    by_backbone = Seq2SeqPreprocessor(bart_tokenizer, tiny_bart(bart_tokenizer).backbone)
    assert by_backbone.backbone_class == "BartBackbone"
    with raises(ValueError, "name of a KerasHub backbone class", "backbone_class=3"):
        Seq2SeqPreprocessor(bart_tokenizer, 3)
    assert Seq2SeqPreprocessor(bart_tokenizer, "BartBackbone", source_length=np.int64(8)).source_length == 8


def test_multi30k_example_smoke():
    """The translation example runs end to end (tiny, made-up pairs)."""
    import pathlib
    import subprocess
    import sys

    script = pathlib.Path(__file__).parents[1] / "examples" / "multi30k_translation.py"
    result = subprocess.run(
        [sys.executable, str(script), "--smoke"], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "| 16 | 2 | BART 1+1 layers" in result.stdout


def test_loss_and_accuracy_count_target_tokens_only(bart_tokenizer):
    model = tiny_bart(bart_tokenizer)
    model.compile(learning_rate=1e-2, warmup=0.0, weight_decay=0.0)
    model.fit(SOURCES, TARGETS, batch_size=6, epochs=8, seed=0, verbose=0)
    sources = SOURCES[:5]
    targets = TARGETS[:4] + ["ein hund rennt im park und der mann schläft im haus"]  # lengths differ
    pre = model.preprocessor
    x, y, w = pre.collate(pre.pack(sources, targets))
    logits = np.asarray(model.predict(x, verbose=0), "float64")
    log_softmax = logits - logits.max(-1, keepdims=True)
    log_softmax -= np.log(np.exp(log_softmax).sum(-1, keepdims=True))
    cross_entropy = -np.take_along_axis(log_softmax, np.asarray(y)[..., None].astype(int), -1)[..., 0]
    w = np.asarray(w, "float64")
    assert 0 < w.sum() < w.size  # padding and start tokens are not targets
    expected_loss = (cross_entropy * w).sum() / w.sum()
    expected_accuracy = ((logits.argmax(-1) == np.asarray(y)) * w).sum() / w.sum()
    one_batch = model.evaluate(sources, targets, batch_size=5, verbose=0, return_dict=True)
    assert one_batch["loss"] == pytest.approx(expected_loss, rel=1e-4)
    assert one_batch["accuracy"] == pytest.approx(expected_accuracy, rel=1e-6)
    for batch_size in (1, 2):  # accuracy counts tokens over all batches, whatever the batching
        result = model.evaluate(sources, targets, batch_size=batch_size, verbose=0, return_dict=True)
        assert result["accuracy"] == pytest.approx(expected_accuracy, rel=1e-6)


def test_a_decoder_only_translator_saves_and_loads(gpt2_preset, tmp_path):
    # The prompt check needs the tokenizer's vocabulary, which Keras loads
    # after building the preprocessor from the saved config.
    model = Translator.from_preset(gpt2_preset, prompt="Translate: {source} =", source_length=24, target_length=8)
    model.fit(SOURCES[:4], TARGETS[:4], batch_size=4, epochs=1, verbose=0)
    model.save(tmp_path / "gpt2.keras")
    loaded = kt.load_model(tmp_path / "gpt2.keras")
    assert loaded.preprocessor.prompt == "Translate: {source} ="
    assert loaded.translate(SOURCES[:2]) == model.translate(SOURCES[:2])
    with raises(ValueError, "leaves no room for the source"):
        Translator.from_preset(gpt2_preset, prompt="Translate these words now please: {source} =",
                               source_length=5, target_length=8)


def test_a_translator_fit_too_short_for_one_accumulated_update_is_refused(bart_tokenizer):
    model = tiny_bart(bart_tokenizer)
    model.compile(gradient_accumulation_steps=8)
    with raises(ValueError, "no weight would change", "gradient_accumulation_steps=8"):
        model.fit(SOURCES, TARGETS, batch_size=3, epochs=1, verbose=0)
