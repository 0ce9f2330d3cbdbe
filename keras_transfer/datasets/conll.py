"""Word-level tagged data (NER, POS): `TaggedData` and the CoNLL reader.

`TaggedData` holds sentences as lists of words and, optionally, one tag
per word, with the tag names; `kt.TokenClassifier`'s `fit`, `evaluate`,
`predict_tags` and `report` take it as they take a `TextData`.

`read_conll` reads the CoNLL column format: one word per line with its
columns separated by whitespace (the word first, the tag last by
default), a blank line between sentences, `-DOCSTART-` lines skipped.
CoNLL-2003 (`EU NNP B-NP B-ORG`) reads with the defaults; its POS tags with
`tag_column=1`. Files ending in `.gz` are decompressed on the fly.

Pure Python: importing this module does not import Keras.
"""

import dataclasses
import gzip
import os
from pathlib import Path

import numpy as np

from keras_transfer.datasets.readers import _check_path_type
from keras_transfer.datasets.readers import _decode_error
from keras_transfer.datasets.readers import _text_encoding
from keras_transfer.wording import counted


def _describe(value, limit=60):
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def sort_tags(tags):
    """Tag names in a stable, readable order: `O` first, then by entity type
    and prefix (`B-LOC`, `I-LOC`, `B-PER`, …); other tags alphabetically."""
    order = {"B": 0, "I": 1, "E": 2, "S": 3}

    def key(tag):
        if tag == "O":
            return (0, "", 0, tag)
        if len(tag) > 2 and tag[1] == "-" and tag[0] in order:
            return (1, tag[2:], order[tag[0]], tag)
        return (2, tag, 0, tag)

    return sorted(set(tags), key=key)


@dataclasses.dataclass(repr=False)
class TaggedData:
    """Sentences as word lists, with optional word-level tags.

    Args:
        words: a list of sentences, each a list of `str` words.
        tags: `None` (untagged), or one list of `str` tags per sentence,
            each as long as its sentence. Defaults to `None`.
        tag_names: the tag names; tag id `i` is `tag_names[i]`. Defaults to
            `None`: the tags found in `tags`, `O` first, then by entity type.
        source: where the data came from, for messages. Defaults to
            `"<in memory>"`.

    Example:
    ```python
    data = kt.datasets.TaggedData(
        [["EU", "rejects", "German", "call"]], [["B-ORG", "O", "B-MISC", "O"]]
    )
    data.tag_names  # ['O', 'B-MISC', 'B-ORG']
    ```
    """

    words: list
    tags: list | None = None
    tag_names: list | None = None
    source: str = "<in memory>"

    def __post_init__(self):
        self.source = str(self.source)
        self.words = check_sentences(self.words, "words", self.source)
        if not self.words:
            raise ValueError(
                f"expected at least one sentence, but the source is empty "
                f"(source={self.source}). Check the path or filter that produced it."
            )
        if self.tags is not None:
            self.tags = check_tags(self.words, self.tags, "tags", self.source)
            found = sort_tags(tag for sentence in self.tags for tag in sentence)
            if self.tag_names is None:
                self.tag_names = found
        if self.tag_names is not None:
            if isinstance(self.tag_names, str):
                raise ValueError("expected `tag_names` to be a list of str, got a single string.")
            self.tag_names = [str(name) for name in self.tag_names]
            if len(set(self.tag_names)) != len(self.tag_names):
                raise ValueError(f"`tag_names` has duplicates: {self.tag_names}.")
            if self.tags is not None:
                unknown = sorted(set(found) - set(self.tag_names))
                if unknown:
                    raise ValueError(
                        f"tags {unknown[:5]} are not in tag_names {self.tag_names} "
                        f"(source={self.source}). Add them to tag_names."
                    )

    def __len__(self):
        return len(self.words)

    def __repr__(self):
        count = len(self.tag_names) if self.tag_names else 0
        tagged = f", {counted(count, 'tag name')}" if count else ""
        kind = "tagged" if self.tags is not None else "untagged"
        words = sum(len(sentence) for sentence in self.words)
        sentences = len(self.words)
        return (
            f"TaggedData({counted(sentences, kind + ' sentence')}, "
            f"{counted(words, 'word')}{tagged}, source={self.source})"
        )

    def take(self, n):
        """The first `n` sentences, as a new `TaggedData` with the same tag names."""
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"Expected a positive integer. Received: n={n!r}")
        return TaggedData(
            self.words[:n],
            None if self.tags is None else self.tags[:n],
            self.tag_names,
            self.source,
        )


def check_sentences(words, name="x", source=None):
    """Validates a list of sentences, each a list of `str` words."""
    where = f" (source={source})" if source else ""
    if isinstance(words, str) or not isinstance(words, (list, tuple)):
        raise ValueError(
            f"Expected `{name}` to be a list of sentences, each a list of "
            f"words. Received {_describe(words)}{where}. For raw text, use "
            "`model.predict_entities([...])`."
        )
    words = list(words)
    if words and isinstance(words[0], str):
        raise ValueError(
            f"Expected `{name}` to be a list of sentences, each a list of "
            f"words, but `{name}[0]` is the string {words[0]!r}{where}. For one "
            f"sentence, wrap it in a list: [[{words[0]!r}, ...]]."
        )
    for i, sentence in enumerate(words):
        if isinstance(sentence, str) or not isinstance(sentence, (list, tuple)):
            raise ValueError(
                f"Expected `{name}[{i}]` to be a list of words. Received "
                f"{_describe(sentence)}{where}."
            )
        for j, word in enumerate(sentence):
            if not isinstance(word, str):
                raise ValueError(
                    f"Expected every word to be a str. Received {name}[{i}][{j}]="
                    f"{_describe(word)} of type {type(word).__name__}{where}."
                )
    return [list(sentence) for sentence in words]


