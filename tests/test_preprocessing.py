"""Tests for kt.TextPreprocessor (keras_transfer/preprocessing.py) and
kt.TextBatches (keras_transfer/batching.py)."""

import functools

import keras
import numpy as np
import pytest
from family_models import FAMILY_CLASSES, make_backbone, make_tokenizer
from helpers import BERT_VOCAB, raises
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import keras_transfer as kt

WORDS = ["one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten"]
CLS, SEP, PAD, UNK = (BERT_VOCAB.index(t) for t in ("[CLS]", "[SEP]", "[PAD]", "[UNK]"))


def ids(*words):
    return [BERT_VOCAB.index(w) for w in words]


@pytest.fixture(scope="module")
def bert(bert_preset):
    """(backbone, preprocessor) of the tiny BERT, loaded once."""
    return kt.load_backbone(bert_preset)


@pytest.fixture(scope="module")
def gpt2(gpt2_preset):
    return kt.load_backbone(gpt2_preset)


def bert_preprocessor(bert, **kwargs):
    """A fresh preprocessor over the tiny BERT's tokenizer."""
    tokenizer = bert[1].tokenizer
    return kt.TextPreprocessor(tokenizer, "BertBackbone", **kwargs)


def real(batch, row):
    """The unpadded token ids of one row."""
    return batch["token_ids"][row][batch["padding_mask"][row]].tolist()


# ------------------------------------------------------------ packing


def test_bert_single_text_packing(bert):
    _, preprocessor = bert
    batch = preprocessor(["Good film!", "awful"])
    assert set(batch) == {"token_ids", "padding_mask", "segment_ids"}
    assert batch["token_ids"].dtype == np.int32
    assert batch["padding_mask"].dtype == bool
    assert batch["token_ids"].tolist() == [
        [CLS, *ids("good", "film", "!"), SEP],
        [CLS, *ids("awful"), SEP, PAD, PAD],
    ]
    assert batch["padding_mask"].tolist() == [[True] * 5, [True] * 3 + [False] * 2]
    assert batch["segment_ids"].tolist() == [[0] * 5, [0] * 5]


def test_bert_pair_packing_with_segment_ids(bert):
    _, preprocessor = bert
    batch = preprocessor([("good film", "bad plot !"), ["awful", "fun"]])
    assert batch["token_ids"].tolist() == [
        [CLS, *ids("good", "film"), SEP, *ids("bad", "plot", "!"), SEP],
        [CLS, *ids("awful"), SEP, *ids("fun"), SEP, PAD, PAD, PAD],
    ]
    assert batch["segment_ids"].tolist() == [
        [0, 0, 0, 0, 1, 1, 1, 1],
        [0, 0, 0, 1, 1, 0, 0, 0],
    ]
    assert batch["padding_mask"].sum(axis=1).tolist() == [8, 5]


def test_gpt2_packing_with_start_and_end_tokens(gpt2):
    _, preprocessor = gpt2
    tokenizer = preprocessor.tokenizer
    texts = ["good film", "an awful , boring movie !"]
    plain = [list(map(int, row)) for row in tokenizer(texts)]
    start, end = tokenizer.start_token_id, tokenizer.end_token_id
    batch = preprocessor(texts)
    assert set(batch) == {"token_ids", "padding_mask"}  # GPT-2 takes no segment ids
    assert real(batch, 0) == [start, *plain[0], end]
    assert real(batch, 1) == [start, *plain[1], end]
    # The merges make whole words: "good", "Ġfilm".
    assert len(plain[0]) == 2
    assert tokenizer.id_to_token(plain[0][1]) == "Ġfilm"


def test_gpt2_pair_packing(gpt2):
    _, preprocessor = gpt2
    tokenizer = preprocessor.tokenizer
    a, b = (list(map(int, row)) for row in tokenizer(["good film", "bad plot"]))
    start, end = tokenizer.start_token_id, tokenizer.end_token_id
    batch = preprocessor([("good film", "bad plot")])
    assert real(batch, 0) == [start, *a, end, *b, end]


