"""Word-level tagging on sub-word models: alignment, windows, tag schemes.

A tagger labels words, a transformer reads sub-word tokens. This module
bridges the two for `kt.TokenClassifier`:

- `word_token_ids`: each word is tokenized on its own, with the space that
  precedes it in the sentence (" Paris"), so that byte-level BPE
  vocabularies (GPT-2, RoBERTa) see the same tokens as in running text;
  WordPiece ignores the space, and SentencePiece models that add their own
  "▁" to a word (Llama, Mistral) get the word without it. Each distinct
  word is tokenized once.
- `TaggedBatches`: a `kt.TextBatches` of tagged sentences. The FIRST
  sub-token of each word carries the word's tag; the other sub-tokens,
  the special tokens and the padding carry `-100`, which the loss
  (`SparseCategoricalCrossentropy(ignore_class=-100)`) and the metrics
  skip. A sentence longer than the model's `sequence_length` is split into
  windows of whole words, so every word is trained on and predicted (with
  less context at a window's edges); only a single word longer than the
  whole budget loses sub-tokens, never its first.
- `split_words`: raw text into words with character offsets, for
  `predict_entities`.
- `convert_tags`, `entities_to_tags`, `check_tag_names`: the IOB1, IOB2
  and BIOES schemes.
"""

import functools
import re
import sys
import unicodedata

import numpy as np

from keras_transfer.batching import TextBatches
from keras_transfer.metrics.entities import IGNORE_CLASS, check_scheme, get_entities, split_tag


@functools.lru_cache(maxsize=None)
def _word_pattern():
    r"""The pattern of a word (built on first use: listing the marks takes 0.2 s).

    A word: letters/digits with inner hyphens, apostrophes or periods
    between them ("state-of-the-art", "don't", "U.S", "3.5"), or any other
    single non-space character (punctuation). Combining marks (Unicode
    category M: the accent of a decomposed "e\u0301", Devanagari vowel
    signs), which `\w` does not match, belong to the word they follow.
    """
    marks, start = [], None
    for code in range(sys.maxunicode + 2):
        is_mark = code <= sys.maxunicode and unicodedata.category(chr(code)).startswith("M")
        if is_mark and start is None:
            start = code
        elif not is_mark and start is not None:
            marks.append(f"\\U{start:08x}-\\U{code - 1:08x}")
            start = None
    mark = "".join(marks)
    letter = f"[\\w{mark}]"
    return re.compile(f"{letter}+(?:[-'’.]{letter}+)*|[^\\w\\s][{mark}]*")


def split_words(text):
    """Splits raw text into words, keeping their character offsets.

    Words are runs of letters and digits (joined by inner `-`, `'` or `.`),
    and each other non-space character on its own, close to CoNLL-2003's
    tokenization: `"Paris."` gives `"Paris"` and `"."`. Combining marks
    stay with their word, so decomposed (NFD) text splits as composed text
    does: `"Zu\\u0308rich"` is one word.

    Args:
        text: a string.

    Returns:
        A list of `(word, start, end)` with `text[start:end] == word`.

    Example:
    ```python
    kt.tagging.split_words("John lives in Paris.")
    # [('John', 0, 4), ('lives', 5, 10), ('in', 11, 13), ('Paris', 14, 19), ('.', 19, 20)]
    ```
    """
    if not isinstance(text, str):
        raise ValueError(f"Expected a string. Received {text!r} of type {type(text).__name__}.")
    return [(m.group(), m.start(), m.end()) for m in _word_pattern().finditer(text)]


# Tag schemes ------------------------------------------------------------------

_SCHEME_PREFIXES = {"IOB1": ("B", "I"), "IOB2": ("B", "I"), "BIOES": ("B", "I", "E", "S")}


def check_tag_names(tag_names, scheme):
    """Checks that every tag name is `O` or `<prefix>-<label>` of `scheme`."""
    scheme = check_scheme(scheme)
    prefixes = _SCHEME_PREFIXES[scheme]
    article = "an" if scheme.startswith("I") else "a"  # an IOB2 tag, a BIOES tag
    for name in tag_names:
        if name == "O":
            continue
        if not (len(name) > 2 and name[1] == "-" and name[0] in prefixes):
            hint = ""
            if len(name) > 2 and name[1] == "-" and name[0] in "ES":
                hint = " It looks like a BIOES tag: pass tag_scheme='BIOES'."
            raise ValueError(
                f"Tag {name!r} is not {article} {scheme} tag: expected 'O' or one of "
                f"{', '.join(p + '-<type>' for p in prefixes)}.{hint} For tags "
                "without entities (part of speech, chunks), pass tag_scheme=None."
            )
    if "O" not in tag_names:
        raise ValueError(
            f"The tag names {list(tag_names)} have no 'O' tag, which "
            f"{article} {scheme} tagger needs for words outside entities. Add 'O', or pass "
            "tag_scheme=None for tags without entities."
        )
    return scheme


