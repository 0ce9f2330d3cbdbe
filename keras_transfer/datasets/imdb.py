"""The IMDB Large Movie Review Dataset (binary sentiment) as `TextData`.

- `imdb`: the full labelled dataset (25,000 train and 25,000 test reviews)
  from an extracted `aclImdb/` folder, straight from `aclImdb_v1.tar.gz`
  (streamed, nothing is extracted to disk), or through
  `tensorflow_datasets` when no path is given.
- `imdb_sample`: a small class-balanced sample shipped with this package
  (900 train and 900 test reviews), for examples and tests offline.

Labels are `0 = "neg"` (rating <= 4/10) and `1 = "pos"` (rating >= 7/10).
The review text is kept exactly as in the dataset, including the HTML line
breaks (`<br />`) many reviews contain: the subword tokenizers of the
pretrained models handle them, and removing them would change the data
that published results were measured on. Clean them yourself if you
want, e.g. `text.replace("<br />", " ")`.

Maas et al., "Learning Word Vectors for Sentiment Analysis", ACL 2011.
https://ai.stanford.edu/~amaas/data/sentiment/
This module needs only the standard library and NumPy.
"""

import gzip
import importlib.resources
import json
import numbers
import os
import re
import tarfile
from pathlib import Path

import numpy as np

from keras_transfer.datasets.readers import TextData
from keras_transfer.datasets.readers import _describe
from keras_transfer.datasets.readers import read_folder

LABEL_NAMES = ["neg", "pos"]
SPLITS = ("train", "test")
SAMPLE_FILE = "imdb_sample.jsonl.gz"
DOWNLOAD_URL = "https://ai.stanford.edu/~amaas/data/sentiment/aclImdb_v1.tar.gz"

# A review inside the archive: `[./]aclImdb/<split>/<neg|pos>/<id>_<rating>.txt`.
_MEMBER = re.compile(r"(?:^|/)(train|test)/(neg|pos)/([^/]+\.txt)$")


def _check_split(split):
    """Return the requested splits as a tuple, validating every name."""
    names = (split,) if isinstance(split, str) else split
    if not isinstance(names, (tuple, list)) or not names or any(
        name not in SPLITS for name in names
    ):
        raise ValueError(
            "expected `split` to be 'train', 'test' or a tuple of them. "
            f"Received: split={_describe(split)}. "
            "Fix: pass e.g. split='train' or split=('train', 'test')."
        )
    return tuple(names)


def _check_options(max_examples, seed):
    if max_examples is not None and (
        isinstance(max_examples, bool)
        or not isinstance(max_examples, numbers.Integral)
        or max_examples < 1
    ):
        raise ValueError(
            "expected `max_examples` to be None or an int >= 1. Received: "
            f"max_examples={max_examples!r}. Fix: pass e.g. max_examples=2000."
        )
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise ValueError(
            f"expected `seed` to be an int. Received: seed={seed!r}. "
            "Fix: pass e.g. seed=0."
        )


def _balanced_indices(labels, max_examples, rng):
    """Indices of a class-balanced random subset of at most `max_examples`.

    Each class gets `max_examples // num_classes` examples; the remainder
    goes one each to the lowest class ids. A class with fewer examples
    than its share gives all it has.
    """
    classes = np.unique(labels)
    share, extra = divmod(max_examples, len(classes))
    chosen = []
    for position, label in enumerate(classes):
        members = np.flatnonzero(labels == label)
        size = min(share + (position < extra), len(members))
        chosen.append(rng.choice(members, size=size, replace=False))
    return np.concatenate(chosen)


def _finish(texts, labels, source, max_examples, seed):
    """Build the `TextData`: optional balanced subset, then a seeded shuffle."""
    data = TextData(texts, np.asarray(labels, dtype=np.int64), LABEL_NAMES, source)
    rng = np.random.default_rng(seed)
    if max_examples is None or max_examples >= len(data):
        indices = np.arange(len(data))
    else:
        indices = _balanced_indices(data.labels, max_examples, rng)
    return data[rng.permutation(indices)]