def test_tokenize_then_collate_equals_call(bert):
    _, preprocessor = bert
    texts = ["good film", "a really boring plot", "fun"]
    packed = preprocessor.tokenize(texts)
    assert [len(tokens) for tokens, _ in packed] == [4, 6, 3]
    via_stages = preprocessor.collate(packed)
    direct = preprocessor(texts)
    for key in direct:
        np.testing.assert_array_equal(via_stages[key], direct[key])


@pytest.mark.parametrize("texts", [("good", "bad"), np.array(["good", "bad"])])
def test_tuples_and_arrays_of_strings_are_accepted(bert, texts):
    _, preprocessor = bert
    batch = preprocessor(texts)
    assert batch["token_ids"].tolist() == [[CLS, *ids("good"), SEP], [CLS, *ids("bad"), SEP]]


@pytest.mark.parametrize(
    "first, second",
    [
        (["good film", "bad plot"], ["fun", "boring"]),  # two columns of two
        (["good film", "bad plot", "fun"], ["a", "the", "story"]),
        (np.array(["good film", "bad plot"]), np.array(["fun", "boring"])),
        (["good film"], np.array(["fun"])),
        ([], []),
    ],
)
def test_a_tuple_of_two_text_columns_is_read_as_pairs(bert, first, second):
    # As TextPairClassifier reads it: (texts_a, texts_b), not a list of pairs.
    _, preprocessor = bert
    pairs = list(zip(list(first), list(second)))
    assert kt.preprocessing.check_texts((first, second)) == pairs
    if pairs:
        for key, value in preprocessor((first, second)).items():
            np.testing.assert_array_equal(value, preprocessor(pairs)[key])
    batch = preprocessor((["good film", "bad plot"], ["fun", "boring"]))
    assert real(batch, 0) == [CLS, *ids("good", "film"), SEP, *ids("fun"), SEP]
    assert real(batch, 1) == [CLS, *ids("bad", "plot"), SEP, *ids("boring"), SEP]


@pytest.mark.parametrize(
    "texts, fragments",
    [
        ((["good", "bad", "fun"], ["a", "b"]), ("two text columns of different lengths (3 and 2)", "one text_b per text_a")),
        ((["good"], []), ("different lengths (1 and 0)",)),
        ((["good", None], ["a", "b"]), ("x[0][1]=None of type NoneType", "two text columns", "str(...)")),
        ((["good", "bad"], np.array([1, 2])), ("x[1][0]=1 of type int",)),
    ],
)
def test_bad_text_columns_are_refused(bert, texts, fragments):
    with raises(ValueError, *fragments):
        bert[1](texts)


def test_empty_string_packs_to_special_tokens_only(bert, gpt2):
    assert bert[1]([""])["token_ids"].tolist() == [[CLS, SEP]]
    tokenizer = gpt2[1].tokenizer
    assert gpt2[1]([""])["token_ids"].tolist() == [[tokenizer.start_token_id, tokenizer.end_token_id]]


# ------------------------------------------------------------ truncation


@pytest.mark.parametrize(
    "truncation, sequence_length, expected",
    [
        ("head", 8, WORDS[:6]),
        ("tail", 8, WORDS[4:]),
        ("head+tail", 8, WORDS[:1] + WORDS[5:]),  # budget 6: 6 // 4 = 1 head token
        ("head+tail", 10, WORDS[:2] + WORDS[4:]),  # budget 8: 2 head, 6 tail
        ("head+tail", 11, WORDS[:2] + WORDS[3:]),  # budget 9: 2 head, 7 tail
        ("head", 12, WORDS),  # exactly fits
        ("tail", 12, WORDS),
        ("head+tail", 12, WORDS),
        ("head+tail", 64, WORDS),
        ("head", 3, WORDS[:1]),
        ("tail", 3, WORDS[-1:]),
        ("head+tail", 3, WORDS[-1:]),  # budget 1: the last token
        ("head+tail", 4, WORDS[:1] + WORDS[-1:]),  # budget 2: one head token at least
        ("head+tail", 5, WORDS[:1] + WORDS[-2:]),  # budget 3
        ("head+tail", 6, WORDS[:1] + WORDS[-3:]),  # budget 4: 4 // 4 = 1
    ],
)
def test_truncation_keeps_the_right_tokens(bert, truncation, sequence_length, expected):
    preprocessor = bert_preprocessor(bert, sequence_length=sequence_length, truncation=truncation)
    batch = preprocessor([" ".join(WORDS)])
    assert batch["token_ids"][0].tolist() == [CLS, *ids(*expected), SEP]


