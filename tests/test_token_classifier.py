"""kt.TokenClassifier: word-piece alignment, windows, tag schemes, the CoNLL
reader, fit / evaluate / predict, entities with offsets, save and load, and
the errors users meet."""

import gzip

import keras_transfer as kt  # noqa: F401  (selects the torch backend first)
import keras
import numpy as np
import pytest
from helpers import raises

from keras_transfer.metrics.entities import IGNORE_CLASS
from keras_transfer.tagging import TaggedBatches, convert_tags, entities_to_tags, split_words

TAGS = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]
# A lexicon the tiny models can learn: each word always has the same tag.
LEXICON = {"one": "B-PER", "two": "I-PER", "film": "B-LOC", "movie": "I-LOC"}
WORDS = ["good", "bad", "the", "a", "is", "one", "two", "film", "movie", "plot", "fun"]


def _data(n=20, seed=0):
    rng = np.random.default_rng(seed)
    x = [list(rng.choice(WORDS, rng.integers(3, 8))) for _ in range(n)]
    return x, [[LEXICON.get(w, "O") for w in s] for s in x]


def _model(preset, **kwargs):
    kwargs.setdefault("tag_names", TAGS)
    kwargs.setdefault("sequence_length", 16)
    return kt.TokenClassifier.from_preset(preset, **kwargs)


@pytest.fixture(scope="module")
def tiny(bert_preset):
    """(backbone, preprocessor) shared by the tests that only build models."""
    return kt.load_backbone(bert_preset, sequence_length=16)


@pytest.fixture(scope="module")
def trained(bert_preset):
    """A tiny BERT tagger trained until it knows the lexicon."""
    keras.utils.set_random_seed(0)
    model = _model(bert_preset, freeze=False)
    model.compile(learning_rate=1e-2)
    x, y = _data()
    history = model.fit(x, y, epochs=10, batch_size=8, seed=0, verbose=0)
    return model, history


# ------------------------------------------------------------ alignment


def test_wordpiece_alignment_labels_first_sub_token_only(bert_preset):
    _, preprocessor = kt.load_backbone(bert_preset, sequence_length=16)
    # "filming" is "film ##ing": two sub-tokens, one tag.
    batches = TaggedBatches(preprocessor, [["one", "filming", "is", "fun"]], [np.array([1, 3, 0, 0])])
    x, y = batches[0]
    vocab = preprocessor.tokenizer.get_vocabulary()
    assert [vocab[i] for i in x["token_ids"][0]] == ["[CLS]", "one", "film", "##ing", "is", "fun", "[SEP]"]
    assert y[0].tolist() == [IGNORE_CLASS, 1, 3, IGNORE_CLASS, 0, 0, IGNORE_CLASS]


def test_byte_level_bpe_alignment_keeps_the_leading_space(gpt2_preset):
    _, preprocessor = kt.load_backbone(gpt2_preset, sequence_length=16)
    words = ["good", "film", "xyz", "fun"]
    batches = TaggedBatches(preprocessor, [words], [np.array([0, 3, 0, 1])])
    x, y = batches[0]
    # Word by word with the space before each non-first word: the same ids as
    # the running text.
    running = preprocessor.token_ids(["good film xyz fun"])[0].tolist()
    start, end = preprocessor.tokenizer.start_token_id, preprocessor.tokenizer.end_token_id
    assert x["token_ids"][0].tolist() == [start] + running + [end]
    assert preprocessor.token_ids([" film"])[0].tolist() != preprocessor.token_ids(["film"])[0].tolist()
    # "xyz" is not in the tiny vocabulary: " xyz" is four byte pieces, the
    # first one labelled.
    pieces = [len(preprocessor.token_ids([w if i == 0 else " " + w])[0]) for i, w in enumerate(words)]
    assert pieces == [1, 1, 4, 1]
    firsts = 1 + np.cumsum([0] + pieces[:-1])
    expected = np.full(len(x["token_ids"][0]), IGNORE_CLASS)
    expected[firsts] = [0, 3, 0, 1]
    assert y[0].tolist() == expected.tolist()


def test_padding_positions_are_ignored_and_batches_bucket(bert_preset):
    _, preprocessor = kt.load_backbone(bert_preset, sequence_length=16)
    sentences = [["fun"], ["the", "plot", "is", "fun", "and", "good"]]
    batches = TaggedBatches(preprocessor, sentences, [np.array([0]), np.zeros(6, "int32")], batch_size=2)
    x, y = batches[0]
    assert x["token_ids"].shape == (2, 8)  # padded to the longest, not to 16
    assert (y[~x["padding_mask"]] == IGNORE_CLASS).all()
    assert (y[0] != IGNORE_CLASS).sum() == 1 and (y[1] != IGNORE_CLASS).sum() == 6


