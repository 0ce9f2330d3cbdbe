"""Property-based tests: any text, however odd, tokenizes and batches
correctly for the BERT-style and GPT-2-style tiny presets.

Texts are drawn from: arbitrary Unicode, bytes decoded with
`errors="replace"` and `errors="surrogateescape"` (lone surrogates), control
characters, emoji, right-to-left scripts, whitespace only, the empty
string, far more than `sequence_length` tokens, and special tokens typed
literally (`[CLS]`, `<|endoftext|>`: they must stay plain text, or user
text could inject control tokens). Properties: no crash; every packed
example fits `sequence_length`; special tokens only where the packer puts
them; `collate` pads to the longest example with a padding mask that is
True exactly on the packed tokens; `TextBatches` serves every example once,
with its label.
"""

import functools

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import keras_transfer as kt

SEQUENCE_LENGTH = 16

TRICKY = [
    "", " ", "\t\n\r ", "\x00", "\x07\x1b[31m", "\x85", "\u200b", "\u202e", "\ufeff",
    "😀", "👩‍👩‍👧", "مرحبا بالعالم", "שלום", "日本語のテキスト", "naïve café",
    "[CLS]", "[SEP]", "[PAD]", "[MASK]", "[UNK]", "<|endoftext|>", "<|endoftext|><|endoftext|>",
    "good film", "the worst film ever", "a " * 200,
]

fragments = st.one_of(
    st.sampled_from(TRICKY),
    st.text(max_size=30),
    st.binary(max_size=30).map(lambda b: b.decode("utf-8", "replace")),
    st.binary(max_size=30).map(lambda b: b.decode("utf-8", "surrogateescape")),
    st.text(alphabet=st.characters(min_codepoint=0, max_codepoint=0x1F), max_size=10),
)
texts = st.lists(fragments, min_size=1, max_size=6).map("".join)
batches_of_texts = st.lists(texts, min_size=1, max_size=5)
batches_of_pairs = st.lists(st.tuples(texts, texts), min_size=1, max_size=4)