@pytest.mark.parametrize(
    "budget, head, tail",
    [(-5, 0, 0), (-1, 0, 0), (0, 0, 0), (1, 0, 1), (2, 1, 1), (3, 1, 2), (7, 1, 6), (8, 2, 6), (10, 0, 0)],
)
def test_truncate_budgets(budget, head, tail):
    ids = np.arange(10)
    kept = kt.preprocessing.truncate(ids, budget, "head+tail").tolist()
    assert kept == (list(range(head)) + list(range(10 - tail, 10)) if budget < 10 else ids.tolist())
    for truncation in ("head", "tail"):
        assert len(kt.preprocessing.truncate(ids, budget, truncation)) == min(max(budget, 0), 10)


@pytest.mark.parametrize("truncation", ["head", "tail", "head+tail"])
def test_gpt2_truncation_keeps_start_and_end_tokens(gpt2, truncation):
    _, full = gpt2
    tokenizer = full.tokenizer
    preprocessor = kt.TextPreprocessor(tokenizer, "GPT2Backbone", sequence_length=6, truncation=truncation)
    text = "good bad film great awful movie the plot"
    plain = list(map(int, tokenizer([text])[0]))
    assert len(plain) == 8
    tokens = preprocessor([text])["token_ids"][0].tolist()
    kept = {"head": plain[:4], "tail": plain[4:], "head+tail": plain[:1] + plain[5:]}[truncation]
    assert tokens == [tokenizer.start_token_id, *kept, tokenizer.end_token_id]


def test_pair_truncation_trims_the_longer_text(bert):
    preprocessor = bert_preprocessor(bert, sequence_length=9)  # budget 6
    long, short = " ".join(WORDS), "good film"
    batch = preprocessor([(long, short), (short, long), (long, long)])
    assert real(batch, 0) == [CLS, *ids(*WORDS[:4]), SEP, *ids("good", "film"), SEP]
    assert real(batch, 1) == [CLS, *ids("good", "film"), SEP, *ids(*WORDS[:4]), SEP]
    assert real(batch, 2) == [CLS, *ids(*WORDS[:3]), SEP, *ids(*WORDS[:3]), SEP]
    assert batch["segment_ids"][0].tolist() == [0] * 6 + [1] * 3


def test_pair_truncation_tail_keeps_the_ends(bert):
    preprocessor = bert_preprocessor(bert, sequence_length=9, truncation="tail")
    long = " ".join(WORDS)
    batch = preprocessor([(long, "good film")])
    assert real(batch, 0) == [CLS, *ids(*WORDS[-4:]), SEP, *ids("good", "film"), SEP]


def test_pair_with_smallest_sequence_length(bert):
    preprocessor = bert_preprocessor(bert, sequence_length=3)
    batch = preprocessor([("good film", "bad plot")])
    assert real(batch, 0) == [CLS, SEP, SEP]
    assert batch["segment_ids"][0].tolist() == [0, 0, 1]


text_strategy = st.lists(st.sampled_from(WORDS + ["good", "film", "!", ",", "films", "zzz"]), max_size=40).map(" ".join)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    texts=st.lists(st.one_of(text_strategy, st.tuples(text_strategy, text_strategy)), min_size=1, max_size=5),
    sequence_length=st.integers(3, 20),
    truncation=st.sampled_from(["head", "tail", "head+tail"]),
)
def test_packing_invariants(bert, texts, sequence_length, truncation):
    pairs = [t for t in texts if isinstance(t, tuple)]
    texts = pairs or texts  # one kind per batch
    preprocessor = bert_preprocessor(bert, sequence_length=sequence_length, truncation=truncation)
    batch = preprocessor(texts)
    tokens, mask, segments = batch["token_ids"], batch["padding_mask"], batch["segment_ids"]
    lengths = mask.sum(axis=1)
    # Never longer than sequence_length; padded to the batch's longest.
    assert tokens.shape == (len(texts), lengths.max())
    assert tokens.shape[1] <= sequence_length
    for row in range(len(texts)):
        n = lengths[row]
        # The mask is a prefix of real tokens, then padding.
        assert mask[row, :n].all() and not mask[row, n:].any()
        assert (tokens[row, n:] == PAD).all() and (segments[row, n:] == 0).all()
        assert tokens[row, 0] == CLS and tokens[row, n - 1] == SEP
        assert (tokens[row, 1 : n - 1] != PAD).all()
        separators = int((tokens[row, :n] == SEP).sum())
        assert separators == (2 if pairs else 1)
        if not pairs:
            assert not segments[row].any()
        # Texts that fit are kept whole; longer ones fill the budget exactly.
        parts = texts[row] if pairs else (texts[row],)
        whole = sum(len(preprocessor.token_ids([part])[0]) for part in parts) + (3 if pairs else 2)
        assert n == min(whole, sequence_length)


