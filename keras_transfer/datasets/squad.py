"""Extractive question answering data: the `QAData` container and a SQuAD reader.

`QAData` holds questions, the contexts that answer them, and the answers as
SQuAD gives them: for each question a dict `{"text": [...], "answer_start":
[...]}` of answer strings and their character offsets into the context (an
empty list marks an unanswerable question). `read_squad` reads the official
SQuAD JSON files, v1.1 and v2.0.

Pure Python: importing this module does not import Keras.
"""

import dataclasses
import gzip
import json
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


def _where(index, ids):
    if ids is not None and ids[index] is not None:
        return f"example {index} (id {ids[index]!r})"
    return f"example {index}"


def check_strings(values, name, ids=None):
    """Raises a `ValueError` unless `values` is a list of non-empty strings."""
    if isinstance(values, str):
        raise ValueError(
            f"Expected a list of strings for `{name}`, got a single string. "
            f"Wrap it in a list: [{values[:40]!r}]."
        )
    values = list(values)
    for i, value in enumerate(values):
        if not isinstance(value, str):
            raise ValueError(
                f"Expected every entry of `{name}` to be a string. Received: "
                f"{name}[{i}]={_describe(value)} of type {type(value).__name__} "
                f"in {_where(i, ids)}."
            )
        if not value.strip():
            raise ValueError(
                f"`{name}[{i}]` is empty ({_where(i, ids)}): every question needs "
                "a question and a context with text in them. Drop that example."
            )
    return values


def normalize_answers(answers, contexts, ids=None, name="answers"):
    """Checks answers against their contexts; returns SQuAD-style dicts.

    Each answer may be `None` or `""` (unanswerable), a dict
    `{"text": str | list, "answer_start": int | list}`, or a plain string,
    which is located at its first occurrence in the context. Every answer
    with a start must be found at that character offset.

    Returns:
        One `{"text": [...], "answer_start": [...]}` dict per example.
    """
    if isinstance(answers, (str, dict)):
        raise ValueError(f"Expected a list with one answer per question for `{name}`.")
    answers = list(answers)
    if len(answers) != len(contexts):
        raise ValueError(
            f"Got {counted(len(contexts), 'context')} but {len(answers)} {name}. Give one "
            "answer (or None for an unanswerable question) per question."
        )
    out = []
    for i, (answer, context) in enumerate(zip(answers, contexts)):
        where = _where(i, ids)
        if answer is None or answer == "":
            out.append({"text": [], "answer_start": []})
            continue
        if isinstance(answer, str):
            start = context.find(answer)
            if start < 0:
                raise ValueError(
                    f"The answer {answer!r} of {where} does not occur in its "
                    f"context ({_describe(context, 80)}). Answers are spans of "
                    "the context: copy the exact text, or give "
                    "{'text': ..., 'answer_start': ...}."
                )
            out.append({"text": [answer], "answer_start": [start]})
            continue
        if not isinstance(answer, dict) or "text" not in answer or "answer_start" not in answer:
            raise ValueError(
                f"`{name}[{i}]` is {_describe(answer)}. Expected a dict "
                "{'text': ..., 'answer_start': ...} (SQuAD style), the answer "
                "string, or None for an unanswerable question."
            )
        texts, starts = answer["text"], answer["answer_start"]
        if not isinstance(texts, (list, tuple, np.ndarray)):  # one answer text
            texts = [texts]
        if not isinstance(starts, (list, tuple, np.ndarray)):
            starts = [starts]
        # NumPy integers (answers read with pandas or NumPy) are integers.
        texts = list(texts)
        starts = [int(start) if isinstance(start, np.integer) else start for start in starts]
        if len(texts) != len(starts):
            raise ValueError(
                f"`{name}[{i}]` has {counted(len(texts), 'text')} but "
                f"{counted(len(starts), 'answer_start value')} ({where}). Give one start per text."
            )
        for text, start in zip(texts, starts):
            if not isinstance(text, str) or not text.strip():
                raise ValueError(
                    f"An answer text of {where} is {_describe(text)}; expected a "
                    "non-empty string. Use None for an unanswerable question."
                )
            if isinstance(start, bool) or not isinstance(start, int):
                raise ValueError(
                    f"An answer_start of {where} is {_describe(start)}; expected "
                    "the character offset of the answer in the context (an int)."
                )
            found = context[start : start + len(text)] if start >= 0 else ""
            if found != text:
                raise ValueError(
                    f"The answer of {where} is not in its context at "
                    f"answer_start={start}: the answer text is {text!r} but the "
                    f"context there reads {found!r}. Fix answer_start (the "
                    f"text first occurs at {context.find(text)}; -1 means "
                    "nowhere)."
                )
        out.append({"text": texts, "answer_start": starts})
    return out