def _read_archive(path, splits):
    """Stream the reviews of `splits` out of a tar archive.

    Returns:
        A dict `{split: (texts, labels)}`, files sorted by name within each
        class, `neg` before `pos`.
    """
    found = {(split, name): [] for split in splits for name in LABEL_NAMES}
    try:
        with tarfile.open(path, "r|*") as archive:
            for member in archive:
                match = _MEMBER.search(member.name)
                if not match or not member.isfile():
                    continue
                split, name, file_name = match.groups()
                if split in splits:
                    data = archive.extractfile(member).read()
                    found[split, name].append((file_name, data))
    except (tarfile.TarError, EOFError, OSError) as error:
        raise ValueError(
            f"expected a readable .tar.gz archive of the IMDB dataset. "
            f"Received: path='{path}' ({type(error).__name__}: {error}). "
            f"Fix: download it again from {DOWNLOAD_URL}, or pass the "
            "extracted aclImdb/ folder."
        ) from error
    result = {}
    for split in splits:
        texts, labels = [], []
        for label, name in enumerate(LABEL_NAMES):
            files = sorted(found[split, name])
            if not files:
                raise ValueError(
                    f"expected review files aclImdb/{split}/{name}/*.txt in "
                    f"the archive. Received: path='{path}' has none. Fix: "
                    f"pass aclImdb_v1.tar.gz from {DOWNLOAD_URL} (the "
                    "labelled dataset, not the unsupervised part)."
                )
            for file_name, data in files:
                try:
                    texts.append(data.decode("utf-8"))
                except UnicodeDecodeError as error:
                    raise ValueError(
                        f"expected UTF-8 review files. Received: "
                        f"aclImdb/{split}/{name}/{file_name} in '{path}' "
                        f"cannot be decoded ({error.reason}). Fix: download "
                        "the archive again."
                    ) from None
            labels.extend([label] * len(files))
        result[split] = (texts, labels)
    return result


def _find_folder(path):
    """Return the `aclImdb/` folder given it or the folder that holds it."""
    if (path / "aclImdb").is_dir():
        return path / "aclImdb"
    if (path / "train").is_dir() or (path / "test").is_dir():
        return path
    entries = sorted(entry.name for entry in path.iterdir())[:10]
    raise FileNotFoundError(
        "expected the extracted aclImdb/ folder (holding train/ and test/) or "
        f"the folder that contains it. Received: path='{path}' with entries "
        f"{entries}. Fix: pass the path of aclImdb/ or of aclImdb_v1.tar.gz."
    )


def _read_tfds(splits):
    """Load `splits` of `imdb_reviews` through tensorflow_datasets."""
    fix = (
        "Fix: pass path= to the extracted aclImdb/ folder or to "
        f"aclImdb_v1.tar.gz (download: {DOWNLOAD_URL}); or, when online, "
        "`pip install tensorflow-datasets` to download it automatically."
    )
    try:
        import tensorflow_datasets as tfds
    except ImportError as error:
        raise FileNotFoundError(
            "expected `path` to the IMDB data, or tensorflow_datasets to "
            "download it. Received: path=None and tensorflow_datasets is not "
            f"installed. {fix}"
        ) from error
    result = {}
    try:
        for split in splits:
            dataset = tfds.load("imdb_reviews", split=split, as_supervised=True)
            texts, labels = [], []
            for text, label in tfds.as_numpy(dataset):
                texts.append(text.decode("utf-8"))
                labels.append(int(label))
            result[split] = (texts, labels)
    except Exception as error:  # tfds raises many types when offline
        raise FileNotFoundError(
            "expected tensorflow_datasets to provide 'imdb_reviews'. "
            f"Received: path=None and tfds.load failed with "
            f"{type(error).__name__}: {error}. {fix}"
        ) from error
    return result