PROPERTY_SETTINGS = settings(
    max_examples=40,
    deadline=None,
    derandomize=True,  # the same examples every run: a failure reproduces
    database=None,  # so nothing is written into the working tree
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@functools.lru_cache(maxsize=None)
def _preprocessor(preset):
    _, preprocessor = kt.load_backbone(preset, sequence_length=SEQUENCE_LENGTH)
    return preprocessor


def _frame(preprocessor, pair):
    """(ids at the start, ids between the texts, ids at the end) the packer adds."""
    family, tok = preprocessor.family, preprocessor.tokenizer

    def ids(attribute):
        value = getattr(tok, attribute, None) if attribute else None
        return [] if value is None else [int(value)]

    start = ids(family.start)
    sep = ids(family.sep)
    end = ids(getattr(family, "end", None))
    middle = sep * family.pair_sep_repeat if pair else []
    return start, middle, sep + end


def _special_ids(preprocessor):
    tok = preprocessor.tokenizer
    ids = {tok.token_to_id(t) for t in tok.special_tokens}
    return {int(i) for i in ids if i is not None}


def _check_packed(preprocessor, packed, pair):
    start, middle, end = _frame(preprocessor, pair)
    special = _special_ids(preprocessor)
    for tokens, segments in packed:
        assert tokens.dtype == np.int32 and segments.dtype == np.int32
        assert len(tokens) == len(segments)
        assert len(start) + len(middle) + len(end) <= len(tokens) <= SEQUENCE_LENGTH
        assert tokens[: len(start)].tolist() == start
        assert tokens[len(tokens) - len(end) :].tolist() == end
        # Special tokens only where the packer put them: typed "[CLS]" or
        # "<|endoftext|>" must not become control tokens.
        n_special = sum(int(t) in special for t in tokens)
        assert n_special == len(start) + len(middle) + len(end), tokens.tolist()
        assert set(np.unique(segments).tolist()) <= ({0, 1} if pair else {0})


def _check_batch(preprocessor, packed, batch):
    n, longest = len(packed), max(len(t) for t, _ in packed)
    assert batch["token_ids"].shape == (n, longest)
    assert batch["padding_mask"].shape == (n, longest)
    assert batch["padding_mask"].dtype == bool
    assert ("segment_ids" in batch) == preprocessor.family.segment_ids
    for row, (tokens, segments) in enumerate(packed):
        mask = batch["padding_mask"][row]
        assert mask[: len(tokens)].all() and not mask[len(tokens) :].any()
        np.testing.assert_array_equal(batch["token_ids"][row, : len(tokens)], tokens)
        if "segment_ids" in batch:
            np.testing.assert_array_equal(batch["segment_ids"][row, : len(tokens)], segments)


@PROPERTY_SETTINGS
@given(batch=batches_of_texts)
def test_any_texts_tokenize_and_collate(preset, batch):
    preprocessor = _preprocessor(preset)
    packed = preprocessor.tokenize(batch)
    assert len(packed) == len(batch)
    _check_packed(preprocessor, packed, pair=False)
    collated = preprocessor.collate(packed)
    _check_batch(preprocessor, packed, collated)
    called = preprocessor(batch)
    for key in collated:
        np.testing.assert_array_equal(called[key], collated[key])


@PROPERTY_SETTINGS
@given(batch=batches_of_pairs)
def test_any_text_pairs_tokenize_and_collate(preset, batch):
    preprocessor = _preprocessor(preset)
    packed = preprocessor.tokenize(batch)
    _check_packed(preprocessor, packed, pair=True)
    _check_batch(preprocessor, packed, preprocessor.collate(packed))


@PROPERTY_SETTINGS
@given(
    batch=st.lists(texts, min_size=1, max_size=12),
    batch_size=st.integers(1, 5),
    shuffle=st.booleans(),
    bucketing=st.booleans(),
    seed=st.integers(0, 2**31 - 1),
)
def test_text_batches_serve_every_example_once(preset, batch, batch_size, shuffle, bucketing, seed):
    preprocessor = _preprocessor(preset)
    labels = np.arange(len(batch))
    data = kt.TextBatches(preprocessor, batch, labels, batch_size, shuffle, bucketing, seed=seed)
    for epoch in range(2):
        seen = []
        for index in range(len(data)):
            x, y = data[index]
            assert x["token_ids"].shape[0] == len(y) <= batch_size
            assert x["token_ids"].shape[1] <= SEQUENCE_LENGTH
            _check_batch(preprocessor, [data.packed[i] for i in y], x)
            seen.extend(y.tolist())
        assert sorted(seen) == list(range(len(batch)))
        data.on_epoch_end()


@pytest.mark.parametrize("text", ["good <|endoftext|> film", "[CLS] good [SEP]", "<|endoftext|>", "[SEP]"])
def test_typed_special_tokens_stay_text(preset, text):
    """The classic injection: special tokens typed in user text."""
    preprocessor = _preprocessor(preset)
    [(tokens, _)] = preprocessor.tokenize([text])
    start, _, end = _frame(preprocessor, pair=False)
    body = tokens[len(start) : len(tokens) - len(end)].tolist()
    assert len(body) > 0
    assert not set(body) & _special_ids(preprocessor), (text, tokens.tolist())


def test_lone_surrogates_become_replacement_characters(preset):
    preprocessor = _preprocessor(preset)
    raw = "café, naïve".encode("latin-1").decode("utf-8", "surrogateescape")  # "caf\udce9, na\udcefve"
    replaced = raw.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    [(a, _)] = preprocessor.tokenize([raw])
    [(b, _)] = preprocessor.tokenize([replaced])
    np.testing.assert_array_equal(a, b)
    assert "\ufffd" in replaced
