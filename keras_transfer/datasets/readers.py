"""Text datasets in memory: the `TextData` container and readers that build it.

`TextData` holds a list of texts (or of sentence pairs), their labels as a
NumPy array and the class names. The readers turn common on-disk layouts into
a `TextData`:

- `from_lists`: Python lists of texts and labels (ints or strings).
- `read_csv`: a CSV (or TSV) file with a header row.
- `read_jsonl`: a JSON Lines file, one object per line.
- `read_folder`: one sub-folder per class, one text file per example.

CSV and JSON Lines files ending in `.gz` are decompressed on the fly.
This module needs only the standard library and NumPy.
"""

import codecs
import csv
import dataclasses
import gzip
import json
import numbers
import os
from pathlib import Path

import numpy as np

from keras_transfer.wording import counted


def _describe(value, limit=60):
    """Short `repr` of `value` for error messages, cut at `limit` characters."""
    text = repr(value)
    if len(text) > limit:
        text = text[: limit - 3] + "..."
    return text


def _is_pair(value):
    """True for a sentence pair: a tuple or list of exactly two strings."""
    return (
        isinstance(value, (tuple, list))
        and len(value) == 2
        and all(isinstance(part, str) for part in value)
    )


@dataclasses.dataclass(repr=False)
class TextData:
    """Texts with optional labels, ready to hand to a model.

    Args:
        texts: list of `str`, or for sentence-pair tasks a list of
            `(str, str)` tuples. A tuple is converted to a list.
        labels: `None` (unlabelled), or anything `numpy.asarray` accepts
            with one entry per text: integer class ids (stored as
            `int64`), floats for regression (stored as `float32`), or a
            2-D multi-hot array of shape `(len(texts), num_classes)`.
            Defaults to `None`.
        label_names: `None`, or the class names as a list of `str`; class
            id `i` is `label_names[i]`. Defaults to `None`.
        source: where the data came from (a path or a description); used
            in error messages and `repr`. Defaults to `"<in memory>"`.

    Raises:
        ValueError: when a text is not a `str` (or a pair of `str`), when
            `labels` and `texts` differ in length, when a class id has no
            name, or when there are no texts.
    """

    texts: list
    labels: np.ndarray | None = None
    label_names: list | None = None
    source: str = "<in memory>"

    def __post_init__(self):
        self.source = str(self.source)
        if not isinstance(self.texts, (list, tuple)):
            raise ValueError(
                "expected `texts` to be a list of str. Received: "
                f"texts={_describe(self.texts)} of type "
                f"{type(self.texts).__name__} (source={self.source}). "
                "Fix: pass a list, e.g. `list(texts)`."
            )
        self.texts = list(self.texts)
        if not self.texts:
            raise ValueError(
                f"expected at least one example, but the source is empty. "
                f"Received: source={self.source} with 0 texts. "
                "Fix: check the path, split or filters that produced it."
            )
        self._check_texts()
        if self.labels is not None:
            self.labels = self._check_labels(self.labels)
        if self.label_names is not None:
            self.label_names = self._check_label_names(self.label_names)

    def _check_texts(self):
        pairs = _is_pair(self.texts[0])
        for index, text in enumerate(self.texts):
            if pairs and not _is_pair(text):
                raise ValueError(
                    "expected every element of `texts` to be a (str, str) "
                    "pair, like texts[0]. Received: "
                    f"texts[{index}]={_describe(text)} of type "
                    f"{type(text).__name__} (source={self.source}). "
                    "Fix: give all examples as pairs, and convert each "
                    "part with str(...)."
                )
            if not pairs and not isinstance(text, str):
                raise ValueError(
                    "expected every element of `texts` to be a str (or "
                    "every one a (str, str) pair). Received: "
                    f"texts[{index}]={_describe(text)} of type "
                    f"{type(text).__name__} (source={self.source}). "
                    "Fix: convert with str(...), e.g. "
                    "`[str(t) for t in texts]`."
                )
        if pairs:
            self.texts = [tuple(text) for text in self.texts]

    def _check_labels(self, labels):
        try:
            array = np.asarray(labels)
        except ValueError:
            lengths = sorted({np.size(label) for label in labels})
            raise ValueError(
                "expected `labels` to be one label per text or multi-hot rows "
                f"of equal length. Received: rows of lengths {lengths[:5]} "
                f"(source={self.source}). Fix: give every multi-hot row one "
                "0/1 per class; for lists of label names (multi-label) build "
                "the data with `from_lists(texts, labels, label_names)`."
            ) from None
        if array.ndim == 0 or array.ndim > 2:
            raise ValueError(
                "expected `labels` to be 1-D (one per text) or 2-D "
                "(multi-hot). Received: labels with shape "
                f"{array.shape} (source={self.source}). "
                "Fix: pass one label per text."
            )
        if len(array) != len(self.texts):
            raise ValueError(
                "expected as many labels as texts. Received: "
                f"len(texts)={len(self.texts)}, len(labels)={len(array)} "
                f"(source={self.source}). "
                "Fix: give exactly one label per text."
            )
        if array.dtype.kind in "biu":
            return array.astype(np.int64)
        if array.dtype.kind == "f":
            return array.astype(np.float32)
        raise ValueError(
            "expected `labels` to hold int class ids, floats or a multi-hot "
            f"array. Received: labels of dtype {array.dtype}, first "
            f"label={_describe(array.flat[0])} (source={self.source}). "
            "Fix: for string labels build the data with "
            "`from_lists(texts, labels)`, which maps names to ids."
        )

    def _check_label_names(self, label_names):
        if isinstance(label_names, str) or not all(
            isinstance(name, str) for name in label_names
        ):
            raise ValueError(
                "expected `label_names` to be a list of str. Received: "
                f"label_names={_describe(label_names)}. "
                "Fix: pass e.g. label_names=['neg', 'pos']."
            )
        label_names = list(label_names)
        if len(set(label_names)) != len(label_names):
            raise ValueError(
                "expected `label_names` to be unique. Received: "
                f"label_names={label_names}. Fix: remove the duplicates."
            )
        if self.labels is None:
            raise ValueError(
                "expected `labels` when `label_names` is given. Received: "
                f"labels=None, label_names={label_names} "
                f"(source={self.source}). "
                "Fix: pass the labels too, or drop `label_names`."
            )
        if self.labels.ndim == 2 and self.labels.shape[1] != len(label_names):
            raise ValueError(
                "expected one name per multi-hot column. Received: "
                f"labels with {counted(self.labels.shape[1], 'column')}, "
                f"label_names={label_names}. "
                "Fix: give one name per column."
            )
        if self.labels.ndim == 1 and self.labels.dtype == np.int64:
            bad = (self.labels < 0) | (self.labels >= len(label_names))
            if bad.any():
                index = int(np.flatnonzero(bad)[0])
                raise ValueError(
                    f"expected class ids in [0, {len(label_names)}) to match "
                    f"label_names={label_names}. Received: "
                    f"labels[{index}]={int(self.labels[index])} "
                    f"(source={self.source}). "
                    "Fix: add the missing names to `label_names` or "
                    "correct the labels."
                )
        return label_names

    def __len__(self):
        return len(self.texts)

    def __getitem__(self, key):
        """Select examples.

        Args:
            key: an int (returns a `(text, label)` tuple; label is `None`
                for unlabelled data), or a slice, an int index array or a
                boolean mask (each returns a new `TextData`).
        """
        positions = np.arange(len(self.texts))[key]
        if positions.ndim == 0:
            label = None if self.labels is None else self.labels[positions]
            return self.texts[int(positions)], label
        return dataclasses.replace(
            self,
            texts=[self.texts[i] for i in positions],
            labels=None if self.labels is None else self.labels[positions],
        )

    def shuffle(self, seed=0):
        """Return a copy with the examples in a random (seeded) order.

        Args:
            seed: int seed for `numpy.random.default_rng`. Defaults to 0.
        """
        # NumPy would take `None` (a fresh random order) and raise a
        # TypeError on a string or a float naming no argument.
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0):
            raise ValueError(
                f"expected `seed` to be an int >= 0. Received: seed={seed!r}. "
                "Fix: pass e.g. seed=0."
            )
        return self[np.random.default_rng(seed).permutation(len(self))]

    def take(self, n):
        """Return the first `n` examples (all of them if there are fewer).

        Args:
            n: number of examples, an int >= 1.
        """
        if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 1:
            raise ValueError(
                f"expected `n` to be an int >= 1. Received: n={n!r}. "
                "Fix: pass a positive number of examples."
            )
        return self[:n]

    def split(self, fraction, seed=0):
        """Split into two parts after a seeded shuffle.

        Args:
            fraction: share of the examples that goes to the second part
                (e.g. the validation set), a float strictly between 0 and 1.
                The second part gets `round(fraction * len(self))` examples.
            seed: int seed for the shuffle, or `None` to keep the current
                order and split off the last examples. Defaults to 0.

        Returns:
            A tuple `(first, second)` of `TextData`.
        """
        is_number = isinstance(fraction, numbers.Real) and not isinstance(
            fraction, bool
        )
        if not is_number or not 0 < fraction < 1:
            raise ValueError(
                "expected `fraction` to be a float between 0 and 1 "
                f"(exclusive). Received: fraction={fraction!r}. "
                "Fix: pass e.g. fraction=0.2 to hold out 20%."
            )
        n_second = round(fraction * len(self))
        if n_second == 0 or n_second == len(self):
            raise ValueError(
                f"expected both parts of the split to be non-empty. Received: "
                f"fraction={fraction} of {len(self)} examples gives "
                f"{len(self) - n_second} and {n_second}. "
                "Fix: use a fraction closer to 0.5, or more data."
            )
        data = self if seed is None else self.shuffle(seed)
        cut = len(self) - n_second
        return data[:cut], data[cut:]

    def class_counts(self):
        """Examples per class as a dict `{name (or id): count}`.

        Empty for unlabelled or regression data; for multi-hot labels it
        counts the examples that carry each label.
        """
        if self.labels is None:
            return {}
        if self.labels.ndim == 2:
            counts = (self.labels > 0).sum(axis=0)
            keys = self.label_names or range(len(counts))
            return {key: int(count) for key, count in zip(keys, counts)}
        if self.labels.dtype != np.int64:
            return {}
        values, counts = np.unique(self.labels, return_counts=True)
        if self.label_names:
            values = [self.label_names[value] for value in values]
        else:
            values = [int(value) for value in values]
        return {value: int(count) for value, count in zip(values, counts)}

    def __repr__(self):
        kind = "sentence pair" if isinstance(self.texts[0], tuple) else "text"
        parts = [counted(len(self), kind)]
        if self.labels is None:
            parts.append("no labels")
        elif self.labels.dtype == np.float32 and self.labels.ndim == 1:
            parts.append(
                f"float labels in [{self.labels.min():.4g}, "
                f"{self.labels.max():.4g}]"
            )
        else:
            if self.label_names is not None:
                parts.append(f"label_names={self.label_names}")
            parts.append(f"class_counts={self.class_counts()}")
        parts.append(f"source={self.source!r}")
        return f"TextData({', '.join(parts)})"