def test_long_sentences_are_split_into_windows_of_whole_words(bert_preset):
    _, preprocessor = kt.load_backbone(bert_preset, sequence_length=6)  # 4 word pieces a window
    sentence = ["one", "filming", "two", "fun", "plot", "movie", "good"]  # 8 pieces
    tags = np.arange(7) % 5
    batches = TaggedBatches(preprocessor, [sentence, ["fun"]], [tags, np.array([4])], batch_size=8)
    assert batches.windows == [(0, 0, 3), (0, 3, 7), (1, 0, 1)]
    x, y = batches[0]
    assert x["token_ids"].shape[1] <= 6
    labelled = sorted(int(v) for v in y[y != IGNORE_CLASS])
    assert labelled == sorted(tags.tolist() + [4])  # every word once
    # Words come back in order, one row each.
    rows = batches.word_outputs(lambda inputs: np.repeat(inputs["token_ids"][..., None], 2, axis=-1))
    vocab = preprocessor.tokenizer.get_vocabulary()
    assert [vocab[int(i)] for i in rows[0][:, 0]] == ["one", "film", "two", "fun", "plot", "movie", "good"]
    assert rows[1].shape == (1, 2)


def test_a_word_longer_than_the_budget_keeps_its_first_piece(bert_preset):
    _, preprocessor = kt.load_backbone(bert_preset, sequence_length=4)  # 2 pieces a window
    batches = TaggedBatches(preprocessor, [["fun", "filminged", "two"]], [np.array([0, 3, 1])])
    assert batches.windows == [(0, 0, 1), (0, 1, 2), (0, 2, 3)]
    assert max(len(tokens) for tokens, _ in batches.packed) == 4


def test_a_word_without_tokens_gets_the_unknown_token(bert_preset):
    _, preprocessor = kt.load_backbone(bert_preset, sequence_length=16)
    batches = TaggedBatches(preprocessor, [["fun", "\x85", "plot"]], [np.array([0, 1, 0])])
    x, y = batches[0]
    vocab = preprocessor.tokenizer.get_vocabulary()
    assert [vocab[i] for i in x["token_ids"][0]] == ["[CLS]", "fun", "[UNK]", "plot", "[SEP]"]
    assert y[0].tolist() == [IGNORE_CLASS, 0, 1, 0, IGNORE_CLASS]


# ------------------------------------------------------------ words and schemes


def test_split_words_keeps_offsets():
    text = "John Smith's U.S. trip, 2.5 days - well-planned!"
    words = split_words(text)
    assert [w for w, _, _ in words] == [
        "John", "Smith's", "U.S", ".", "trip", ",", "2.5", "days", "-", "well-planned", "!",
    ]
    assert all(text[start:end] == word for word, start, end in words)
    assert split_words("  ") == []


def test_split_words_keeps_combining_marks_in_their_word():
    import unicodedata

    text = "e\u0301te\u0301 Zu\u0308rich, \u0939\u093f\u0928\u094d\u0926\u0940 !\u0301"
    words = split_words(text)
    assert words == [
        ("e\u0301te\u0301", 0, 5), ("Zu\u0308rich", 6, 13), (",", 13, 14),
        ("\u0939\u093f\u0928\u094d\u0926\u0940", 15, 21), ("!\u0301", 22, 24),
    ]
    composed = unicodedata.normalize("NFC", text)
    assert [unicodedata.normalize("NFC", w) for w, _, _ in words] == [w for w, _, _ in split_words(composed)]


