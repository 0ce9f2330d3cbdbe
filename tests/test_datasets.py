"""Tests for keras_transfer.datasets: TextData, the readers, IMDB loading
and the shipped IMDB sample. All data is made in tmp_path; nothing here
needs /work/shared/data or a network."""

import ast
import csv
import gzip
import hashlib
import importlib.util
import json
import re
import sys
import tarfile
import types
from pathlib import Path

import numpy as np
import pytest

from keras_transfer import datasets
from keras_transfer.datasets import TextData
from keras_transfer.datasets import from_lists
from keras_transfer.datasets import imdb
from keras_transfer.datasets import imdb_sample
from keras_transfer.datasets import read_conll
from keras_transfer.datasets import read_csv
from keras_transfer.datasets import read_folder
from keras_transfer.datasets import read_jsonl
from keras_transfer.datasets import read_parallel
from keras_transfer.datasets import read_squad

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "keras_transfer" / "datasets"
SAMPLE = PACKAGE / "_sample" / "imdb_sample.jsonl.gz"


def raises(error, *fragments):
    """pytest.raises that checks every fragment appears in the message."""
    pattern = "".join(f"(?=.*{re.escape(fragment)})" for fragment in fragments)
    return pytest.raises(error, match=re.compile(pattern, re.DOTALL))


# ---------------------------------------------------------------- fixtures

# Counts of the fake aclImdb: train has 6 neg / 6 pos, test 4 neg / 4 pos.
FAKE_COUNTS = {"train": 6, "test": 4}


def review(split, label, i):
    return f"{split} {label} review {i}.<br /><br />Second line ü\r\nend"


@pytest.fixture
def acl_parent(tmp_path):
    """tmp/acl/aclImdb/{train,test}/{neg,pos}/<id>_<rating>.txt + noise."""
    root = tmp_path / "acl" / "aclImdb"
    for split, count in FAKE_COUNTS.items():
        for label in ("neg", "pos"):
            folder = root / split / label
            folder.mkdir(parents=True)
            # Written in reverse order: reading must sort, not trust the OS.
            for i in reversed(range(count)):
                rating = 2 if label == "neg" else 9
                text = review(split, label, i)
                (folder / f"{i}_{rating}.txt").write_bytes(text.encode("utf-8"))
    unsup = root / "train" / "unsup"
    unsup.mkdir()
    (unsup / "0_0.txt").write_text("unlabelled")
    (root / "train" / "labeledBow.feat").write_text("0 0:1\n")
    (root / "README").write_text("readme")
    (root / "imdb.vocab").write_text("the\n")
    return tmp_path / "acl"


@pytest.fixture
def acl_tar(acl_parent, tmp_path):
    """The fake aclImdb as aclImdb_v1.tar.gz, members in reverse order."""
    path = tmp_path / "aclImdb_v1.tar.gz"
    root = acl_parent / "aclImdb"
    files = sorted(root.rglob("*"), reverse=True)
    with tarfile.open(path, "w:gz") as archive:
        for file in files:
            archive.add(file, arcname=f"aclImdb/{file.relative_to(root)}",
                        recursive=False)
    return path


def write_csv(path, rows, delimiter=","):
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "wt", encoding="utf-8", newline="") as file:
        csv.writer(file, delimiter=delimiter).writerows(rows)
    return path


def write_jsonl(path, records):
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "wt", encoding="utf-8") as file:
        for record in records:
            file.write((record if isinstance(record, str) else json.dumps(record)))
            file.write("\n")
    return path


# ---------------------------------------------------------------- TextData


def test_textdata_basics():
    data = TextData(("a", "b", "c"), [0, 1, 1], ["neg", "pos"])
    assert data.texts == ["a", "b", "c"]
    assert data.labels.dtype == np.int64
    assert len(data) == 3
    assert data[1] == ("b", 1)
    assert data[-1] == ("c", 1)
    assert data[1:].texts == ["b", "c"]
    assert data[np.array([2, 0])].texts == ["c", "a"]
    assert data[[2, 0]].labels.tolist() == [1, 0]
    assert data[data.labels == 1].texts == ["b", "c"]
    assert data[:2].label_names == ["neg", "pos"]
    assert data.class_counts() == {"neg": 1, "pos": 2}
    text = repr(data)
    assert "3 texts" in text
    assert "label_names=['neg', 'pos']" in text
    assert "class_counts={'neg': 1, 'pos': 2}" in text


def test_textdata_kinds_of_labels():
    unlabelled = TextData(["a", "b"])
    assert unlabelled.labels is None
    assert unlabelled[0] == ("a", None)
    assert "no labels" in repr(unlabelled)
    regression = TextData(["a", "b"], [0.5, 4.0])
    assert regression.labels.dtype == np.float32
    assert "float labels in [0.5, 4]" in repr(regression)
    multi = TextData(["a", "b"], [[1, 0, 1], [0, 0, 1]], ["x", "y", "z"])
    assert multi.labels.shape == (2, 3)
    assert multi.class_counts() == {"x": 1, "y": 0, "z": 2}
    pairs = TextData([("p", "h"), ["p2", "h2"]], [0, 1])
    assert pairs.texts == [("p", "h"), ("p2", "h2")]
    assert "2 sentence pairs" in repr(pairs)
    assert TextData(["a"], [True]).labels.dtype == np.int64