# Containers that may hold the label names of one multi-label example.
_NAME_LISTS = (list, tuple, set, frozenset, np.ndarray)


def _label_kind(value):
    """`"str"`, `"number"`, `"names"` (a list of label names), `"empty"` (an
    empty list: no label, or a multi-hot row of no columns) or `"other"`."""
    if isinstance(value, str):
        return "str"
    if isinstance(value, numbers.Number) and not isinstance(value, bool):
        return "number"
    if isinstance(value, np.ndarray) and value.ndim != 1:
        return "other"
    if isinstance(value, _NAME_LISTS):
        if len(value) == 0:
            return "empty"
        if all(isinstance(name, str) for name in value):
            return "names"
    return "other"


def _mixed_labels_error(labels, kinds, source):
    """The error for labels of different kinds (`labels[0]` sets the kind)."""
    multi = kinds[0] in ("names", "empty")
    allowed = {"names", "empty"} if multi else {kinds[0]}
    other = next(i for i, kind in enumerate(kinds) if kind not in allowed)
    if multi:
        expected = "every label to be a list of label names (multi-label)"
        example = labels[other] if isinstance(labels[other], str) else "pos"
        fix = (
            f"give each text the list of its label names, e.g. "
            f"[{example!r}], and [] for a text with none."
        )
    else:
        expected = "labels to be all class ids (int) or all class names (str)"
        fix = "convert them all to one kind, e.g. `[str(x) for x in labels]`."
    return ValueError(
        f"expected {expected}, not a mix. Received: "
        f"labels[0]={_describe(labels[0])} and "
        f"labels[{other}]={_describe(labels[other])} (source={source}). "
        f"Fix: {fix}"
    )