@pytest.mark.parametrize(
    "source, tags, target, expected",
    [
        ("IOB1", ["I-PER", "I-PER", "B-PER", "O", "I-LOC"], "IOB2", ["B-PER", "I-PER", "B-PER", "O", "B-LOC"]),
        ("IOB2", ["B-PER", "I-PER", "B-PER", "O", "B-LOC"], "IOB1", ["I-PER", "I-PER", "B-PER", "O", "I-LOC"]),
        ("IOB2", ["B-PER", "I-PER", "I-PER", "B-LOC", "O"], "BIOES", ["B-PER", "I-PER", "E-PER", "S-LOC", "O"]),
        ("BIOES", ["B-PER", "E-PER", "S-PER", "O", "S-LOC"], "IOB2", ["B-PER", "I-PER", "B-PER", "O", "B-LOC"]),
        ("BIOES", ["S-PER", "B-PER", "E-PER"], "IOB1", ["I-PER", "B-PER", "I-PER"]),
        # Malformed IOB2 (I- after O) is read leniently and written well formed.
        ("IOB2", ["O", "I-PER", "I-PER"], "IOB2", ["O", "B-PER", "I-PER"]),
    ],
)
def test_convert_tags(source, tags, target, expected):
    assert convert_tags(tags, source, target) == expected
    assert convert_tags([tags, tags], source, target) == [expected, expected]
    # Converting back gives the same entities.
    back = convert_tags(expected, target, source)
    assert kt.metrics.get_entities(back) == kt.metrics.get_entities(tags)


def test_entities_to_tags_iob1_marks_only_adjacent_same_type():
    assert entities_to_tags([("PER", 0, 2), ("LOC", 2, 3)], 4, "IOB1") == ["I-PER", "I-PER", "I-LOC", "O"]


# ------------------------------------------------------------ CoNLL files

CONLL = """-DOCSTART- -X- -X- O

EU NNP B-NP B-ORG
rejects VBZ B-VP O
German JJ B-NP B-MISC
call NN I-NP O

Peter NNP B-NP B-PER
Blackburn NNP I-NP I-PER


-DOCSTART- -X- -X- O
BRUSSELS NNP B-NP B-LOC
"""


def test_read_conll(tmp_path):
    path = tmp_path / "train.txt"
    path.write_text(CONLL)
    data = kt.datasets.read_conll(path)
    assert data.words == [["EU", "rejects", "German", "call"], ["Peter", "Blackburn"], ["BRUSSELS"]]
    assert data.tags == [["B-ORG", "O", "B-MISC", "O"], ["B-PER", "I-PER"], ["B-LOC"]]
    assert data.tag_names == ["O", "B-LOC", "B-MISC", "B-ORG", "B-PER", "I-PER"]
    assert len(data) == 3 and "3 tagged sentences, 7 words" in repr(data)
    pos = kt.datasets.read_conll(path, tag_column=1)
    assert pos.tags[0] == ["NNP", "VBZ", "JJ", "NN"]
    gz = tmp_path / "train.txt.gz"
    gz.write_bytes(gzip.compress(CONLL.encode()))
    assert kt.datasets.read_conll(gz).tags == data.tags
    # Another split read with the training tag names keeps their order.
    names = data.tag_names + ["I-LOC"]
    assert kt.datasets.read_conll(path, tag_names=names).tag_names == names
    assert data.take(1).words == [["EU", "rejects", "German", "call"]]


def test_read_conll_errors(tmp_path):
    path = tmp_path / "bad.txt"
    path.write_text("EU B-ORG\nrejects\n")
    with raises(ValueError, "bad.txt:2", "1 column ", "tag_column=-1"):
        kt.datasets.read_conll(path)  # "rejects" has no tag
    # On two columns, -2 names the word itself: that is not a tag either.
    with raises(ValueError, "bad.txt:1", "2 columns", "tag_column=-2"):
        kt.datasets.read_conll(path, tag_column=-2)
    with raises(FileNotFoundError, "No CoNLL file"):
        kt.datasets.read_conll(tmp_path / "missing.txt")
    (tmp_path / "empty.txt").write_text("-DOCSTART- O\n\n")
    with raises(ValueError, "no sentences"):
        kt.datasets.read_conll(tmp_path / "empty.txt")
    path.write_text(CONLL)
    with raises(ValueError, "tags ['B-LOC'", "not in tag_names"):
        kt.datasets.read_conll(path, tag_names=["O", "B-ORG", "B-MISC", "B-PER", "I-PER"])


def test_tagged_data_names_the_mismatched_sentence():
    with raises(ValueError, "Sentence 1 has 2 words but 3 tags"):
        kt.datasets.TaggedData([["a"], ["b", "c"]], [["O"], ["O", "O", "O"]])
    with raises(ValueError, "words[0][1]", "int", "source=x"):
        kt.datasets.TaggedData([["a", 3]], source="x")
    with raises(ValueError, "wrap it in a list"):
        kt.datasets.TaggedData(["EU", "rejects"])


# ------------------------------------------------------------ the model