def test_shuffle_take_split():
    data = TextData([str(i) for i in range(20)], np.arange(20) % 2, ["a", "b"])
    shuffled = data.shuffle(seed=1)
    assert shuffled.texts == data.shuffle(seed=1).texts
    assert shuffled.texts != data.shuffle(seed=2).texts
    assert sorted(shuffled.texts) == sorted(data.texts)
    for text, label in zip(shuffled.texts, shuffled.labels):
        assert int(text) % 2 == label
    assert data.take(3).texts == ["0", "1", "2"]
    assert len(data.take(100)) == 20
    first, second = data.split(0.25, seed=3)
    assert (len(first), len(second)) == (15, 5)
    assert sorted(first.texts + second.texts) == sorted(data.texts)
    again = data.split(0.25, seed=3)
    assert again[1].texts == second.texts
    assert data.split(0.25, seed=4)[1].texts != second.texts
    assert data.split(0.25, seed=None)[1].texts == ["15", "16", "17", "18", "19"]


@pytest.mark.parametrize(
    "texts, fragments",
    [
        (["ok", None], ["texts[1]=None", "NoneType", "convert with str(...)"]),
        (["ok", "ok", 3], ["texts[2]=3", "int", "convert with str(...)"]),
        ([b"bytes"], ["texts[0]=b'bytes'", "bytes", "convert with str(...)"]),
        ([("a", "b"), "c"], ["texts[1]='c'", "(str, str) pair", "str(...)"]),
        ([("a", 1)], ["texts[0]=('a', 1)", "tuple", "convert with str(...)"]),
    ],
)
def test_textdata_rejects_bad_texts(texts, fragments):
    with raises(ValueError, "Received:", *fragments):
        TextData(texts)


@pytest.mark.parametrize(
    "texts, name",
    [("a string", "str"), (np.array(["a"]), "ndarray"), (None, "NoneType")],
)
def test_textdata_rejects_non_list_texts(texts, name):
    with raises(ValueError, "`texts` to be a list of str", name, "list(texts)"):
        TextData(texts)


@pytest.mark.parametrize(
    "n_texts, labels", [(3, [0, 1]), (2, [0, 1, 1]), (1, [[0, 1], [1, 0]])]
)
def test_textdata_rejects_length_mismatch(n_texts, labels):
    with raises(ValueError, f"len(texts)={n_texts}", f"len(labels)={len(labels)}"):
        TextData(["t"] * n_texts, labels)


@pytest.mark.parametrize("texts", [[], ()])
def test_textdata_rejects_empty(texts):
    with raises(ValueError, "the source is empty", "source=my.csv"):
        TextData(texts, source="my.csv")


def test_textdata_rejects_empty_selection():
    with raises(ValueError, "the source is empty"):
        TextData(["a", "b"])[:0]


@pytest.mark.parametrize(
    "labels, label_names, fragments",
    [
        ([0, 2], ["a", "b"], ["labels[1]=2", "[0, 2)"]),
        ([-1, 0], ["a", "b"], ["labels[0]=-1"]),
        (["a", "b"], None, ["dtype <U1", "from_lists"]),
        ([None, 1], None, ["dtype object", "from_lists"]),
        (5, None, ["shape ()"]),
        ([[[0]]], None, ["shape (1, 1, 1)"]),
        ([[0, 1]], ["a", "b", "c"], ["2 columns", "one name per column"]),
        (None, ["a"], ["labels=None", "drop `label_names`"]),
        ([0], "ab", ["label_names='ab'"]),
        ([0], ["a", 1], ["label_names=['a', 1]"]),
        ([0], ["a", "a"], ["unique", "label_names=['a', 'a']"]),
    ],
)
def test_textdata_rejects_bad_labels(labels, label_names, fragments):
    texts = ["t"] * (1 if np.ndim(labels) == 0 else len(labels))
    with raises(ValueError, "Received:", "Fix:", *fragments):
        TextData(texts, labels, label_names)


@pytest.mark.parametrize(
    "labels, fragments",
    [
        ([["x"], ["y", "z"]], ["lengths [1, 2]", "from_lists(texts, labels, label_names)"]),
        ([[1, 0], [1]], ["lengths [1, 2]", "one 0/1 per class"]),
    ],
)
def test_textdata_rejects_ragged_labels(labels, fragments):
    with raises(ValueError, "Received:", "Fix:", *fragments):
        TextData(["a", "b"], labels)


@pytest.mark.parametrize("n", [0, -1, 1.5, "2", True, None])
def test_take_rejects_bad_n(n):
    with raises(ValueError, "int >= 1", f"n={n!r}"):
        TextData(["a", "b"]).take(n)


@pytest.mark.parametrize("fraction", [0, 1, 1.5, -0.1, "0.2", None, True])
def test_split_rejects_bad_fraction(fraction):
    with raises(ValueError, "between 0 and 1", "fraction="):
        TextData(["a", "b", "c"]).split(fraction)