def _names_to_multi_hot(labels, label_names, source):
    """Multi-hot rows (`int64`, one column per name) of lists of label names."""
    if label_names is None:
        label_names = sorted({name for names in labels for name in names})
        if not label_names:
            raise ValueError(
                "expected at least one label name in multi-label data. "
                f"Received: {len(labels)} empty label lists (source={source}). "
                "Fix: pass label_names=[...] to say which labels exist."
            )
    index = {name: i for i, name in enumerate(label_names)}
    multi_hot = np.zeros((len(labels), len(label_names)), dtype=np.int64)
    for position, names in enumerate(labels):
        for name in names:
            if name not in index:
                raise ValueError(
                    f"expected every label to be one of the known names "
                    f"{list(label_names)}. Received: {name!r} in labels"
                    f"[{position}]={_describe(labels[position])} "
                    f"(source={source}). Fix: add {name!r} to `label_names`, "
                    "or correct the label."
                )
            multi_hot[position, index[name]] = 1
    return multi_hot, label_names


def _check_label_names_not_string(label_names):
    """Refuses `label_names="neg,pos"` before anything reads it: a string
    would be taken as its characters ("known names ['n', 'e', 'g', ...]",
    "a sub-folder for class 'n'")."""
    if isinstance(label_names, str):
        raise ValueError(
            "expected `label_names` to be a list of str. Received: "
            f"label_names={_describe(label_names)}, a single string. "
            "Fix: pass e.g. label_names=['neg', 'pos']."
        )