def test_fit_learns_and_evaluate_reports_entity_f1(trained):
    model, history = trained
    assert history.history["loss"][-1] < history.history["loss"][0] / 4
    x, y = _data(8, seed=1)
    scores = model.evaluate(x, y, return_dict=True, verbose=0)
    assert set(scores) == {"loss", "accuracy", "entity_f1"}
    assert scores["accuracy"] > 0.95
    report = model.report(x, y, output_dict=True)
    # No sentence is split into windows here, so both scorers agree.
    assert scores["entity_f1"] == pytest.approx(report["micro avg"]["f1-score"], abs=1e-6)
    assert report["micro avg"]["f1-score"] > 0.9
    assert model.predict_tags([["one", "two", "is", "fun", "film", "movie"]]) == [
        ["B-PER", "I-PER", "O", "O", "B-LOC", "I-LOC"]
    ]
    assert "micro avg" in model.report(kt.datasets.TaggedData(x, y, TAGS))


def test_predict_returns_word_rows_and_ids_pass_through(trained):
    model, _ = trained
    logits = model.predict([["one", "filming"], [], ["fun"]])
    assert [rows.shape for rows in logits] == [(2, 5), (0, 5), (1, 5)]
    assert model.predict_tags([[]]) == [[]]
    inputs = model.preprocessor.collate(model.preprocessor.tokenize(["one film"]))
    token_logits = model.predict(inputs, verbose=0)
    assert token_logits.shape == (1, 4, 5)
    np.testing.assert_allclose(token_logits[0, 1:3], model.predict([["one", "film"]])[0], atol=1e-5)


def test_predict_entities_offsets(trained, monkeypatch):
    model, _ = trained
    text = "the  one two is a film movie"
    entities = model.predict_entities([text, ""])
    assert entities[1] == []
    assert [(e["text"], e["label"], e["start"], e["end"]) for e in entities[0]] == [
        ("one two", "PER", 5, 12), ("film movie", "LOC", 18, 28),
    ]
    for entity in entities[0]:
        assert set(entity) == {"text", "label", "start", "end", "score"}
        assert text[entity["start"]:entity["end"]] == entity["text"]
        assert 0 < entity["score"] <= 1

    # The offsets, exactly, on tags fixed by hand.
    def fake_predict_tags(words, batch_size=None, return_scores=False):
        tags = [["B-PER", "I-PER", "O", "B-LOC", "I-LOC", "I-LOC", "O"]]
        return tags, [[0.9, 0.7, 0.5, 0.6, 0.8, 1.0, 0.2]]

    monkeypatch.setattr(model, "predict_tags", fake_predict_tags)
    text = "John  Smith went to New-York  City."
    (entities,) = model.predict_entities([text])
    assert entities == [
        {"text": "John  Smith", "label": "PER", "start": 0, "end": 11, "score": pytest.approx(0.8)},
        {"text": "to New-York  City", "label": "LOC", "start": 17, "end": 34, "score": pytest.approx(0.8)},
    ]


def test_predict_entities_on_decomposed_text(trained, monkeypatch):
    model, _ = trained

    def fake_predict_tags(words, batch_size=None, return_scores=False):
        assert words == [["Zu\u0308rich", "is", "nice"]]
        return [["B-LOC", "O", "O"]], [[0.9, 0.5, 0.5]]

    monkeypatch.setattr(model, "predict_tags", fake_predict_tags)
    (entities,) = model.predict_entities(["Zu\u0308rich is nice"])
    assert [(e["text"], e["label"], e["start"], e["end"]) for e in entities] == [("Zu\u0308rich", "LOC", 0, 7)]


def test_numpy_tag_arrays_are_tag_lists(bert_preset):
    model = _model(bert_preset)
    x = [["one", "film"], ["two", "movie"]]
    model.fit(x, [np.array([1, 3]), np.array([2, 4])], epochs=1, verbose=0)
    model.fit(x, np.array([[1, 3], [2, 4]]), epochs=1, verbose=0)
    model.fit(x, [np.array(["B-PER", "B-LOC"]), ["I-PER", "I-LOC"]], epochs=1, verbose=0)
    assert "accuracy" in model.evaluate(x, [np.array([1, 3]), np.array([2, 4])], return_dict=True, verbose=0)
    with raises(ValueError, "y[0]", "0..4"):
        model.fit(x, [np.array([1.5, 3.0]), np.array([2, 4])], verbose=0)