@pytest.mark.parametrize("fraction", [0.01, 0.99])
def test_split_rejects_empty_part(fraction):
    with raises(ValueError, "non-empty", f"fraction={fraction} of 3 examples"):
        TextData(["a", "b", "c"]).split(fraction)


# ---------------------------------------------------------------- from_lists


def test_from_lists():
    data = from_lists(["x", "y", "z"], ["pos", "neg", "pos"])
    assert data.label_names == ["neg", "pos"]
    assert data.labels.tolist() == [1, 0, 1]
    named = from_lists(["x", "y"], ["pos", "neg"], label_names=["pos", "neg"])
    assert named.labels.tolist() == [0, 1]
    ints = from_lists(["x", "y"], [1, 0], label_names=["neg", "pos"])
    assert ints.labels.tolist() == [1, 0]
    assert from_lists(["x", "y"], np.array([1, 0])).labels.dtype == np.int64
    assert from_lists(["x"], np.array(["b"])).label_names == ["b"]
    assert from_lists(["x"], [np.int32(3)]).labels.tolist() == [3]
    assert from_lists(["x", "y"]).labels is None
    assert from_lists(["x"], [2.5]).labels.dtype == np.float32


@pytest.mark.parametrize(
    "labels, fragments",
    [
        ([1, "pos"], ["labels[0]=1", "labels[1]='pos'"]),
        (["pos", 0, "neg"], ["labels[0]='pos'", "labels[1]=0"]),
        (["pos", "neg", 1.5], ["labels[2]=1.5"]),
    ],
)
def test_from_lists_rejects_mixed_labels(labels, fragments):
    with raises(ValueError, "not a mix", "Fix:", *fragments):
        from_lists(["t"] * len(labels), labels)


@pytest.mark.parametrize(
    "labels, bad",
    [(["pos", "neutral"], "neutral"), (["Pos"], "Pos"), (["", "neg"], "")],
)
def test_from_lists_rejects_unknown_label(labels, bad):
    with raises(ValueError, "['neg', 'pos']", f"={bad!r}", f"add {bad!r}"):
        from_lists(["t"] * len(labels), labels, label_names=["neg", "pos"])


def test_from_lists_multi_label_names():
    texts = ["chase", "kiss", "chase and kiss", "news"]
    labels = [["action"], ["romance"], ["action", "romance"], []]
    data = from_lists(texts, labels)
    assert data.label_names == ["action", "romance"]
    assert data.labels.dtype == np.int64
    assert data.labels.tolist() == [[1, 0], [0, 1], [1, 1], [0, 0]]
    assert data.class_counts() == {"action": 2, "romance": 2}
    # label_names fixes the columns; tuples, sets and arrays hold names too.
    named = from_lists(texts, [("action",), {"romance"}, np.array(["romance", "action"]), []],
                       label_names=["romance", "comedy", "action"])
    assert named.labels.tolist() == [[0, 0, 1], [1, 0, 0], [1, 0, 1], [0, 0, 0]]
    assert from_lists(["a", "b"], [[], []], ["x"]).labels.tolist() == [[0], [0]]


@pytest.mark.parametrize(
    "labels, label_names, fragments",
    [
        ([["a"], "b"], None, ["list of label names", "not a mix", "labels[1]='b'", "['b']"]),
        ([[], ["a"], 1], None, ["list of label names", "labels[2]=1"]),
        ([["a"], [1, 0]], None, ["list of label names", "labels[1]=[1, 0]"]),
        (["b", ["a"]], None, ["not a mix", "labels[1]=['a']"]),
        ([["a"], ["c", "b"]], ["a", "b"], ["'c' in labels[1]=['c', 'b']", "['a', 'b']", "add 'c'"]),
        ([[], []], None, ["2 empty label lists", "label_names=[...]"]),
    ],
)
def test_from_lists_rejects_bad_multi_label(labels, label_names, fragments):
    with raises(ValueError, "Received:", "Fix:", *fragments):
        from_lists(["t"] * len(labels), labels, label_names)


# ---------------------------------------------------------------- read_csv


def test_read_csv(tmp_path):
    rows = [["id", "text", "label"], ["1", "good, \"very\"\nfilm", "pos"],
            ["2", "bad", "neg"], ["3", "ok", "pos"]]
    for name in ("data.csv", "data.csv.gz"):
        path = write_csv(tmp_path / name, rows)
        for given in (path, str(path)):
            data = read_csv(given)
            assert data.texts == ["good, \"very\"\nfilm", "bad", "ok"]
            assert data.labels.tolist() == [1, 0, 1]
            assert data.label_names == ["neg", "pos"]
            assert data.source == str(path)