def check_tags(words, tags, name="y", source=None):
    """Validates tags against their sentences: one tag per word."""
    where = f" (source={source})" if source else ""
    if isinstance(tags, str) or not isinstance(tags, (list, tuple)):
        raise ValueError(
            f"Expected `{name}` to be one list of tags per sentence. Received "
            f"{_describe(tags)}{where}."
        )
    tags = list(tags)
    if len(tags) != len(words):
        raise ValueError(
            f"Got {counted(len(words), 'sentence')} but {counted(len(tags), 'tag list')} in `{name}`"
            f"{where}. Give one list of tags per sentence."
        )
    for i, (sentence, sentence_tags) in enumerate(zip(words, tags)):
        if isinstance(sentence_tags, str) or not isinstance(sentence_tags, (list, tuple)):
            raise ValueError(
                f"Expected `{name}[{i}]` to be a list of tags, one per word. "
                f"Received {_describe(sentence_tags)}{where}."
            )
        if len(sentence_tags) != len(sentence):
            raise ValueError(
                f"Sentence {i} has {counted(len(sentence), 'word')} but "
                f"{counted(len(sentence_tags), 'tag')} in `{name}`{where}: {_describe(sentence)} / "
                f"{_describe(sentence_tags)}. Give exactly one tag per word."
            )
    return [list(sentence_tags) for sentence_tags in tags]


def read_conll(path, tag_column=-1, word_column=0, tag_names=None, encoding="utf-8"):
    """Reads a file in the CoNLL column format into a `TaggedData`.

    Every word line needs its word and its tag in two different columns:
    a line with too few columns (a word without its tag) is an error that
    names the file and line.

    Args:
        path: the file (`.gz` is decompressed).
        tag_column: index of the column holding the tag; negative counts
            from the end. Defaults to `-1` (the last column: NER in
            CoNLL-2003).
        word_column: index of the column holding the word. Defaults to `0`.
        tag_names: the tag names to use, for example a training set's on
            its test set. Defaults to `None`: the tags found in the file.
        encoding: the file's text encoding. Defaults to `"utf-8"` (a
            leading byte-order mark is skipped).

    Returns:
        A `TaggedData`.

    Example:
    ```python
    train = kt.datasets.read_conll("conll2003/train.txt")        # NER tags
    dev = kt.datasets.read_conll("conll2003/valid.txt", tag_names=train.tag_names)
    pos = kt.datasets.read_conll("conll2003/train.txt", tag_column=1)
    ```
    """
    _check_path_type(path, example="conll2003/train.txt")
    path = Path(os.fspath(path)).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"No CoNLL file at {str(path)!r}. Check the path.")
    for name, value in (("word_column", word_column), ("tag_column", tag_column)):
        # A CoNLL file has no header: its columns have positions, not names.
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise ValueError(
                f"Expected `{name}` to be a column index (an integer; negative counts "
                f"from the end). Received: {name}={value!r}. CoNLL files have no header "
                "row, so columns are given by position, e.g. tag_column=-1 for the last one."
            )
    if word_column == tag_column:
        raise ValueError(
            f"Expected the word and the tag in different columns. Received: "
            f"word_column={word_column}, tag_column={tag_column}. Fix: pass the "
            "index of the tag column, e.g. tag_column=-1 for the last one."
        )
    try:
        words, tags = _read_sentences(path, word_column, tag_column, encoding)
    except UnicodeDecodeError as error:
        raise _decode_error(path, encoding, error) from None
    if not words:
        raise ValueError(f"{str(path)!r} holds no sentences. Is it a CoNLL file?")
    return TaggedData(words, tags, tag_names, source=str(path))


def _position(index, count):
    """The column that `index` names on a line of `count` columns, or `None`."""
    position = index + count if index < 0 else index
    return position if 0 <= position < count else None


def _read_sentences(path, word_column, tag_column, encoding):
    """The word and tag lists of `read_conll`'s file, checked line by line."""
    opener = gzip.open if path.suffix == ".gz" else open
    words, tags, sentence, sentence_tags = [], [], [], []
    with opener(path, "rt", encoding=_text_encoding(encoding)) as lines:
        for number, line in enumerate(lines, start=1):
            columns = line.split()
            if not columns or columns[0] == "-DOCSTART-":
                if sentence:
                    words.append(sentence)
                    tags.append(sentence_tags)
                    sentence, sentence_tags = [], []
                continue
            # Negative indexes count from the end: on a line of one column
            # 0 and -1 both name the word, which must not become its own tag.
            word_at = _position(word_column, len(columns))
            tag_at = _position(tag_column, len(columns))
            if word_at is None or tag_at is None or word_at == tag_at:
                raise ValueError(
                    f"{path}:{number} has {counted(len(columns), 'column')} ({line.strip()!r}), "
                    f"too few for word_column={word_column} and tag_column="
                    f"{tag_column}. Check the columns, or the blank lines "
                    "between sentences."
                )
            sentence.append(columns[word_at])
            sentence_tags.append(columns[tag_at])
    if sentence:
        words.append(sentence)
        tags.append(sentence_tags)
    return words, tags