def entities_to_tags(entities, length, scheme="IOB2"):
    """Writes `(label, start, end)` entities as a tag sequence of `scheme`.

    Args:
        entities: non-overlapping `(label, start, end)` spans, `end` exclusive.
        length: the number of words.
        scheme: `"IOB1"`, `"IOB2"` or `"BIOES"`. Defaults to `"IOB2"`.
    """
    scheme = check_scheme(scheme)
    tags = ["O"] * length
    previous = None  # (label, end) of the previous entity
    for label, start, end in sorted(entities, key=lambda e: e[1]):
        if scheme == "BIOES" and end - start == 1:
            tags[start] = f"S-{label}"
        else:
            for i in range(start, end):
                tags[i] = f"I-{label}"
            if scheme == "IOB2" or scheme == "BIOES":
                tags[start] = f"B-{label}"
            elif previous == (label, start):  # IOB1: B- only right after the same type
                tags[start] = f"B-{label}"
            if scheme == "BIOES":
                tags[end - 1] = f"E-{label}"
        previous = (label, end)
    return tags


def convert_tags(tags, source, target):
    """Rewrites tag sequences from one scheme to another.

    Entities are read the lenient (conlleval) way, so a malformed sequence
    (an `I-PER` after `O` in IOB2) comes out well formed.

    Args:
        tags: a tag sequence, or a list of them.
        source: the scheme of `tags`.
        target: the scheme to write.

    Example:
    ```python
    kt.tagging.convert_tags(["I-PER", "I-PER", "O", "I-LOC"], "IOB1", "IOB2")
    # ['B-PER', 'I-PER', 'O', 'B-LOC']
    kt.tagging.convert_tags(["B-PER", "I-PER", "B-LOC"], "IOB2", "BIOES")
    # ['B-PER', 'E-PER', 'S-LOC']
    ```
    """
    check_scheme(source)
    target = check_scheme(target)
    tags = list(tags)
    if tags and not isinstance(tags[0], str):
        return [convert_tags(sequence, source, target) for sequence in tags]
    return entities_to_tags(get_entities(tags, source), len(tags), target)


def entity_label(tag):
    """The entity type of a tag: `"B-PER"` → `"PER"`; `"O"` → `""`."""
    return split_tag(tag)[1]


# Alignment ------------------------------------------------------------------------


def _fallback_ids(preprocessor):
    """Ids for a word the tokenizer turns into nothing (a control character)."""
    tokenizer = preprocessor.tokenizer
    oov = getattr(tokenizer, "oov_token", None)
    if oov is not None:
        return np.asarray([tokenizer.token_to_id(oov)], dtype="int32")
    for text in (" ", "?"):
        ids = preprocessor.token_ids([text])[0]
        if len(ids):
            return np.asarray(ids[:1], dtype="int32")
    raise ValueError("The tokenizer turns every fallback text into no tokens.")


def _word_prefix(preprocessor):
    """What goes before every word but the first so that each word gets the
    tokens it has in running text: `" "` or `""`.

    Byte-level BPE folds the space into the word's token (" Paris" is
    "ĠParis") and WordPiece ignores it, so `" "`. A SentencePiece model
    that adds a dummy prefix and keeps extra whitespace (Llama, Mistral)
    already reads "Paris" as "▁Paris", and " Paris" as "▁", "▁Paris": the
    space would give every word a first sub-token "▁" that says nothing
    about the word (and, in a left-to-right model, has not seen it yet).
    The tokenizer itself tells which: "a a" must equal the two words'
    tokens end to end.
    """
    first, spaced, both = (ids.tolist() for ids in preprocessor.token_ids(["a", " a", "a a"]))
    if both != first + spaced and both == first + first:
        return ""
    return " "


def word_token_ids(preprocessor, sentences):
    """The sub-token ids of every word, each word tokenized once.

    Returns:
        For each sentence, a list with one int32 id array per word (never
        empty: a word that tokenizes to nothing gets the unknown token).
    """
    prefix = _word_prefix(preprocessor)
    keys = {}
    for sentence in sentences:
        for i, word in enumerate(sentence):
            keys.setdefault(word if i == 0 else prefix + word, None)
    unique = list(keys)
    table = dict(zip(unique, preprocessor.token_ids(unique))) if unique else {}
    fallback = None
    for key, ids in table.items():
        if len(ids) == 0:
            if fallback is None:
                fallback = _fallback_ids(preprocessor)
            table[key] = fallback
    return [[table[w if i == 0 else prefix + w] for i, w in enumerate(s)] for s in sentences]


def _windows(word_ids, budget):
    """Splits one sentence into `(first_word, end_word)` windows of whole words
    whose sub-tokens fit in `budget`."""
    windows, start, used = [], 0, 0
    for i, ids in enumerate(word_ids):
        size = min(len(ids), budget)
        if i > start and used + size > budget:
            windows.append((start, i))
            start, used = i, 0
        used += size
    windows.append((start, len(word_ids)))
    return windows