def test_read_csv_variants(tmp_path):
    numeric = write_csv(tmp_path / "n.csv", [["text", "y"], ["a", "10"], ["b", "2"]])
    assert read_csv(numeric, label_column="y").labels.tolist() == [10, 2]
    floats = write_csv(tmp_path / "f.csv", [["text", "y"], ["a", "0.5"], ["b", "3"]])
    assert read_csv(floats, label_column="y").labels.tolist() == [0.5, 3.0]
    named = read_csv(numeric, label_column="y", label_names=[str(i) for i in range(11)])
    assert named.labels.tolist() == [10, 2]
    unlabelled = read_csv(numeric, label_column=None)
    assert unlabelled.labels is None
    tsv = write_csv(tmp_path / "p.tsv", [["premise", "hypothesis", "label"],
                                         ["a b", "c", "entailment"]], delimiter="\t")
    pairs = read_csv(tsv, text_column=("premise", "hypothesis"), delimiter="\t")
    assert pairs.texts == [("a b", "c")]
    assert pairs.label_names == ["entailment"]
    bom = tmp_path / "bom.csv"
    bom.write_bytes("\ufefftext,label\nhé,pos\n".encode("utf-8"))
    assert read_csv(bom).texts == ["hé"]


@pytest.mark.parametrize(
    "kwargs, fragments",
    [
        ({"text_column": "review"}, ["'review'", "['sentence', 'label']"]),
        ({"text_column": "sentence", "label_column": "y"},
         ["'y'", "['sentence', 'label']"]),
        ({}, ["'text'", "available columns ['sentence', 'label']"]),
        ({"text_column": ("sentence", "other")}, ["'other'"]),
    ],
)
def test_read_csv_missing_column(tmp_path, kwargs, fragments):
    path = write_csv(tmp_path / "d.csv", [["sentence", "label"], ["a", "pos"]])
    with raises(ValueError, "Received:", "text_column=/label_column=", *fragments):
        read_csv(path, **kwargs)


def test_read_csv_errors(tmp_path):
    with raises(FileNotFoundError, "missing.csv", "does not exist"):
        read_csv(tmp_path / "missing.csv")
    with raises(FileNotFoundError, "nope.csv.gz"):
        read_csv(str(tmp_path / "nope.csv.gz"))
    with raises(ValueError, "which is a directory"):
        read_csv(tmp_path)
    with raises(ValueError, "path=42", "int"):
        read_csv(42)
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with raises(ValueError, "is empty", "empty.csv"):
        read_csv(empty)
    header = write_csv(tmp_path / "header.csv", [["text", "label"]])
    with raises(ValueError, "the source is empty", "header.csv"):
        read_csv(header)
    short = tmp_path / "short.csv"
    short.write_text("text,label\na,pos\nb\n")
    with raises(ValueError, "line 3", "short.csv", "fewer"):
        read_csv(short)
    blank = write_csv(
        tmp_path / "blank.csv", [["text", "label"], ["a", "pos"], ["b", " "]])
    with raises(ValueError, "empty 'label' on line 3", "blank.csv"):
        read_csv(blank)
    odd = write_csv(tmp_path / "odd.csv", [["text", "label"], ["a", "meh"]])
    with raises(ValueError, "labels[0]='meh'", "['neg', 'pos']"):
        read_csv(odd, label_names=["neg", "pos"])


def test_read_csv_strips_label_cells(tmp_path):
    path = tmp_path / "spaced.csv"
    path.write_text("text,label\ngood film, pos\n bad film ,neg \nok,\t1\n")
    data = read_csv(path, label_names=["neg", "pos", "1"])
    assert data.labels.tolist() == [1, 0, 2]
    assert data.texts == ["good film", " bad film ", "ok"]  # text kept as is
    assert read_csv(path).label_names == ["1", "neg", "pos"]
    numbers = tmp_path / "numbers.csv"
    numbers.write_text("text,label\na, 1\nb,0 \n")
    assert read_csv(numbers).labels.tolist() == [1, 0]


# ---------------------------------------------------------------- read_jsonl


def test_read_jsonl(tmp_path):
    records = [{"text": "good", "label": "pos", "extra": 1}, "",
               {"text": "bad", "label": "neg"}, "   "]
    for name in ("d.jsonl", "d.jsonl.gz"):
        path = write_jsonl(tmp_path / name, records)
        data = read_jsonl(path)
        assert data.texts == ["good", "bad"]
        assert data.labels.tolist() == [1, 0]
        assert data.label_names == ["neg", "pos"]
    ints = write_jsonl(tmp_path / "i.jsonl", [{"s": "a", "y": 2}, {"s": "b", "y": 0}])
    data = read_jsonl(
        str(ints), text_field="s", label_field="y", label_names=list("abc"))
    assert data.labels.tolist() == [2, 0]
    assert read_jsonl(ints, text_field="s", label_field=None).labels is None
    multi = write_jsonl(tmp_path / "m.jsonl", [{"text": "a", "label": [1, 0, 1]}])
    assert read_jsonl(multi).labels.shape == (1, 3)
    pairs = write_jsonl(tmp_path / "p.jsonl", [{"q": "a?", "c": "b", "label": 1}])
    assert read_jsonl(pairs, text_field=("q", "c")).texts == [("a?", "b")]