@dataclasses.dataclass(repr=False)
class QAData:
    """Questions, contexts and answers for extractive question answering.

    Args:
        questions: list of question strings.
        contexts: list of context strings, one per question (the same
            context may repeat).
        answers: `None` (for prediction only), or one answer per question:
            a SQuAD dict `{"text": [...], "answer_start": [...]}`, a dict
            with a single text and start, the answer string (located at its
            first occurrence), or `None`/`""` for an unanswerable question.
            Stored as SQuAD dicts. Defaults to `None`.
        ids: one id per question, used in error messages and kept for
            writing predictions. Defaults to `None` (the positions).
        titles: the title of the article each question comes from, to split
            by article (so that no context is shared between splits).
            Defaults to `None`.
        plausible_answers: SQuAD 2.0's plausible (but wrong) answers of
            unanswerable questions, as SQuAD dicts; informative only.
            Defaults to `None`.
        source: where the data came from. Defaults to `"<in memory>"`.

    Example:
    ```python
    data = kt.datasets.QAData(
        questions=["Where is the tower?"],
        contexts=["The tower is in Paris."],
        answers=[{"text": ["Paris"], "answer_start": [16]}],
    )
    ```
    """

    questions: list
    contexts: list
    answers: list | None = None
    ids: list | None = None
    titles: list | None = None
    plausible_answers: list | None = None
    source: str = "<in memory>"

    def __post_init__(self):
        self.source = str(self.source)
        if self.ids is None:
            self.ids = [str(i) for i in range(len(self.questions) if not isinstance(self.questions, str) else 1)]
        self.ids = list(self.ids)
        self.questions = check_strings(self.questions, "questions", self.ids)
        n = len(self.questions)
        if n == 0:
            raise ValueError(f"No questions in {self.source}: there is nothing to train or answer.")
        if len(self.ids) != n:
            raise ValueError(
                f"Got {counted(n, 'question')} but {counted(len(self.ids), 'id')}."
            )
        if isinstance(self.contexts, str) or len(list(self.contexts)) != n:
            count = 1 if isinstance(self.contexts, str) else len(list(self.contexts))
            raise ValueError(
                f"Got {counted(n, 'question')} but {counted(count, 'context')}. Give one context per "
                "question (repeat a context that answers several questions)."
            )
        self.contexts = check_strings(self.contexts, "contexts", self.ids)
        if self.answers is not None:
            self.answers = normalize_answers(self.answers, self.contexts, self.ids)
        for name in ("titles", "plausible_answers"):
            value = getattr(self, name)
            if value is not None:
                value = list(value)
                if len(value) != n:
                    raise ValueError(f"Got {counted(n, 'question')} but {len(value)} {name}.")
                setattr(self, name, value)

    def __len__(self):
        return len(self.questions)

    def select(self, indices):
        """A new `QAData` with the examples at `indices`, in that order."""
        indices = [int(i) for i in indices]

        def pick(values):
            return None if values is None else [values[i] for i in indices]

        return QAData(
            questions=pick(self.questions),
            contexts=pick(self.contexts),
            answers=pick(self.answers),
            ids=pick(self.ids),
            titles=pick(self.titles),
            plausible_answers=pick(self.plausible_answers),
            source=self.source,
        )

    def take(self, n):
        """The first `n` examples."""
        return self.select(range(min(n, len(self))))

    @property
    def article_titles(self):
        """The distinct titles, in order of first appearance."""
        if self.titles is None:
            raise ValueError(f"{self.source} has no titles to split by.")
        return list(dict.fromkeys(self.titles))

    def with_titles(self, titles):
        """The examples whose article title is in `titles`.

        Example: `train = data.with_titles(data.article_titles[:38])`.
        """
        if isinstance(titles, str):
            titles = [titles]
        wanted = set(titles)
        unknown = sorted(wanted - set(self.article_titles))
        if unknown:
            raise ValueError(
                f"Unknown titles {unknown[:3]} in {self.source}; its titles are "
                f"{self.article_titles[:5]}…"
            )
        return self.select(i for i, t in enumerate(self.titles) if t in wanted)

    def __repr__(self):
        answerable = (
            "" if self.answers is None
            else f", {sum(bool(a['text']) for a in self.answers)} answerable"
        )
        return f"QAData({counted(len(self), 'question')}{answerable}, source={self.source!r})"