def from_lists(texts, labels=None, label_names=None, source="<in memory>"):
    """Build a `TextData` from Python lists.

    Args:
        texts: list of `str` (or of `(str, str)` pairs).
        labels: `None`, or one label per text: all ints (class ids), all
            strings (class names), floats (regression), multi-hot rows, or
            for multi-label data lists of label names (`[]` for a text
            with none), stored as multi-hot rows. Defaults to `None`.
        label_names: `None` or a list of class names. With string labels
            it fixes the id of each name (`label_names[i]` gets id `i`),
            with lists of names the column of each; without it the ids
            follow the sorted unique names. Defaults to `None`.
        source: description used in messages. Defaults to `"<in memory>"`.

    Returns:
        A `TextData`.

    Raises:
        ValueError: for labels of mixed kinds, for a label name missing
            from `label_names`, and for the cases `TextData` rejects.

    Example:

    >>> data = from_lists(["great", "awful", "fine"], ["pos", "neg", "pos"])
    >>> data.labels.tolist(), data.label_names
    ([1, 0, 1], ['neg', 'pos'])
    >>> data = from_lists(["chase", "kiss", "news"], [["action"], ["romance"], []])
    >>> data.labels.tolist(), data.label_names
    ([[1, 0], [0, 1], [0, 0]], ['action', 'romance'])
    """
    _check_label_names_not_string(label_names)
    if isinstance(labels, str):
        raise ValueError(
            "expected `labels` to hold one label per text. Received: "
            f"labels={_describe(labels)}, a single string (source={source}). "
            "Fix: pass a list, e.g. `[label] * len(texts)`."
        )
    if labels is None or (
        isinstance(labels, np.ndarray) and labels.dtype.kind in "biuf"
    ):
        return TextData(texts, labels, label_names, source)
    labels = list(labels)
    kinds = [_label_kind(label) for label in labels]
    multi = "names" in kinds or (kinds and set(kinds) == {"empty"})
    if multi and not set(kinds) <= {"names", "empty"}:
        raise _mixed_labels_error(labels, kinds, source)
    if "str" in kinds and len(set(kinds)) > 1:
        raise _mixed_labels_error(labels, kinds, source)
    if multi:
        labels, label_names = _names_to_multi_hot(labels, label_names, source)
    elif kinds and kinds[0] == "str":
        if label_names is None:
            label_names = sorted(set(labels))
        index = {name: i for i, name in enumerate(label_names)}
        for position, label in enumerate(labels):
            if label not in index:
                raise ValueError(
                    f"expected every label to be one of the known names "
                    f"{list(label_names)}. Received: labels[{position}]="
                    f"{label!r} (source={source}). Fix: add {label!r} to "
                    "`label_names`, or correct the label."
                )
        labels = [index[label] for label in labels]
    return TextData(texts, labels, label_names, source)