def test_read_jsonl_multi_label_names(tmp_path):
    path = write_jsonl(tmp_path / "genres.jsonl", [
        {"text": "a", "label": ["action", "comedy"]},
        {"text": "b", "label": []},
        {"text": "c", "label": ["drama"]},
    ])
    data = read_jsonl(path)
    assert data.label_names == ["action", "comedy", "drama"]
    assert data.labels.tolist() == [[1, 1, 0], [0, 0, 0], [0, 0, 1]]
    named = read_jsonl(path, label_names=["drama", "comedy", "action", "horror"])
    assert named.labels.tolist() == [[0, 1, 1, 0], [0, 0, 0, 0], [1, 0, 0, 0]]
    with raises(ValueError, "'drama' in labels[2]", "genres.jsonl"):
        read_jsonl(path, label_names=["action", "comedy"])


@pytest.mark.parametrize(
    "lines, fragments",
    [
        (['{"text": "a", "label": 0}', "{not json"], ["line 2", "not valid JSON"]),
        (['{"text": "a", "label": 0}', "", '{"text": "b", "label": 1'], ["line 3"]),
        (['["a", 0]'], ["line 1", "holds a list"]),
        (['{"text": "a", "label": 0}', '"just text"'], ["line 2", "holds a str"]),
        (['{"text": "a", "label": 0}', '{"txt": "b", "label": 1}'],
         ["'text'", "line 2", "['label', 'txt']"]),
        (['{"text": "a"}'], ["'label'", "line 1", "['text']"]),
    ],
)
def test_read_jsonl_bad_lines(tmp_path, lines, fragments):
    path = write_jsonl(tmp_path / "bad.jsonl", lines)
    with raises(ValueError, "bad.jsonl", "Fix:", *fragments):
        read_jsonl(path)


def test_read_jsonl_errors(tmp_path):
    with raises(FileNotFoundError, "absent.jsonl"):
        read_jsonl(tmp_path / "absent.jsonl")
    empty = write_jsonl(tmp_path / "e.jsonl", ["", ""])
    with raises(ValueError, "the source is empty", "e.jsonl"):
        read_jsonl(empty)
    mixed = write_jsonl(tmp_path / "x.jsonl", [{"text": "a", "label": 0},
                                               {"text": "b", "label": "pos"}])
    with raises(ValueError, "not a mix", "labels[1]='pos'"):
        read_jsonl(mixed)
    number = write_jsonl(tmp_path / "t.jsonl", [{"text": 5, "label": 0}])
    with raises(ValueError, "texts[0]=5", "convert with str(...)"):
        read_jsonl(number)


# ---------------------------------------------------------------- read_folder


def make_folder(root, layout):
    for name, files in layout.items():
        (root / name).mkdir(parents=True, exist_ok=True)
        for file_name, text in files.items():
            (root / name / file_name).write_bytes(text.encode("utf-8"))
    return root


def test_read_folder(tmp_path):
    root = make_folder(tmp_path / "f", {
        "sports": {"b.txt": "goal\r\n", "a.txt": "match", "notes.md": "skip"},
        "arts": {"x.TXT": "painting"},
        "empty_other": {},
    })
    data = read_folder(root, label_names=["sports", "arts"])
    assert data.texts == ["match", "goal\r\n", "painting"]
    assert data.labels.tolist() == [0, 0, 1]
    assert data.label_names == ["sports", "arts"]
    md = read_folder(str(root), label_names=["sports"], extensions=".md")
    assert md.texts == ["skip"]
    (root / "empty_other" / "c.txt").write_text("other")
    everything = read_folder(root)
    assert everything.label_names == ["arts", "empty_other", "sports"]
    assert everything.class_counts() == {"arts": 1, "empty_other": 1, "sports": 2}


def test_read_folder_errors(tmp_path):
    with raises(FileNotFoundError, "nowhere", "does not exist"):
        read_folder(tmp_path / "nowhere")
    file = tmp_path / "file.txt"
    file.write_text("x")
    with raises(ValueError, "which is a file", "file.txt"):
        read_folder(file)
    flat = tmp_path / "flat"
    flat.mkdir()
    (flat / "a.txt").write_text("x")
    with raises(ValueError, "no sub-folders", "flat"):
        read_folder(flat)
    root = make_folder(tmp_path / "r", {"neg": {"a.txt": "x"}, "pos": {"a.csv": "y"}})
    with raises(FileNotFoundError, "'neutral'", "sub-folders found: ['neg', 'pos']"):
        read_folder(root, label_names=["neg", "neutral"])
    with raises(ValueError, "'.txt'", "has none", "pos"):
        read_folder(root)
    (root / "neg" / "b.txt").write_bytes(b"caf\xe9")
    with raises(ValueError, "b.txt", "cannot be decoded", "encoding="):
        read_folder(root, label_names=["neg"])
    assert read_folder(root, ["neg"], encoding="latin-1").texts == ["x", "café"]


# ------------------------------------------------ read_conll, read_parallel