def imdb(path=None, split="train", max_examples=None, seed=0):
    """Load the IMDB movie review sentiment dataset (Maas et al., 2011).

    Reviews are read in sorted file order (`neg` then `pos`), then an
    optional class-balanced subset is drawn and the examples are shuffled,
    both with `seed`, so the result depends only on the arguments. The
    text is kept as in the dataset, `<br />` tags included (see the
    module docstring).

    Args:
        path: one of
            - the extracted `aclImdb/` folder, or the folder holding it;
            - the archive `aclImdb_v1.tar.gz` (read as a stream, nothing is
              written to disk; about 2 s for all 50,000 reviews);
            - `None` (default): load `imdb_reviews` with tensorflow_datasets
              if it is installed and can download or find the data.
        split: `"train"`, `"test"`, or a tuple of them such as
            `("train", "test")`. Defaults to `"train"`.
        max_examples: `None` (default) for all 25,000 reviews of a split, or
            an int: take a random class-balanced subset of that size from
            each requested split (an odd size gives `neg` the extra one).
        seed: int seed for the subset and the shuffle. Defaults to 0.

    Returns:
        A `TextData` with `label_names=["neg", "pos"]`, or a tuple of them
        (one per split, in the order asked) when `split` is a tuple.

    Raises:
        FileNotFoundError: if `path` does not exist or holds no aclImdb
            data, or if `path=None` and tensorflow_datasets is missing or
            fails.
        ValueError: for a bad `split`, `max_examples` or `seed`, or an
            unreadable archive.

    Example:

    >>> train, test = imdb("data/aclImdb_v1.tar.gz", split=("train", "test"))
    """
    splits = _check_split(split)
    _check_options(max_examples, seed)
    if path is None:
        loaded = _read_tfds(splits)
        source = "tensorflow_datasets:imdb_reviews/{}"
    else:
        if not isinstance(path, (str, os.PathLike)):
            raise ValueError(
                "expected `path` to be a str or pathlib.Path. Received: "
                f"path={_describe(path)} of type {type(path).__name__}. "
                "Fix: pass the aclImdb/ folder or aclImdb_v1.tar.gz."
            )
        path = Path(path).expanduser()
        if not path.exists():
            raise FileNotFoundError(
                f"expected the aclImdb/ folder or aclImdb_v1.tar.gz. "
                f"Received: path='{path}', which does not exist. Fix: check "
                f"the path, or download the archive from {DOWNLOAD_URL}."
            )
        if path.is_file():
            loaded = _read_archive(path, splits)
            source = f"{path}:{{}}"
        else:
            root = _find_folder(path)
            loaded = {}
            for name in splits:
                folder = read_folder(root / name, label_names=LABEL_NAMES)
                loaded[name] = (folder.texts, folder.labels)
            source = str(root / "{}")
    result = tuple(
        _finish(*loaded[name], source.format(name), max_examples, seed)
        for name in splits
    )
    return result[0] if isinstance(split, str) else result


def imdb_sample(split="train", max_examples=None, seed=0):
    """Load the small IMDB sample shipped with the package (no download).

    900 train and 900 test reviews, 450 of each class per split, drawn
    at random from the full dataset by `scripts/make_imdb_sample.py` (see
    `keras_transfer/datasets/_sample/README.md`). Good for examples, smoke
    tests and quick experiments; use `imdb()` for real results.

    Args:
        split: `"train"`, `"test"` or a tuple of them. Defaults to
            `"train"`.
        max_examples: `None` (default) for the whole sample split, or an
            int for a class-balanced subset of it.
        seed: int seed for the subset and the shuffle. Defaults to 0.

    Returns:
        A `TextData` (or a tuple of them for a tuple `split`) with
        `label_names=["neg", "pos"]`.
    """
    splits = _check_split(split)
    _check_options(max_examples, seed)
    resource = importlib.resources.files(__package__) / "_sample" / SAMPLE_FILE
    if not resource.is_file():
        raise FileNotFoundError(
            f"expected the shipped sample at '{resource}'. Received: the file "
            "is missing from this installation. Fix: reinstall keras_transfer "
            "(the package data _sample/*.jsonl.gz must be included)."
        )
    loaded = {name: ([], []) for name in splits}
    with gzip.open(resource.open("rb"), "rt", encoding="utf-8") as file:
        for line in file:
            record = json.loads(line)
            if record["split"] in loaded:
                texts, labels = loaded[record["split"]]
                texts.append(record["text"])
                labels.append(LABEL_NAMES.index(record["label"]))
    result = tuple(
        _finish(*loaded[name], f"{SAMPLE_FILE}:{name}", max_examples, seed)
        for name in splits
    )
    return result[0] if isinstance(split, str) else result