def _check_path_type(path, name="path", example="data/train.csv"):
    """Refuses a `path` that is not a path (None, a list, an open file):
    every reader's first step turns it into a `Path`, which would fail with
    Python's own TypeError that names no argument."""
    if not isinstance(path, (str, os.PathLike)):
        raise ValueError(
            f"expected `{name}` to be a str or pathlib.Path. Received: "
            f"{name}={_describe(path)} of type {type(path).__name__}. "
            f"Fix: pass the location of the data, e.g. {example!r}."
        )


def _check_path(path, what="file"):
    """Return `path` as a `Path`, raising a clear error if it is unusable."""
    _check_path_type(path)
    path = Path(path).expanduser()
    if not path.exists():
        raise FileNotFoundError(
            f"expected an existing {what}. Received: path='{path}', which "
            "does not exist. Fix: check the spelling, or pass an absolute "
            "path."
        )
    if what == "file" and not path.is_file():
        raise ValueError(
            f"expected a file. Received: path='{path}', which is a "
            "directory. Fix: pass the path of the file inside it."
        )
    if what == "folder" and not path.is_dir():
        raise ValueError(
            f"expected a folder. Received: path='{path}', which is a file. "
            "Fix: pass the folder that holds one sub-folder per class."
        )
    return path


def _open_text(path, encoding):
    """Open a text file for reading, decompressing it if it ends in `.gz`."""
    if path.suffix == ".gz":
        return gzip.open(path, "rt", encoding=encoding, newline="")
    return open(path, encoding=encoding, newline="")


def _text_encoding(encoding):
    """`encoding` to read with: UTF-8 becomes `utf-8-sig`, which skips a
    leading byte-order mark (a BOM would otherwise stick to the first word)."""
    if isinstance(encoding, str) and codecs.lookup(encoding).name == "utf-8":
        return "utf-8-sig"
    return encoding


def _decode_error(path, encoding, error, compressed=None):
    """A `ValueError` for `error`, naming the line of `path` that `encoding`
    cannot decode (found by decoding the file again, line by line)."""
    if compressed is None:
        compressed = path.suffix == ".gz"
    decoder = codecs.getincrementaldecoder(_text_encoding(encoding))()
    line, where = 1, f"'{path}'"
    with (gzip.open if compressed else open)(path, "rb") as file:
        for chunk in file:
            try:
                line += decoder.decode(chunk).count("\n")
            except UnicodeDecodeError as line_error:
                error, where = line_error, f"line {line} of '{path}'"
                break
    bad = error.object[error.start : error.end]
    return ValueError(
        f"expected {encoding} text. Received: {where} cannot be decoded "
        f"({error.reason}: {bad!r}). Fix: pass the right `encoding=`, e.g. "
        "encoding='latin-1'."
    )


def _parse_string_labels(values, label_names):
    """Turn label strings read from a CSV file into ids, floats or names."""
    if label_names is not None and set(values) <= set(label_names):
        return values
    for convert in (int, float):
        try:
            return [convert(value) for value in values]
        except ValueError:
            continue
    return values