def test_read_conll_word_without_tag(tmp_path):
    path = tmp_path / "ner.txt"
    path.write_text("EU B-ORG\nrejects\nGerman B-MISC\n")
    for tag_column in (-1, 1):
        with raises(ValueError, "ner.txt:2", "1 column ('rejects')",
                    f"tag_column={tag_column}"):
            read_conll(path, tag_column=tag_column)
    # -2 on a two-column line is the word's own column: no tag there.
    path.write_text("EU NNP B-ORG\nrejects O\n")
    with raises(ValueError, "ner.txt:2", "2 columns", "tag_column=-2"):
        read_conll(path, tag_column=-2)
    with raises(ValueError, "different columns", "word_column=1, tag_column=1"):
        read_conll(path, tag_column=1, word_column=1)


def test_read_parallel_trailing_newline(tmp_path):
    source, target = tmp_path / "p.en", tmp_path / "p.de"
    source.write_text("A dog.\nA man.\n", encoding="utf-8")
    target.write_text("Ein Hund.\nEin Mann.", encoding="utf-8")
    for paths in ((source, target), (target, source)):
        data = read_parallel(*paths)
        assert len(data) == 2
    assert read_parallel(source, target).targets == ["Ein Hund.", "Ein Mann."]
    target.write_text("Ein Hund.", encoding="utf-8")
    with raises(ValueError, "has 2 lines", "has 1", "not aligned"):
        read_parallel(source, target)
    # Without skip_empty a pair empty on both sides is kept, not an error.
    source.write_text("A dog.\n\nA man.\n", encoding="utf-8")
    target.write_text("Ein Hund.\n\nEin Mann.\n", encoding="utf-8")
    assert read_parallel(source, target).sources == ["A dog.", "A man."]
    kept = read_parallel(source, target, skip_empty=False)
    assert kept.sources == ["A dog.", "", "A man."] and kept.targets[1] == ""


SQUAD = {"data": [{"title": "T", "paragraphs": [{
    "context": "The tower is in Paris.",
    "qas": [{"id": "q1", "question": "Where is the tower?",
             "answers": [{"text": "Paris", "answer_start": 16}]}]}]}]}


def test_readers_skip_byte_order_mark(tmp_path):
    bom = "\ufeff".encode("utf-8")
    conll = tmp_path / "bom.conll"
    conll.write_bytes(bom + "EU B-ORG\nrejects O\n".encode("utf-8"))
    assert read_conll(conll).words == [["EU", "rejects"]]
    jsonl = tmp_path / "bom.jsonl"
    jsonl.write_bytes(bom + b'{"text": "a", "label": 1}\n')
    assert read_jsonl(jsonl).texts == ["a"]
    source, target = tmp_path / "bom.en", tmp_path / "bom.de"
    source.write_bytes(bom + b"A dog.\n")
    target.write_bytes(b"Ein Hund.\n")
    assert read_parallel(source, target).sources == ["A dog."]
    squad = tmp_path / "bom.json"
    squad.write_bytes(bom + json.dumps(SQUAD).encode("utf-8"))
    assert read_squad(squad).questions == ["Where is the tower?"]
    folder = make_folder(tmp_path / "bom", {"pos": {"a.txt": "\ufeffgood"}})
    assert read_folder(folder).texts == ["good"]


def write_latin1(path, text):
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "wb") as file:
        file.write(text.encode("latin-1"))
    return path


@pytest.mark.parametrize(
    "name, text, read, line",
    [
        ("d.csv", "text,label\nok,pos\ncaf\xe9 film,neg\n", read_csv, 3),
        ("d.csv.gz", "text,label\nok,pos\ncaf\xe9 film,neg\n", read_csv, 3),
        ("d.jsonl", '{"text": "ok", "label": 1}\n{"text": "caf\xe9", "label": 0}\n',
         read_jsonl, 2),
        ("d.conll", "EU B-ORG\n\nM\xfcnchen B-LOC\n", read_conll, 3),
        ("d.json", json.dumps(SQUAD, indent=1).replace('"T"', '"T\xfcr"'),
         read_squad, 4),
    ],
)
def test_readers_name_the_line_they_cannot_decode(tmp_path, name, text, read, line):
    path = write_latin1(tmp_path / name, text)
    with raises(ValueError, "expected utf-8 text", f"line {line} of '{path}'",
                "cannot be decoded", "encoding='latin-1'"):
        read(path)
    assert len(read(path, encoding="latin-1")) >= 1


def test_read_parallel_names_the_line_it_cannot_decode(tmp_path):
    source = write_latin1(tmp_path / "p.en", "A dog.\nA man.\n")
    target = write_latin1(tmp_path / "p.de", "Ein Hund.\nEin M\xe4nn.\n")
    with raises(ValueError, f"line 2 of '{target}'", "cannot be decoded", "encoding="):
        read_parallel(source, target)
    assert read_parallel(source, target, encoding="latin-1").targets[1] == "Ein M\xe4nn."


# ---------------------------------------------------------------- imdb


def expected_sorted(split):
    """The fake reviews of a split in file-name order, neg then pos."""
    count = FAKE_COUNTS[split]
    names = sorted(range(count), key=lambda i: f"{i}_")
    return [review(split, label, i) for label in ("neg", "pos") for i in names]