@functools.cache
def family_tokenizer(family):
    return make_tokenizer(family)


def count_special_tokens(tokenizer, backbone_class, pairs):
    """Packed length minus text length, with room to spare."""
    preprocessor = kt.TextPreprocessor(tokenizer, backbone_class, sequence_length=64)
    text = ("good film", "bad plot") if pairs else "good film"
    parts = text if pairs else (text,)
    packed = preprocessor.tokenize([text])[0][0]
    return len(packed) - sum(len(preprocessor.token_ids([part])[0]) for part in parts)


@pytest.mark.parametrize("family", FAMILY_CLASSES)
@settings(max_examples=30, deadline=None)
@given(
    texts=st.lists(st.tuples(text_strategy, text_strategy), min_size=1, max_size=4),
    pairs=st.booleans(),
    sequence_length=st.integers(3, 24),
    truncation=st.sampled_from(["head", "tail", "head+tail"]),
)
# Always tried: long texts at the smallest lengths, where budgets run out.
@example(texts=[(" ".join(WORDS * 4), " ".join(WORDS * 4))], pairs=True, sequence_length=3, truncation="head")
@example(texts=[(" ".join(WORDS * 4), " ".join(WORDS * 4))], pairs=True, sequence_length=4, truncation="head+tail")
@example(texts=[(" ".join(WORDS * 4), "")], pairs=False, sequence_length=3, truncation="tail")
def test_packed_length_never_exceeds_sequence_length(family, texts, pairs, sequence_length, truncation):
    tokenizer, backbone_class = family_tokenizer(family), FAMILY_CLASSES[family]
    texts = texts if pairs else [a for a, _ in texts]
    specials = count_special_tokens(tokenizer, backbone_class, pairs)
    preprocessor = kt.TextPreprocessor(tokenizer, backbone_class, sequence_length, truncation)
    if sequence_length < specials:  # only pairs: every family's single text fits in 3
        assert pairs
        with raises(ValueError, f"sequence_length={sequence_length} cannot hold a text pair", f"at least {specials}"):
            preprocessor(texts)
        return
    batch = preprocessor(texts)
    lengths = batch["padding_mask"].sum(axis=1)
    assert batch["token_ids"].shape[1] == lengths.max() <= sequence_length
    for row, text in enumerate(texts):
        parts = text if pairs else (text,)
        whole = specials + sum(len(preprocessor.token_ids([part])[0]) for part in parts)
        # Texts that fit are kept whole; longer ones fill sequence_length exactly.
        assert lengths[row] == min(whole, sequence_length)