def read_csv(
    path,
    text_column="text",
    label_column="label",
    label_names=None,
    delimiter=",",
    encoding="utf-8",
):
    """Read a CSV file with a header row (`.csv` or `.csv.gz`).

    Label cells that are all integers become class ids, all numbers
    become float (regression) labels, anything else is a class name
    (mapped as in `from_lists`). Label cells are read without the spaces
    around them (`good film, pos` has the label `pos`); text cells are
    kept exactly as they are.

    Args:
        path: str or `pathlib.Path` of the file.
        text_column: header of the text column, or a pair of headers for
            sentence pairs, e.g. `("premise", "hypothesis")`. Defaults to
            `"text"`.
        label_column: header of the label column, or `None` for
            unlabelled data. Defaults to `"label"`.
        label_names: `None` or a list of class names (see `from_lists`).
            Defaults to `None`.
        delimiter: field separator; use `"\\t"` for TSV. Defaults to `","`.
        encoding: text encoding of the file. Defaults to `"utf-8"` (a
            leading byte-order mark is skipped).

    Returns:
        A `TextData`.

    Raises:
        FileNotFoundError: if `path` does not exist.
        ValueError: if a column is missing (the message lists the
            available ones), a row is short, the file has no rows, or a
            line cannot be decoded with `encoding` (the message names it).
    """
    path = _check_path(path)
    if not isinstance(delimiter, str) or len(delimiter) != 1:
        # Python's csv module would raise a TypeError naming no argument.
        raise ValueError(
            f"expected `delimiter` to be one character. Received: delimiter={delimiter!r}. "
            "Fix: pass ',' for CSV or '\\t' for TSV."
        )
    text_columns = (
        [text_column] if isinstance(text_column, str) else list(text_column)
    )
    try:
        texts, labels = _read_csv_rows(
            path, text_columns, label_column, delimiter, encoding
        )
    except UnicodeDecodeError as error:
        raise _decode_error(path, encoding, error) from None
    if labels:
        labels = _parse_string_labels(labels, label_names)
    return from_lists(texts, labels or None, label_names, source=str(path))


def _read_csv_rows(path, text_columns, label_column, delimiter, encoding):
    """The texts and (stripped) label cells of `read_csv`'s file, checked
    row by row."""
    wanted = text_columns + ([] if label_column is None else [label_column])
    texts, labels = [], []
    with _open_text(path, _text_encoding(encoding)) as file:
        reader = csv.DictReader(file, delimiter=delimiter)
        columns = reader.fieldnames
        if not columns:
            raise ValueError(
                f"expected a header row, then one example per row. Received: "
                f"'{path}' is empty. Fix: check that the file was written "
                "completely."
            )
        for column in wanted:
            if column not in columns:
                raise ValueError(
                    f"expected a column named {column!r} in the header of "
                    f"'{path}'. Received: available columns {columns}. "
                    f"Fix: pass text_column=/label_column= with one of "
                    f"these names (delimiter={delimiter!r})."
                )
        for row in reader:
            values = [row[column] for column in wanted]
            if any(value is None for value in values):
                raise ValueError(
                    f"expected every row to have the {counted(len(columns), 'column')} "
                    f"of the header. Received: line {reader.line_num} of "
                    f"'{path}' has fewer. Fix: repair that row."
                )
            text = values[: len(text_columns)]
            texts.append(text[0] if len(text) == 1 else tuple(text))
            if label_column is not None:
                if not values[-1].strip():
                    raise ValueError(
                        f"expected a label in every row. Received: an empty "
                        f"{label_column!r} on line {reader.line_num} of "
                        f"'{path}'. Fix: fill it in or drop the row."
                    )
                labels.append(values[-1].strip())
    return texts, labels


def read_jsonl(
    path, text_field="text", label_field="label", label_names=None, encoding="utf-8"
):
    """Read a JSON Lines file (`.jsonl` or `.jsonl.gz`), one object per line.

    Blank lines are skipped. Labels keep their JSON type: ints are class
    ids, strings are class names, floats are regression targets, lists
    of numbers are multi-hot rows, and lists of strings are the label
    names of a multi-label example (`["action", "comedy"]`, or `[]` for
    none), stored as multi-hot rows as in `from_lists`.

    Args:
        path: str or `pathlib.Path` of the file.
        text_field: key of the text, or a pair of keys for sentence
            pairs. Defaults to `"text"`.
        label_field: key of the label, or `None` for unlabelled data.
            Defaults to `"label"`.
        label_names: `None` or a list of class names (see `from_lists`).
            Defaults to `None`.
        encoding: text encoding of the file. Defaults to `"utf-8"` (a
            leading byte-order mark is skipped).

    Returns:
        A `TextData`.

    Raises:
        FileNotFoundError: if `path` does not exist.
        ValueError: naming the line number of a line that is not a JSON
            object, lacks a field or cannot be decoded with `encoding`,
            or if the file holds no examples.
    """
    path = _check_path(path)
    text_fields = [text_field] if isinstance(text_field, str) else list(text_field)
    try:
        texts, labels = _read_jsonl_records(path, text_fields, label_field, encoding)
    except UnicodeDecodeError as error:
        raise _decode_error(path, encoding, error) from None
    return from_lists(texts, labels or None, label_names, source=str(path))