class _Prepacked:
    """Stands in for a preprocessor whose `tokenize` has been done already."""

    def __init__(self, packed):
        self.packed = packed

    def tokenize(self, texts):
        return self.packed


class TaggedBatches(TextBatches):
    """A `TextBatches` of word-tagged sentences for a token classifier.

    Each example is a window of whole words of a sentence (one window unless
    the sentence is longer than `sequence_length`). Batches are
    `(inputs, labels)` with labels of shape `(batch, length)`: the tag id
    on the first sub-token of each word, `-100` everywhere else.

    Args:
        preprocessor: a `kt.TextPreprocessor`.
        sentences: a list of word lists.
        tag_ids: one int array of tag ids per sentence, or `None`.
        batch_size: windows per batch. Defaults to `32`.
        shuffle: reshuffle every epoch. Defaults to `False`.
        bucketing: batch windows of similar length together. Defaults to
            `True`.
        seed: seed of the shuffling. Defaults to `None`.
    """

    def __init__(
        self,
        preprocessor,
        sentences,
        tag_ids=None,
        batch_size=32,
        shuffle=False,
        bucketing=True,
        seed=None,
        **kwargs,
    ):
        if len(sentences) == 0:
            raise ValueError("The dataset is empty: there is no sentence to batch.")
        # The family's own single-text packing: XLNet ends with `<cls>` in
        # segment 2 (`a <sep> <cls>`), as `TextPreprocessor` packs it.
        start, _, sep, closing = preprocessor._specials(pairs=False)
        end_segments = np.full(len(closing), preprocessor.family.end_segment_id, "int32")
        budget = preprocessor.sequence_length - len(start) - len(sep) - len(closing)
        packed, self.first_positions, self.windows = [], [], []
        labels = [] if tag_ids is not None else None
        for index, word_ids in enumerate(word_token_ids(preprocessor, sentences)):
            for first, end in _windows(word_ids, budget):
                pieces = [ids[:budget] for ids in word_ids[first:end]]
                lengths = [len(p) for p in pieces]
                offsets = np.cumsum([0] + lengths[:-1]) + len(start) if pieces else []
                ids = np.concatenate(pieces) if pieces else np.zeros(0, "int32")
                tokens = np.concatenate([start, ids[:budget], sep, closing]).astype("int32")
                segments = np.zeros(len(tokens) - len(closing), "int32")
                packed.append((tokens, np.concatenate([segments, end_segments])))
                self.first_positions.append(np.asarray(offsets, dtype="int64"))
                self.windows.append((index, first, end))
                if labels is not None:
                    labels.append(np.asarray(tag_ids[index][first:end], dtype="int32"))
        # TextBatches does the batching (bucketing, shuffling per epoch); it
        # gets the windows packed already.
        super().__init__(
            _Prepacked(packed),
            list(range(len(packed))),
            None,
            batch_size=batch_size,
            shuffle=shuffle,
            bucketing=bucketing,
            seed=seed,
            **kwargs,
        )
        self.preprocessor = preprocessor
        self.sentences = sentences
        self.labels = labels

    def _positions(self, i, length):
        """The first sub-token positions of window `i` in a batch padded to
        `length`: families padded on the left (XLNet) shift every window
        by its padding."""
        if self.preprocessor.family.padding_side == "left":
            return self.first_positions[i] + (length - len(self.packed[i][0]))
        return self.first_positions[i]

    def __getitem__(self, index):
        rows = self._batches[index]
        x = self.preprocessor.collate([self.packed[i] for i in rows])
        if self.labels is None:
            return (x,)
        y = np.full(x["token_ids"].shape, IGNORE_CLASS, dtype="int32")
        for row, i in enumerate(rows):
            y[row, self._positions(i, y.shape[1])] = self.labels[i]
        return x, y

    def word_outputs(self, predict_batch):
        """Runs `predict_batch` on every batch; returns per-sentence word rows.

        Args:
            predict_batch: a function from an input dictionary to an array of
                shape `(batch, length, ...)`.

        Returns:
            One array of shape `(num_words, ...)` per sentence, in order.
        """
        per_window = [None] * len(self.packed)
        for index in range(len(self)):
            rows = self._batches[index]
            x = self.preprocessor.collate([self.packed[i] for i in rows])
            out = np.asarray(predict_batch(x))
            for row, i in enumerate(rows):
                per_window[i] = out[row, self._positions(i, x["token_ids"].shape[1])]
        outputs = [[] for _ in self.sentences]
        for (sentence, _, _), rows in zip(self.windows, per_window):
            outputs[sentence].append(rows)
        return [np.concatenate(parts, axis=0) for parts in outputs]