def test_imdb_folder_and_archive_agree(acl_parent, acl_tar):
    sources = [acl_parent, acl_parent / "aclImdb", str(acl_tar), acl_tar]
    results = [imdb(source, split=("train", "test")) for source in sources]
    for train, test in results:
        assert (len(train), len(test)) == (12, 8)
        assert train.label_names == ["neg", "pos"]
        assert train.class_counts() == {"neg": 6, "pos": 6}
        assert sorted(train.texts) == sorted(expected_sorted("train"))
        assert sorted(test.texts) == sorted(expected_sorted("test"))
        for text, label in zip(train.texts, train.labels):
            assert text.split()[1] == ["neg", "pos"][label]
        assert train.texts == results[0][0].texts
        assert test.labels.tolist() == results[0][1].labels.tolist()
    assert "<br /><br />" in train.texts[0] and "\r\n" in train.texts[0]
    assert "unlabelled" not in results[0][0].texts


def test_imdb_splits(acl_tar):
    train = imdb(acl_tar)
    assert isinstance(train, TextData) and len(train) == 12
    assert train.source.endswith(":train")
    test = imdb(acl_tar, split="test")
    assert len(test) == 8 and test.source.endswith(":test")
    pair = imdb(acl_tar, split=["test", "train"])
    assert isinstance(pair, tuple) and [len(d) for d in pair] == [8, 12]
    (single,) = imdb(acl_tar, split=("train",))
    assert single.texts == train.texts


def test_imdb_order_is_sorted_then_seeded(acl_parent):
    data = imdb(acl_parent, split="train", seed=7)
    rng = np.random.default_rng(7)
    order = rng.permutation(12)
    assert data.texts == [expected_sorted("train")[i] for i in order]
    assert imdb(acl_parent, seed=7).texts == data.texts
    assert imdb(acl_parent, seed=8).texts != data.texts


@pytest.mark.parametrize("max_examples, counts", [
    (4, {"neg": 2, "pos": 2}), (5, {"neg": 3, "pos": 2}), (1, {"neg": 1}),
    (11, {"neg": 6, "pos": 5}), (12, {"neg": 6, "pos": 6}), (500, {"neg": 6, "pos": 6}),
])
def test_imdb_max_examples_balanced(acl_tar, max_examples, counts):
    data = imdb(acl_tar, max_examples=max_examples, seed=3)
    assert data.class_counts() == counts
    assert len(set(data.texts)) == len(data)
    again = imdb(acl_tar, max_examples=max_examples, seed=3)
    assert again.texts == data.texts


def test_imdb_max_examples_seeded(acl_tar):
    train, test = imdb(acl_tar, split=("train", "test"), max_examples=4, seed=0)
    assert (len(train), len(test)) == (4, 4)
    picks = {tuple(imdb(acl_tar, max_examples=4, seed=s).texts) for s in range(6)}
    assert len(picks) > 1


@pytest.mark.parametrize(
    "split", ["validation", "Train", ("train", "dev"), (), [], None, 1])
def test_imdb_rejects_bad_split(acl_tar, split):
    with raises(ValueError, "'train', 'test' or a tuple", f"split={split!r}"):
        imdb(acl_tar, split=split)
    with raises(ValueError, "'train', 'test' or a tuple"):
        imdb_sample(split=split)


@pytest.mark.parametrize("value", [0, -3, 2.5, "10", True])
def test_imdb_rejects_bad_max_examples(acl_tar, value):
    with raises(ValueError, "None or an int >= 1", f"max_examples={value!r}"):
        imdb(acl_tar, max_examples=value)
    with raises(ValueError, "None or an int >= 1"):
        imdb_sample(max_examples=value)


@pytest.mark.parametrize("seed", [None, "0", 1.5, False])
def test_imdb_rejects_bad_seed(acl_tar, seed):
    with raises(ValueError, "`seed` to be an int", f"seed={seed!r}"):
        imdb(acl_tar, seed=seed)


def test_imdb_path_errors(tmp_path, acl_parent):
    with raises(FileNotFoundError, "missing.tar.gz", "does not exist",
                "aclImdb_v1.tar.gz"):
        imdb(tmp_path / "missing.tar.gz")
    other = tmp_path / "other"
    (other / "stuff").mkdir(parents=True)
    with raises(FileNotFoundError, "aclImdb/ folder", "['stuff']", "aclImdb_v1.tar.gz"):
        imdb(other)
    with raises(ValueError, "path=3.5", "float"):
        imdb(3.5)
    not_tar = tmp_path / "reviews.tar.gz"
    not_tar.write_bytes(b"not an archive at all")
    with raises(ValueError, "readable .tar.gz", "reviews.tar.gz", "download it again"):
        imdb(not_tar)
    unsup = tmp_path / "aclImdb_unsup.tar.gz"
    with tarfile.open(unsup, "w:gz") as archive:
        archive.add(acl_parent / "aclImdb/train/unsup/0_0.txt",
                    arcname="aclImdb/train/unsup/0_0.txt")
    with raises(ValueError, "aclImdb/train/neg/*.txt", "not the unsupervised part"):
        imdb(unsup)
    for folder in (acl_parent / "aclImdb" / "test" / "pos").iterdir():
        folder.unlink()
    with raises(ValueError, "has none", "pos"):
        imdb(acl_parent, split="test")
    assert len(imdb(acl_parent, split="train")) == 12


