"""Parallel text, for translation and other text-to-text tasks."""

import dataclasses
import os
import pathlib

from keras_transfer.datasets.readers import _check_path_type
from keras_transfer.datasets.readers import _decode_error
from keras_transfer.datasets.readers import _text_encoding
from keras_transfer.wording import counted


@dataclasses.dataclass
class ParallelData:
    """Aligned source and target texts.

    Args:
        sources: the source strings.
        targets: the target strings, one per source.
        source: where the data came from; used in messages. Defaults to
            `"<in memory>"`.
    """

    sources: list
    targets: list
    source: str = "<in memory>"

    def __post_init__(self):
        self.sources, self.targets = list(self.sources), list(self.targets)
        if len(self.sources) != len(self.targets):
            raise ValueError(
                f"{self.source}: {counted(len(self.sources), 'source')} "
                f"but {counted(len(self.targets), 'target')}. "
                "Parallel files must have one line per sentence, aligned."
            )
        for name, texts in (("sources", self.sources), ("targets", self.targets)):
            for i, text in enumerate(texts):
                if not isinstance(text, str):
                    raise ValueError(
                        f"{self.source}: {name}[{i}] is {text!r} of type "
                        f"{type(text).__name__}; expected a string."
                    )

    def __len__(self):
        return len(self.sources)

    def take(self, n):
        """The first `n` pairs."""
        return ParallelData(self.sources[:n], self.targets[:n], self.source)

    def __repr__(self):
        return f"ParallelData({counted(len(self), 'pair')} from {self.source})"


def read_parallel(source_path, target_path, skip_empty=True, encoding="utf-8"):
    """Reads two aligned text files, one sentence a line.

    The newline that ends a file's last line does not start another line,
    so two files of the same sentences align whether each ends with a
    newline or not.

    Args:
        source_path: file of source sentences.
        target_path: file of target sentences, aligned by line.
        skip_empty: drop pairs where both lines are empty (a trailing blank
            line, as in Multi30k's train and val files); `False` keeps them
            as `("", "")`. A pair with one side empty is an alignment error
            and raises. Defaults to `True`.
        encoding: text encoding of both files. Defaults to `"utf-8"` (a
            leading byte-order mark is skipped).

    Returns:
        A `ParallelData`.
    """
    _check_path_type(source_path, "source_path", example="multi30k/train.en")
    _check_path_type(target_path, "target_path", example="multi30k/train.de")
    paths = [pathlib.Path(os.path.expanduser(os.fspath(p))) for p in (source_path, target_path)]
    lines = []
    for path in paths:
        if not path.is_file():
            raise FileNotFoundError(f"No file at {str(path)!r}. Check the path.")
        try:
            text = path.read_text(encoding=_text_encoding(encoding))
        except UnicodeDecodeError as error:
            raise _decode_error(path, encoding, error, compressed=False) from None
        # Each file on its own: "a\nb\n" is two lines, like "a\nb".
        lines.append(text.removesuffix("\n").split("\n") if text else [])
    sources, targets = lines
    if len(sources) != len(targets):
        raise ValueError(
            f"{str(paths[0])!r} has {counted(len(sources), 'line')} "
            f"but {str(paths[1])!r} has "
            f"{len(targets)}: the files are not aligned."
        )
    pairs = []
    for number, (s, t) in enumerate(zip(sources, targets), start=1):
        if skip_empty and not s.strip() and not t.strip():
            continue
        if bool(s.strip()) != bool(t.strip()):
            raise ValueError(
                f"Line {number} is empty on one side only ({s!r} / {t!r}): the "
                "files are misaligned there."
            )
        pairs.append((s.strip(), t.strip()))
    return ParallelData([s for s, _ in pairs], [t for _, t in pairs], f"{paths[0]} / {paths[1].name}")


def multi30k(path, split="train", source_language="en", target_language="de"):
    """The Multi30k English–German data set from a local folder.

    Args:
        path: the folder holding `train.en`, `train.de`, `val.*`, `test.*`.
        split: `"train"`, `"val"` or `"test"`. Defaults to `"train"`.
        source_language: `"en"` or `"de"`. Defaults to `"en"`.
        target_language: the other one. Defaults to `"de"`.
    """
    _check_path_type(path, example="multi30k")
    if split not in ("train", "val", "test"):
        raise ValueError(f"Unknown split {split!r}. Expected 'train', 'val' or 'test'.")
    if {source_language, target_language} != {"en", "de"}:
        raise ValueError(
            "Multi30k pairs English ('en') with German ('de'). Received "
            f"source_language={source_language!r}, target_language={target_language!r}."
        )
    folder = pathlib.Path(os.path.expanduser(os.fspath(path)))
    return read_parallel(folder / f"{split}.{source_language}", folder / f"{split}.{target_language}")