def _read_jsonl_records(path, text_fields, label_field, encoding):
    """The texts and labels of `read_jsonl`'s file, checked line by line."""
    wanted = text_fields + ([] if label_field is None else [label_field])
    texts, labels = [], []
    with _open_text(path, _text_encoding(encoding)) as file:
        for line_number, line in enumerate(file, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise ValueError(
                    f"expected one JSON object per line. Received: line "
                    f"{line_number} of '{path}' is not valid JSON ({error.msg}"
                    f"): {_describe(line.strip())}. Fix: repair that line."
                ) from None
            if not isinstance(record, dict):
                raise ValueError(
                    f"expected one JSON object per line. Received: line "
                    f"{line_number} of '{path}' holds a "
                    f"{type(record).__name__}: {_describe(record)}. "
                    'Fix: write each example as {"text": ..., "label": ...}.'
                )
            for field in wanted:
                if field not in record:
                    raise ValueError(
                        f"expected a field {field!r} on every line. Received: "
                        f"line {line_number} of '{path}' has fields "
                        f"{sorted(record)}. Fix: pass text_field=/label_field= "
                        "with the right names, or repair that line."
                    )
            text = [record[field] for field in text_fields]
            texts.append(text[0] if len(text) == 1 else tuple(text))
            if label_field is not None:
                labels.append(record[label_field])
    return texts, labels


def read_folder(path, label_names=None, extensions=(".txt",), encoding="utf-8"):
    """Read a folder with one sub-folder per class and one file per example.

    ```
    path/
        neg/  0001.txt  0002.txt ...
        pos/  0001.txt ...
    ```

    Files are read in sorted order within each class, classes in the order
    of `label_names`. The text is kept exactly as in the file (no newline
    translation, no stripping; only a UTF-8 byte-order mark is skipped).

    Args:
        path: str or `pathlib.Path` of the folder.
        label_names: `None` to use every sub-folder as a class (sorted by
            name), or a list of sub-folder names to read, in the order
            that fixes their class ids; other sub-folders are ignored.
            Defaults to `None`.
        extensions: file name endings to read (case-insensitive); other
            files are skipped. Defaults to `(".txt",)`.
        encoding: text encoding of the files. Defaults to `"utf-8"` (a
            leading byte-order mark is skipped).

    Returns:
        A `TextData`.

    Raises:
        FileNotFoundError: if `path` or a sub-folder named in
            `label_names` does not exist.
        ValueError: if there are no sub-folders, a class folder holds no
            matching files, or a file cannot be decoded.
    """
    path = _check_path(path, what="folder")
    _check_label_names_not_string(label_names)
    if isinstance(extensions, str):
        extensions = (extensions,)
    extensions = tuple(extension.lower() for extension in extensions)
    found = sorted(entry.name for entry in path.iterdir() if entry.is_dir())
    if label_names is None:
        if not found:
            raise ValueError(
                "expected one sub-folder per class. Received: "
                f"path='{path}' has no sub-folders. Fix: put the files of "
                "each class in a sub-folder named after the class."
            )
        label_names = found
    texts, labels = [], []
    for class_id, name in enumerate(label_names):
        folder = path / name
        if not folder.is_dir():
            raise FileNotFoundError(
                f"expected a sub-folder for class {name!r}. Received: "
                f"'{folder}' does not exist; sub-folders found: {found}. "
                "Fix: correct `label_names` or the folder layout."
            )
        files = sorted(
            entry
            for entry in folder.iterdir()
            if entry.is_file() and entry.name.lower().endswith(extensions)
        )
        if not files:
            raise ValueError(
                f"expected files ending in {list(extensions)} in every class "
                f"folder. Received: '{folder}' has none. Fix: add examples, "
                "remove the folder, or pass `extensions=`."
            )
        for file in files:
            try:
                texts.append(file.read_bytes().decode(_text_encoding(encoding)))
            except UnicodeDecodeError as error:
                raise ValueError(
                    f"expected {encoding} text. Received: '{file}' cannot be "
                    f"decoded ({error.reason} at byte {error.start}). Fix: "
                    "pass the right `encoding=`, e.g. encoding='latin-1'."
                ) from None
        labels.extend([class_id] * len(files))
    return TextData(texts, labels, list(label_names), source=str(path))