def test_raw_sentences_are_pointed_to_word_splitting(bert_preset):
    model = _model(bert_preset)
    for call in (
        lambda: model.predict_tags(["good film", "bad plot"]),
        lambda: model.predict(["good film"]),
        lambda: model.fit(["good film"], [["O", "O"]], verbose=0),
    ):
        with pytest.raises(ValueError) as error:
            call()
        message = str(error.value)
        assert "'good film'" in message and "sentence.split()" in message
        assert "kt.tagging.split_words" in message and "predict_entities" in message
        assert "wrap it in a list" not in message


def test_validation_data_as_tuple_or_tagged_data(bert_preset):
    model = _model(bert_preset)
    x, y = _data(6)
    history = model.fit(x, y, validation_data=(x, y), epochs=1, verbose=0)
    assert {"val_loss", "val_entity_f1", "val_accuracy"} <= set(history.history)
    history = model.fit(kt.datasets.TaggedData(x, y, TAGS), validation_data=kt.datasets.TaggedData(x, y), epochs=1, verbose=0)
    assert "val_entity_f1" in history.history


def test_frozen_fit_trains_only_the_head_and_unfreeze_keeps_the_pooler_frozen(bert_preset):
    model = _model(bert_preset)
    before = {v.path: v.numpy().copy() for v in model.backbone.weights}
    x, y = _data(6)
    model.fit(x, y, epochs=1, verbose=0)
    assert all(np.array_equal(v.numpy(), before[v.path]) for v in model.backbone.weights)
    kt.unfreeze(model, top=1)
    pooler = [layer for layer in model.backbone.layers if layer.name == "pooled_dense"]
    assert pooler and not pooler[0].trainable
    assert model.backbone.trainable_weights


@pytest.mark.parametrize("family", ["bert", "gpt2"])
def test_save_and_load_round_trip(family, request, tmp_path):
    preset = request.getfixturevalue(f"{family}_preset")
    model = _model(preset, tag_scheme="IOB2", freeze=1, hidden_units=(8,))
    x, y = _data(6)
    model.fit(x, y, epochs=1, verbose=0)
    path = tmp_path / "tagger.keras"
    model.save(path)
    loaded = kt.load_model(path)
    assert isinstance(loaded, kt.TokenClassifier)
    assert (loaded.tag_names, loaded.tag_scheme, loaded.num_tags, loaded.hidden_units) == (TAGS, "IOB2", 5, (8,))
    for a, b in zip(model.predict(x), loaded.predict(x)):
        np.testing.assert_allclose(a, b, atol=1e-5)
    assert loaded.predict_tags(x) == model.predict_tags(x)
    assert kt.frozen_state(loaded) == kt.frozen_state(model)
    # The compiled metrics come back too.
    assert set(loaded.evaluate(x, y, return_dict=True, verbose=0)) == {"loss", "accuracy", "entity_f1"}


def test_part_of_speech_tags_without_a_scheme(bert_preset):
    tags = ["DT", "NN", "VBZ", "JJ"]
    model = _model(bert_preset, tag_names=tags, tag_scheme=None)
    assert [type(m).__name__ for m in model.default_metrics()] == ["TokenAccuracy"]
    model.fit([["the", "film", "is", "good"]], [["DT", "NN", "VBZ", "JJ"]], epochs=1, verbose=0)
    assert all(t in tags for t in model.predict_tags([["the", "plot"]])[0])
    with raises(ValueError, "tag_scheme=None", "predict_tags"):
        model.predict_entities(["the film"])
    # Integer tag ids work without names.
    unnamed = _model(bert_preset, tag_names=None, num_tags=3, tag_scheme=None)
    unnamed.fit([["the", "film"]], [[0, 2]], epochs=1, verbose=0)
    with raises(ValueError, "predict_tags needs the tag names"):
        unnamed.predict_tags([["the"]])


# ------------------------------------------------------------ errors


