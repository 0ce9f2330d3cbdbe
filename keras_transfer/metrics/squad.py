"""SQuAD exact match and F1, as the official evaluation scripts compute them.

The answers are normalised first (lower case, punctuation removed, the
articles "a", "an" and "the" removed, whitespace collapsed); a prediction's
score against a question is its best score over the reference answers; the
dataset score is the mean over questions, in percent.

This follows the SQuAD v2.0 script, which agrees with v1.1 on every
answerable question and also scores unanswerable ones: a question whose
references are all empty has the single reference `""`, and an empty
prediction matches it (exact match and F1 of 1).

Pure Python: importing this module does not import Keras.
"""

import collections
import re
import string

from keras_transfer.wording import counted

_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)
_PUNCTUATION = set(string.punctuation)


def normalize_answer(text):
    """Lower-cases `text` and removes punctuation, articles and extra spaces.

    Args:
        text: the answer string.

    Returns:
        The normalised string, as the official SQuAD script makes it.

    Example:
    ```python
    normalize_answer("The  Eiffel Tower!")  # "eiffel tower"
    ```
    """
    if not isinstance(text, str):
        raise ValueError(f"Expected `text` to be an answer string. Received: {text!r} of type {type(text).__name__}.")
    text = text.lower()
    text = "".join(ch for ch in text if ch not in _PUNCTUATION)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def exact_match(prediction, reference):
    """1 when the normalised strings are equal, else 0."""
    return int(normalize_answer(prediction) == normalize_answer(reference))


def f1_score(prediction, reference):
    """Token-overlap F1 of two answers after normalisation, in [0, 1].

    Two answers that normalise to nothing score 1 together; one empty and
    one not score 0.
    """
    predicted = normalize_answer(prediction).split()
    expected = normalize_answer(reference).split()
    if not predicted or not expected:
        return float(predicted == expected)
    common = collections.Counter(predicted) & collections.Counter(expected)
    same = sum(common.values())
    if same == 0:
        return 0.0
    precision = same / len(predicted)
    recall = same / len(expected)
    return 2 * precision * recall / (precision + recall)


def _reference_texts(reference, index):
    """The list of reference strings of one question."""
    if isinstance(reference, dict):
        reference = reference.get("text", [])
    if isinstance(reference, str):
        reference = [reference]
    if not isinstance(reference, (list, tuple)) or not all(
        isinstance(r, str) for r in reference
    ):
        raise ValueError(
            f"references[{index}] is {reference!r}. Expected a string, a list of "
            "strings, or an answers dict {'text': [...], 'answer_start': [...]}."
        )
    # As the official v2.0 script: empty references do not count; a
    # question with none is unanswerable and has the reference "".
    texts = [r for r in reference if normalize_answer(r)]
    return texts or [""]


def _prediction_text(prediction, index):
    if isinstance(prediction, dict):
        prediction = prediction.get("text")
    if not isinstance(prediction, str):
        raise ValueError(
            f"predictions[{index}] is {prediction!r}. Expected the answer string, "
            "or a dict with a 'text' key as `QuestionAnswerer.answer` returns."
        )
    return prediction


def squad_scores(predictions, references):
    """Exact match and F1 of predicted answers, in percent.

    Args:
        predictions: one answer per question: a string, or a dict with a
            `"text"` key (what `kt.QuestionAnswerer.answer` returns).
        references: the reference answers of each question: a string, a list
            of strings, or an answers dict with a `"text"` list (what
            `kt.datasets.read_squad` gives). An empty list marks an
            unanswerable question, which only `""` answers correctly.

    Returns:
        `{"exact_match": ..., "f1": ..., "count": ...}`: exact match and F1
        are means over the questions of the best score over each question's
        references, times 100, as in the official script.

    Example:
    ```python
    squad_scores(["the Eiffel Tower"], [["Eiffel Tower", "the tower"]])
    # {"exact_match": 100.0, "f1": 100.0, "count": 1}
    ```
    """
    if isinstance(predictions, (str, dict)) or isinstance(references, (str, dict)):
        raise ValueError(
            "Expected lists with one entry per question for `predictions` and "
            "`references`; wrap a single question's values in lists."
        )
    predictions, references = list(predictions), list(references)
    if len(predictions) != len(references):
        raise ValueError(
            f"Got {counted(len(predictions), 'prediction')} but "
            f"{counted(len(references), 'reference')}. "
            "Give one prediction per question."
        )
    if not predictions:
        raise ValueError("`predictions` is empty: there is nothing to score.")
    em = f1 = 0.0
    for i, (prediction, reference) in enumerate(zip(predictions, references)):
        text = _prediction_text(prediction, i)
        texts = _reference_texts(reference, i)
        em += max(exact_match(text, r) for r in texts)
        f1 += max(f1_score(text, r) for r in texts)
    n = len(predictions)
    return {"exact_match": 100.0 * em / n, "f1": 100.0 * f1 / n, "count": n}