def test_imdb_without_path_and_without_tfds(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorflow_datasets", None)
    with raises(FileNotFoundError, "path=None", "not installed", "path=",
                "aclImdb_v1.tar.gz", "pip install tensorflow-datasets"):
        imdb()


def fake_tfds(load):
    module = types.ModuleType("tensorflow_datasets")
    module.load = load
    module.as_numpy = lambda dataset: iter(dataset)
    return module


def test_imdb_without_path_when_tfds_fails(monkeypatch):
    def load(name, split, as_supervised):
        raise ConnectionError("no network")

    monkeypatch.setitem(sys.modules, "tensorflow_datasets", fake_tfds(load))
    with raises(FileNotFoundError, "ConnectionError: no network", "path=",
                "pip install tensorflow-datasets"):
        imdb(split="test")


def test_imdb_through_tfds(monkeypatch):
    calls = []

    def load(name, split, as_supervised):
        calls.append((name, split, as_supervised))
        return [(f"{split} {i}".encode(), np.int64(i % 2)) for i in range(6)]

    monkeypatch.setitem(sys.modules, "tensorflow_datasets", fake_tfds(load))
    train, test = imdb(split=("train", "test"), max_examples=4)
    assert calls == [("imdb_reviews", "train", True), ("imdb_reviews", "test", True)]
    assert train.class_counts() == {"neg": 2, "pos": 2}
    assert all(text.startswith("test ") for text in test.texts)
    assert train.source == "tensorflow_datasets:imdb_reviews/train"


# ---------------------------------------------------------------- imdb_sample


def test_imdb_sample():
    assert SAMPLE.stat().st_size < 1_000_000
    train, test = imdb_sample(split=("train", "test"))
    for data in (train, test):
        assert len(data) == 900
        assert data.class_counts() == {"neg": 450, "pos": 450}
        assert data.label_names == ["neg", "pos"]
        assert len(set(data.texts)) == 900
    # IMDB itself repeats 123 review texts across train and test (one of
    # them is in the sample); the data is kept as published.
    assert len(set(train.texts) & set(test.texts)) <= 1
    assert imdb_sample().texts == train.texts
    small = imdb_sample(split="test", max_examples=10, seed=1)
    assert small.class_counts() == {"neg": 5, "pos": 5}
    assert small.texts == imdb_sample(split="test", max_examples=10, seed=1).texts


def test_sample_file_format_and_readme():
    with gzip.open(SAMPLE, "rt", encoding="utf-8") as file:
        records = [json.loads(line) for line in file]
    assert len(records) == 1800
    assert all(set(record) == {"split", "text", "label"} for record in records)
    assert {record["label"] for record in records} == {"neg", "pos"}
    assert [record["split"] for record in records] == ["train"] * 900 + ["test"] * 900
    readme = (SAMPLE.parent / "README.md").read_text()
    assert hashlib.sha256(SAMPLE.read_bytes()).hexdigest() in readme
    assert f"{SAMPLE.stat().st_size:,} bytes" in readme
    assert "Maas" in readme and "@InProceedings" in readme


def load_script():
    spec = importlib.util.spec_from_file_location(
        "make_imdb_sample", REPO / "scripts" / "make_imdb_sample.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_sample_script_is_deterministic(acl_tar, tmp_path):
    script = load_script()
    chosen = script.select(acl_tar, per_class=2)
    first = script.write(chosen, tmp_path / "a.jsonl.gz")[1]
    second = script.write(script.select(acl_tar, 2), tmp_path / "b.jsonl.gz")[1]
    assert first == second
    with gzip.open(tmp_path / "a.jsonl.gz", "rt", encoding="utf-8") as file:
        records = [json.loads(line) for line in file]
    assert len(records) == 8
    for split in ("train", "test"):
        labels = [r["label"] for r in records if r["split"] == split]
        assert sorted(labels) == ["neg", "neg", "pos", "pos"]
    with raises(ValueError, "at least 5 reviews in test/neg"):
        script.select(acl_tar, per_class=5)


# ---------------------------------------------------------------- package


def test_public_api():
    assert sorted(datasets.__all__) == sorted(
        ["ParallelData", "QAData", "TaggedData", "TextData", "from_lists",
         "imdb", "imdb_sample", "multi30k", "read_conll", "read_csv",
         "read_folder", "read_jsonl", "read_parallel", "read_squad"])
    for name in datasets.__all__:
        assert getattr(datasets, name).__doc__


@pytest.mark.parametrize(
    "module", ["__init__.py", "readers.py", "imdb.py", "conll.py", "squad.py", "parallel.py"]
)
def test_modules_import_no_heavy_frameworks(module):
    tree = ast.parse((PACKAGE / module).read_text())
    assert ast.get_docstring(tree)
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module.split(".")[0])
    assert not imported & {"keras", "torch", "keras_hub", "tensorflow"}