def test_bad_tags_name_the_example(bert_preset):
    model = _model(bert_preset)
    with raises(ValueError, "Sentence 1 has 2 words but 1 tag "):
        model.fit([["one"], ["two", "film"]], [["B-PER"], ["I-PER"]], verbose=0)
    with raises(ValueError, "Unknown tag 'B-ORG'", "y[1]", "tag_names"):
        model.fit([["one"], ["film"]], [["B-PER"], ["B-ORG"]], verbose=0)
    with raises(ValueError, "y[0]", "0..4"):
        model.fit([["one"]], [[7]], verbose=0)
    with raises(ValueError, "2 sentences but 1 tag list in"):
        model.fit([["one"], ["film"]], [["B-PER"]], verbose=0)
    with raises(ValueError, "x[0]", "string 'one'", "wrap it in a list"):
        model.fit(["one", "film"], [["B-PER"], ["B-LOC"]], verbose=0)
    with raises(ValueError, "no labels"):
        model.fit([["one"]], verbose=0)
    with raises(ValueError, "`evaluate` needs the true tags"):
        model.evaluate(kt.datasets.TaggedData([["one"]]), verbose=0)
    with raises(ValueError, "tags ['B-ORG']", "does not know"):
        model.evaluate(kt.datasets.TaggedData([["one"]], [["B-ORG"]]), verbose=0)
    with raises(ValueError, "single string", "Wrap it"):
        model.predict_entities("John lives in Paris.")
    with raises(ValueError, "report", "true tags"):
        model.report([["one"]])


@pytest.mark.parametrize("scheme", ["BILOU", "iob", 3])
def test_unknown_tag_scheme(tiny, scheme):
    with raises(ValueError, "Unknown tag scheme", "IOB2", "BIOES"):
        kt.TokenClassifier(tiny[0], tag_names=TAGS, tag_scheme=scheme, compile=False)


def test_tag_names_must_fit_the_scheme(tiny):
    backbone, _ = tiny
    with raises(ValueError, "'E-PER' is not an IOB2 tag", "tag_scheme='BIOES'"):
        kt.TokenClassifier(backbone, tag_names=["O", "B-PER", "E-PER"], compile=False)
    with raises(ValueError, "no 'O' tag", "tag_scheme=None"):
        kt.TokenClassifier(backbone, tag_names=["B-PER", "I-PER"], compile=False)
    with raises(ValueError, "'NN' is not a BIOES tag", "tag_scheme=None"):
        kt.TokenClassifier(backbone, tag_names=["O", "NN"], tag_scheme="BIOES", compile=False)
    with raises(ValueError, "num_tags=4 but 5 tag names"):
        kt.TokenClassifier(backbone, num_tags=4, tag_names=TAGS, compile=False)
    with raises(ValueError, "duplicates"):
        kt.TokenClassifier(backbone, tag_names=["O", "O", "B-PER"], compile=False)
    with raises(ValueError, "num_tags", "at least 2"):
        kt.TokenClassifier(backbone, tag_names=None, compile=False)
    model = kt.TokenClassifier(backbone, tag_names=["O", "S-PER", "B-PER", "E-PER"], tag_scheme="iobes")
    assert model.tag_scheme == "BIOES"


def test_config_mirrors_init(tiny):
    backbone, preprocessor = tiny
    model = kt.TokenClassifier(
        backbone, preprocessor=preprocessor, tag_names=TAGS, tag_scheme="IOB1", hidden_units=4, dropout=0.2
    )
    config = model.get_config()
    assert {k: config[k] for k in ("num_tags", "tag_names", "tag_scheme", "hidden_units", "dropout")} == {
        "num_tags": 5, "tag_names": TAGS, "tag_scheme": "IOB1", "hidden_units": [4], "dropout": 0.2,
    }
    clone = kt.TokenClassifier.from_config(config)
    assert (clone.tag_names, clone.tag_scheme, clone.hidden_units) == (TAGS, "IOB1", (4,))


# ------------------------------------------------------------ the example


def test_conll_example_smoke(tmp_path, bert_preset):
    import pathlib
    import subprocess
    import sys

    root = pathlib.Path(__file__).resolve().parents[1]
    x, y = _data(12)
    lines = []
    for sentence, tags in zip(x, y):
        lines += [f"{w} NN B-NP {t}" for w, t in zip(sentence, tags)] + [""]
    for name in ("train.txt", "valid.txt"):
        (tmp_path / name).write_text("-DOCSTART- -X- -X- O\n\n" + "\n".join(lines))
    result = subprocess.run(
        [
            sys.executable, str(root / "examples" / "conll_ner.py"),
            "--data", str(tmp_path), "--preset", bert_preset, "--max-train", "8",
            "--max-dev", "4", "--sequence-length", "16", "--frozen-epochs", "1",
            "--fine-tune-top", "1", "--fine-tune-epochs", "1",
        ],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
        env={"KERAS_HOME": str(tmp_path / "keras_home"), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "| frozen backbone, head only, 1 epochs |" in result.stdout
    assert "| head + top 1 blocks, 1 epochs |" in result.stdout
    assert "micro avg" in result.stdout