@pytest.mark.parametrize("family", ["roberta", "xlm_roberta"])
def test_roberta_style_pair_at_the_smallest_sequence_length(family):
    # `<s> a </s></s> b </s>`: 4 special tokens. At 3 the text budget went
    # negative and `ids[:-1]` kept the whole text, past the positions.
    tokenizer = family_tokenizer(family)
    long = " ".join(WORDS * 8)
    preprocessor = kt.TextPreprocessor(tokenizer, FAMILY_CLASSES[family], sequence_length=3)
    assert preprocessor([long])["token_ids"].shape == (1, 3)
    with raises(
        ValueError,
        f"sequence_length=3 cannot hold a text pair for the {family} family",
        "has 4 special tokens",
        "at least 4 (6 or more to keep some of each text)",
    ):
        preprocessor([(long, long)])
    backbone = make_backbone(family, tokenizer.vocabulary_size())
    for sequence_length in (4, 5, 6):
        preprocessor = kt.TextPreprocessor(tokenizer, FAMILY_CLASSES[family], sequence_length)
        batch = preprocessor([(long, long), ("good", "")])
        assert batch["token_ids"].shape == (2, sequence_length)
        backbone(batch)  # positions fit
    model = kt.TextPairClassifier(backbone, num_classes=2, preprocessor=preprocessor)
    assert model.predict([(long, long)], verbose=0).shape == (1, 2)


# ------------------------------------------------------------ fast WordPiece


def test_fast_wordpiece_matches_keras_hub_tokenizer(bert):
    _, preprocessor = bert
    texts = [
        "good film",
        "a really boring plot , and awful acting !",
        "films loved acting ending",  # "##s", "##ing" pieces
        "what is this movie ? i hated it .",
        "zzz qqq good",  # unknown words
        "one two three four five six seven eight nine ten",
        "Good FILM, GREAT Story!",  # lowercased
        "  spaced   out\ttabs\nnewline  ",
        "",
    ]
    fast = [ids.tolist() for ids in preprocessor.token_ids(texts)]
    reference = [list(map(int, row)) for row in preprocessor.tokenizer(texts)]
    assert fast == reference
    assert fast[2] == [
        BERT_VOCAB.index(t) for t in ("film", "##s", "loved", "acting", "end", "##ing")
    ]
    assert fast[4][:2] == [UNK, UNK]


def test_token_ids_of_nothing(bert):
    assert bert[1].token_ids([]) == []


# ------------------------------------------------------------ errors


@pytest.mark.parametrize("text", ["good film", ""])
def test_single_string_is_refused(bert, text):
    with raises(ValueError, "got a single string", "Wrap it in a list"):
        bert[1](text)


@pytest.mark.parametrize(
    "texts, position, shown",
    [
        (["good", None], 1, "None of type NoneType"),
        ([3, "good"], 0, "3 of type int"),
        (["good", "bad", 1.5], 2, "1.5 of type float"),
        ([b"good"], 0, "b'good' of type bytes"),
    ],
)
def test_non_string_items_are_refused(bert, texts, position, shown):
    with raises(ValueError, "Expected every text to be a string", f"x[{position}]={shown}"):
        bert[1](texts)


@pytest.mark.parametrize("pair", [("good",), ("a", "b", "c"), ("good", 3), [None, "bad"], ()])
def test_bad_pairs_are_refused(bert, pair):
    with raises(ValueError, "a text pair must be two strings", "list(zip(texts_a, texts_b))"):
        bert[1]([pair])


def test_a_list_of_two_text_columns_says_how_to_pair_them(bert):
    # A list (not a tuple) of two columns reads as a list of pairs.
    with raises(ValueError, "`x[0]` is ['good', 'bad', 'fun']", "(texts_a, texts_b)", "list(zip(texts_a, texts_b))"):
        bert[1]([["good", "bad", "fun"], ["a", "b", "c"]])


@pytest.mark.parametrize(
    "texts",
    [
        ["good", ("good", "bad")],
        [("good", "bad"), "good"],
        [["good", "bad"], "bad", "film"],
    ],
)
def test_mixed_pairs_and_single_texts_are_refused(bert, texts):
    with raises(ValueError, "Mixed single texts and text pairs"):
        bert[1](texts)


def test_empty_batch_has_a_clear_error(bert):
    with pytest.raises(ValueError, match="empty") as info:
        bert[1]([])
    assert "max()" not in str(info.value)


@pytest.mark.parametrize("backbone_class", ["OPTBackbone", "bert", "", "FNetBackbone"])
def test_unknown_backbone_class(bert, backbone_class):
    with raises(ValueError, "does not support backbones", "Supported families", "gpt2 (GPT2Backbone)"):
        kt.TextPreprocessor(bert[1].tokenizer, backbone_class)