def read_squad(path, encoding="utf-8"):
    """Reads a SQuAD JSON file (v1.1 or v2.0) into a `QAData`.

    Every answer is checked against its context at its `answer_start`.
    SQuAD 2.0's unanswerable questions (`is_impossible: true`) get an empty
    answer list; their `plausible_answers` are kept apart.

    Args:
        path: the `.json` (or `.json.gz`) file, with SQuAD's layout
            `{"data": [{"title", "paragraphs": [{"context", "qas": [...]}]}]}`.
        encoding: the file's text encoding. Defaults to `"utf-8"` (a
            leading byte-order mark is skipped).

    Returns:
        A `QAData` with ids, questions, contexts, answers and titles.

    Example:
    ```python
    dev = kt.datasets.read_squad("dev-v1.1.json")
    train, test = dev.with_titles(dev.article_titles[:38]), dev.with_titles(dev.article_titles[38:])
    ```
    """
    _check_path_type(path, example="squad/train-v1.1.json")
    path = Path(os.fspath(path)).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"No SQuAD file at {str(path)!r}. Check the path.")
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rt", encoding=_text_encoding(encoding)) as f:
            content = json.load(f)
    except UnicodeDecodeError as error:
        raise _decode_error(path, encoding, error) from None
    except (json.JSONDecodeError, OSError) as error:
        raise ValueError(f"{str(path)!r} is not a readable JSON file: {error}") from None
    if not isinstance(content, dict) or not isinstance(content.get("data"), list):
        raise ValueError(
            f"{str(path)!r} does not have SQuAD's layout: expected an object with "
            "a 'data' list of articles ({'title', 'paragraphs': [{'context', 'qas'}]})."
        )
    columns = {k: [] for k in ("ids", "questions", "contexts", "answers", "titles", "plausible")}
    for a, article in enumerate(content["data"]):
        title = article.get("title", str(a))
        for p, paragraph in enumerate(article.get("paragraphs", [])):
            if "context" not in paragraph or "qas" not in paragraph:
                raise ValueError(
                    f"{str(path)!r}: paragraph {p} of article {title!r} lacks "
                    "'context' or 'qas'."
                )
            for qa in paragraph["qas"]:
                impossible = bool(qa.get("is_impossible", False))
                answers = [] if impossible else qa.get("answers", [])
                columns["ids"].append(str(qa.get("id", len(columns["ids"]))))
                columns["questions"].append(qa.get("question"))
                columns["contexts"].append(paragraph["context"])
                columns["titles"].append(title)
                columns["answers"].append(
                    {
                        "text": [x.get("text") for x in answers],
                        "answer_start": [x.get("answer_start") for x in answers],
                    }
                )
                plausible = qa.get("plausible_answers", [])
                columns["plausible"].append(
                    {
                        "text": [x.get("text") for x in plausible],
                        "answer_start": [x.get("answer_start") for x in plausible],
                    }
                )
    return QAData(
        questions=columns["questions"],
        contexts=columns["contexts"],
        answers=columns["answers"],
        ids=columns["ids"],
        titles=columns["titles"],
        plausible_answers=columns["plausible"],
        source=str(path),
    )
