"""SQuAD exact match and F1 against hand-computed cases of the official script."""

import pytest
from helpers import raises

from keras_transfer.metrics import squad
from keras_transfer.metrics.squad import exact_match, f1_score, normalize_answer, squad_scores


@pytest.mark.parametrize(
    "text, expected",
    [
        ("The  Eiffel Tower!", "eiffel tower"),
        ("An apple a day", "apple day"),
        ("theater and another anthem", "theater and another anthem"),  # articles as words only
        ("Hello, World.", "hello world"),
        ("U.S. (1990)", "us 1990"),
        ("  tabs\tand\nnewlines  ", "tabs and newlines"),
        ("the", ""),
        ("Ça va — l'été", "ça va — lété"),  # only ASCII punctuation goes, as in the script
    ],
)
def test_normalize_answer(text, expected):
    assert normalize_answer(text) == expected


def test_exact_match_ignores_case_punctuation_and_articles():
    assert exact_match("Paris", "paris.") == 1
    assert exact_match("the Denver Broncos", "Denver Broncos") == 1
    assert exact_match("Denver", "Denver Broncos") == 0


def test_f1_by_hand():
    # [cat, sat] vs [cat, sat, on, mat]: precision 1, recall 1/2.
    assert f1_score("the cat sat", "cat sat on the mat") == pytest.approx(2 / 3)
    # Counts are clipped: cat 1 and dog 1 in common of 3 tokens each.
    assert f1_score("cat cat dog", "cat dog dog") == pytest.approx(2 / 3)
    # [in, city, of, paris] vs [paris]: precision 1/4, recall 1 -> 0.4.
    assert f1_score("in the city of Paris", "Paris") == pytest.approx(0.4)
    assert f1_score("London", "Paris") == 0.0
    assert f1_score("Paris!", "the paris") == 1.0


def test_f1_of_empty_answers_follows_the_v2_script():
    assert f1_score("", "") == 1.0
    assert f1_score("the", "") == 1.0  # normalises to nothing
    assert f1_score("", "Paris") == 0.0
    assert f1_score("Paris", "") == 0.0


def test_scores_take_the_best_reference_and_average_in_percent():
    predictions = [
        "Denver Broncos",  # exact for the 2nd reference
        {"text": "in the city of Paris", "start": 0, "end": 20, "score": 0.5},  # F1 0.4
    ]
    references = [
        {"text": ["Broncos", "Denver Broncos"], "answer_start": [7, 0]},
        ["Paris", "France"],
    ]
    scores = squad_scores(predictions, references)
    assert scores == {"exact_match": pytest.approx(50.0), "f1": pytest.approx(70.0), "count": 2}


def test_unanswerable_questions_score_only_the_empty_answer():
    references = [{"text": [], "answer_start": []}, [], ["", "the"]]
    assert squad_scores(["", "", "."], references)["exact_match"] == 100.0
    scores = squad_scores(["Paris", "", ""], references)
    assert scores["exact_match"] == pytest.approx(200 / 3)
    assert scores["f1"] == pytest.approx(200 / 3)


def test_bad_inputs_get_clear_errors():
    with raises(ValueError, "2 predictions", "1 reference."):
        squad_scores(["a", "b"], [["a"]])
    with raises(ValueError, "predictions[0]", "None"):
        squad_scores([None], [["a"]])
    with raises(ValueError, "references[0]", "42"):
        squad_scores(["a"], [42])
    with raises(ValueError, "lists with one entry per question"):
        squad_scores("a", ["a"])
    with raises(ValueError, "empty"):
        squad_scores([], [])


def test_exported_from_the_package():
    import keras_transfer as kt

    assert kt.metrics.squad_scores is squad_scores
    assert kt.metrics.normalize_answer is squad.normalize_answer