@pytest.mark.parametrize(
    "tokenizer_family, backbone_class",
    [
        ("gpt2", "BertBackbone"),  # no [CLS] / [SEP]: would pack the bare text
        ("bert", "QwenBackbone"),  # would end a Qwen text with [SEP]
        ("qwen", "GPT2Backbone"),
        ("roberta", "BertBackbone"),
        ("bert", "RobertaBackbone"),
    ],
)
def test_tokenizer_of_another_family_is_refused(tokenizer_family, backbone_class):
    tokenizer = make_tokenizer(tokenizer_family)
    own = FAMILY_CLASSES[tokenizer_family]
    with raises(
        ValueError,
        f"The tokenizer is a {type(tokenizer).__name__}, of the {tokenizer_family} family",
        f"backbone_class={backbone_class!r}",
        "kt.load_backbone(preset)",
        f"keras_hub.models.{backbone_class.replace('Backbone', 'Tokenizer')}.from_preset(preset)",
        f"backbone_class={own!r}",
    ):
        kt.TextPreprocessor(tokenizer, backbone_class)


def test_tokenizer_without_the_special_tokens_is_refused():
    import keras_hub

    plain = keras_hub.tokenizers.WordPieceTokenizer(vocabulary=BERT_VOCAB, lowercase=True)
    with raises(
        ValueError,
        "The tokenizer (WordPieceTokenizer) has no cls_token_id or sep_token_id",
        "the bert family (backbone_class='BertBackbone')",
        "keras_hub.models.BertTokenizer.from_preset(preset)",
    ):
        kt.TextPreprocessor(plain, "BertBackbone")


@pytest.mark.parametrize(
    "tokenizer_family, backbone_class",
    [("bert", "DistilBertBackbone"), ("electra", "BertBackbone"), ("llama", "MistralBackbone"), ("roberta", "XLMRobertaBackbone")],
)
def test_tokenizer_of_a_family_that_packs_alike_is_accepted(tokenizer_family, backbone_class):
    tokenizer = make_tokenizer(tokenizer_family)
    mixed = kt.TextPreprocessor(tokenizer, backbone_class)([("good film", "bad")])
    own = kt.TextPreprocessor(tokenizer, FAMILY_CLASSES[tokenizer_family])([("good film", "bad")])
    np.testing.assert_array_equal(mixed["token_ids"], own["token_ids"])


@pytest.mark.parametrize("sequence_length", [0, 2, -1, 2.5, "16", None])
def test_preprocessor_bad_sequence_length(bert, sequence_length):
    with raises(ValueError, "`sequence_length`", "at least 3"):
        bert_preprocessor(bert, sequence_length=sequence_length)


@pytest.mark.parametrize("truncation", ["middle", "", None, "tail+head"])
def test_preprocessor_bad_truncation(bert, truncation):
    with raises(ValueError, "Unknown truncation", "Expected one of"):
        bert_preprocessor(bert, truncation=truncation)


# ------------------------------------------------------------ config


@pytest.mark.parametrize("family", ["bert", "gpt2"])
def test_config_round_trip(request, tmp_path, family):
    _, preprocessor = request.getfixturevalue(family)
    preprocessor = kt.TextPreprocessor(
        preprocessor.tokenizer,
        preprocessor.backbone_class,
        sequence_length=20,
        truncation="head+tail",
    )
    config = preprocessor.get_config()
    assert config["backbone_class"] == preprocessor.backbone_class
    assert config["sequence_length"] == 20
    assert config["truncation"] == "head+tail"

    restored = kt.TextPreprocessor.from_config(config)
    assert restored.get_config() == config
    assert type(restored.tokenizer) is type(preprocessor.tokenizer)
    # The vocabulary travels as an asset, as in every KerasHub layer.
    preprocessor.tokenizer.save_assets(str(tmp_path))
    restored.tokenizer.load_assets(str(tmp_path))
    texts = ["good film", "a really boring plot , and awful acting ! " * 3]
    for key, value in preprocessor(texts).items():
        np.testing.assert_array_equal(restored(texts)[key], value)

    # And through Keras' own serialization, by registered name.
    serialized = keras.saving.serialize_keras_object(preprocessor)
    assert serialized["registered_name"] == "keras_transfer>TextPreprocessor"
    again = keras.saving.deserialize_keras_object(serialized)
    assert isinstance(again, kt.TextPreprocessor)
    assert again.get_config() == config


# ------------------------------------------------------------ TextBatches


def test_text_batches_pad_each_batch_to_its_longest(bert):
    _, preprocessor = bert
    texts = ["good", " ".join(WORDS), "good film", "bad"]
    labels = np.array([0, 1, 2, 3])
    batches = kt.TextBatches(preprocessor, texts, labels, batch_size=2)
    assert len(batches) == 2
    x, y = batches[0]
    assert x["token_ids"].shape == (2, 12)
    assert y.tolist() == [0, 1]
    x, y = batches[1]
    assert x["token_ids"].shape == (2, 4)
    assert y.tolist() == [2, 3]
    (x,) = kt.TextBatches(preprocessor, texts, batch_size=3)[1]
    assert x["token_ids"].shape == (1, 3)


def test_bucketed_batches_change_members_between_epochs(bert):
    # Fewer texts than one sorting chunk, every length distinct: sorted by
    # the exact length, every epoch would hold the same batches.
    _, preprocessor = bert
    texts = [" ".join((WORDS * 2)[: 1 + i]) for i in (3, 8, 1, 6, 0, 9, 4, 2, 7, 5)]
    batches = kt.TextBatches(preprocessor, texts, batch_size=2, bucketing=True, shuffle=True, seed=0)
    assert len(set(batches.lengths.tolist())) == len(texts)
    plain = kt.TextBatches(preprocessor, texts, batch_size=2)
    members = []
    for epoch in range(3):
        batches.set_epoch(epoch)
        members.append({frozenset(rows.tolist()) for rows in batches._batches})
        assert batches.padding_share() < plain.padding_share() / 2
    assert members[0] != members[1] and members[1] != members[2]
    batches.set_epoch(1)
    assert {frozenset(rows.tolist()) for rows in batches._batches} == members[1]


def test_text_batches_bucketing_keeps_labels_with_their_texts(bert):
    _, preprocessor = bert
    texts = [" ".join(WORDS[: 1 + (i * 7) % 10]) for i in range(20)]
    labels = np.arange(20)
    plain = kt.TextBatches(preprocessor, texts, labels, batch_size=4)
    bucketed = kt.TextBatches(preprocessor, texts, labels, batch_size=4, bucketing=True, shuffle=True, seed=0)
    assert bucketed.padding_share() < plain.padding_share() / 2
    seen = []
    for index in range(len(bucketed)):
        x, y = bucketed[index]
        for row, label in enumerate(y):
            assert real(x, row) == [CLS, *ids(*texts[label].split()), SEP]
        seen.extend(y.tolist())
    assert sorted(seen) == list(range(20))


def test_text_batches_shuffle_changes_order_each_epoch(bert):
    _, preprocessor = bert
    texts = [f"good {'film ' * i}" for i in range(12)]
    labels = np.arange(12)
    batches = kt.TextBatches(preprocessor, texts, labels, batch_size=3, shuffle=True, seed=1)
    first = np.concatenate([batches[i][1] for i in range(len(batches))])
    batches.on_epoch_end()
    second = np.concatenate([batches[i][1] for i in range(len(batches))])
    assert sorted(first) == sorted(second) == list(range(12))
    assert first.tolist() != second.tolist()
    same_seed = kt.TextBatches(preprocessor, texts, labels, batch_size=3, shuffle=True, seed=1)
    assert np.concatenate([same_seed[i][1] for i in range(len(same_seed))]).tolist() == first.tolist()


@pytest.mark.parametrize("batch_size", [0, -1, 2.0, "4", True, None])
def test_text_batches_bad_batch_size(bert, batch_size):
    with raises(ValueError, "`batch_size`", "positive integer"):
        kt.TextBatches(bert[1], ["good"], batch_size=batch_size)


def test_text_batches_errors(bert):
    with raises(ValueError, "empty"):
        kt.TextBatches(bert[1], [])
    with raises(ValueError, "Got 2 texts but 3 labels"):
        kt.TextBatches(bert[1], ["good", "bad"], np.array([0, 1, 1]))
