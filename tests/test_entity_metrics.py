"""Entity extraction and entity-level scores, checked against seqeval.

seqeval is not a dependency; its published behaviour is copied here by hand:
the tables of `tests/test_scheme.py` (strict mode, seqeval 1.2.2), the
examples of its README and of `get_entities`' tests (default mode), with
`end` made exclusive as `kt.metrics` returns it.
"""

import keras_transfer as kt  # noqa: F401  (selects the torch backend first)
import keras
import numpy as np
import pytest
from helpers import raises

from keras_transfer.metrics import entities as E

# ------------------------------------------------------------ strict mode

IOB1_STRICT = [
    ([], []),
    (["B-PER"], []),
    (["I-PER"], [("PER", 0, 1)]),
    (["O"], []),
    (["O", "I-PER"], [("PER", 1, 2)]),
    (["O", "B-PER"], []),
    (["I-PER", "O"], [("PER", 0, 1)]),
    (["I-PER", "I-PER"], [("PER", 0, 2)]),
    (["I-PER", "I-ORG"], [("PER", 0, 1), ("ORG", 1, 2)]),
    (["I-PER", "B-PER"], [("PER", 0, 1), ("PER", 1, 2)]),
    (["I-PER", "B-ORG"], [("PER", 0, 1)]),
    (["B-PER", "O"], []),
    (["B-PER", "I-PER"], [("PER", 1, 2)]),
    (["B-PER", "I-ORG"], [("ORG", 1, 2)]),
    (["B-PER", "B-PER"], [("PER", 1, 2)]),
    (["B-PER", "B-ORG"], []),
    (["I", "B"], [("_", 0, 1), ("_", 1, 2)]),
]

IOB2_STRICT = [
    ([], []),
    (["B-PER"], [("PER", 0, 1)]),
    (["I-PER"], []),
    (["O"], []),
    (["O", "I-PER"], []),
    (["O", "B-PER"], [("PER", 1, 2)]),
    (["I-PER", "O"], []),
    (["I-PER", "I-PER"], []),
    (["I-PER", "I-ORG"], []),
    (["I-PER", "B-PER"], [("PER", 1, 2)]),
    (["I-PER", "B-ORG"], [("ORG", 1, 2)]),
    (["B-PER", "O"], [("PER", 0, 1)]),
    (["B-PER", "I-PER"], [("PER", 0, 2)]),
    (["B-PER", "I-ORG"], [("PER", 0, 1)]),
    (["B-PER", "B-PER"], [("PER", 0, 1), ("PER", 1, 2)]),
    (["B-PER", "B-ORG"], [("PER", 0, 1), ("ORG", 1, 2)]),
    (["B", "I"], [("_", 0, 2)]),
]

BIOES_STRICT = [
    (["S-PER"], [("PER", 0, 1)]),
    (["E-PER"], []),
    (["O", "S-PER"], [("PER", 1, 2)]),
    (["O", "E-PER"], []),
    (["I-PER", "E-PER"], []),
    (["I-PER", "S-PER"], [("PER", 1, 2)]),
    (["B-PER", "O"], []),
    (["B-PER", "I-PER"], []),
    (["B-PER", "B-PER"], []),
    (["B-PER", "E-PER"], [("PER", 0, 2)]),
    (["B-PER", "E-ORG"], []),
    (["B-PER", "S-PER"], [("PER", 1, 2)]),
    (["E-PER", "S-PER"], [("PER", 1, 2)]),
    (["S-PER", "I-PER"], [("PER", 0, 1)]),
    (["S-PER", "E-PER"], [("PER", 0, 1)]),
    (["S-PER", "S-PER"], [("PER", 0, 1), ("PER", 1, 2)]),
    (["B-PER", "I-PER", "E-PER", "S-LOC"], [("PER", 0, 3), ("LOC", 3, 4)]),
]


@pytest.mark.parametrize(
    "scheme, tags, expected",
    [("IOB1", t, e) for t, e in IOB1_STRICT]
    + [("IOB2", t, e) for t, e in IOB2_STRICT]
    + [("BIOES", t, e) for t, e in BIOES_STRICT],
)
def test_strict_mode_matches_seqeval_scheme_tables(scheme, tags, expected):
    assert E.get_entities(tags, scheme=scheme, mode="strict") == expected


def test_strict_mode_rejects_prefixes_the_scheme_lacks():
    with raises(ValueError, "'E-PER'", "position 1", "IOB2", "B-, I-"):
        E.get_entities(["B-PER", "E-PER", "S-PER"], scheme="IOB2", mode="strict")


# ------------------------------------------------------------ default mode


@pytest.mark.parametrize(
    "tags, expected",
    [
        (["B-PER", "I-PER", "O", "B-LOC"], [("PER", 0, 2), ("LOC", 3, 4)]),
        (
            ["O", "O", "O", "B-MISC", "I-MISC", "I-MISC", "O", "B-PER", "I-PER"],
            [("MISC", 3, 6), ("PER", 7, 9)],
        ),
        (["O", "B", "I", "I", "O"], [("_", 1, 4)]),
        # Lenient: I- after O starts an entity, a type change ends one.
        (["O", "I-PER", "I-PER"], [("PER", 1, 3)]),
        (["B-PER", "I-LOC"], [("PER", 0, 1), ("LOC", 1, 2)]),
        (["I-PER", "B-PER"], [("PER", 0, 1), ("PER", 1, 2)]),
        # BIOES reads too: E- ends, S- is one word.
        (["B-PER", "E-PER", "S-LOC", "O"], [("PER", 0, 2), ("LOC", 2, 3)]),
        ([], []),
    ],
)
def test_default_mode_matches_seqeval_get_entities(tags, expected):
    assert E.get_entities(tags) == expected
    # The default mode does not depend on the scheme.
    assert E.get_entities(tags, scheme="IOB1") == expected


def test_readme_report_numbers():
    # seqeval's README: MISC is found one word too early, PER is right.
    y_true = [["O", "O", "O", "B-MISC", "I-MISC", "I-MISC", "O"], ["B-PER", "I-PER", "O"]]
    y_pred = [["O", "O", "B-MISC", "I-MISC", "I-MISC", "I-MISC", "O"], ["B-PER", "I-PER", "O"]]
    scores = E.entity_scores(y_true, y_pred)
    assert list(scores) == ["MISC", "PER", "micro avg", "macro avg", "weighted avg"]
    assert scores["MISC"] == {"precision": 0.0, "recall": 0.0, "f1-score": 0.0, "support": 1}
    assert scores["PER"] == {"precision": 1.0, "recall": 1.0, "f1-score": 1.0, "support": 1}
    for average in ("micro avg", "macro avg", "weighted avg"):
        assert scores[average] == {"precision": 0.5, "recall": 0.5, "f1-score": 0.5, "support": 2}
    report = E.entity_report(y_true, y_pred, digits=2)
    assert "        MISC      0.00      0.00      0.00         1" in report
    assert "   micro avg      0.50      0.50      0.50         2" in report


def test_strict_mode_changes_the_score_as_in_seqeval_readme():
    y_true = [["B-NP", "I-NP", "O"]]
    y_pred = [["I-NP", "I-NP", "O"]]
    assert E.entity_scores(y_true, y_pred)["NP"]["f1-score"] == 1.0
    assert E.entity_scores(y_true, y_pred, mode="strict")["NP"]["f1-score"] == 0.0


def test_averages_differ_when_types_are_unbalanced():
    # Hand-computed: PER 2 true, 2 predicted, 1 right; LOC 1 true, 1 right;
    # ORG predicted once, never true.
    y_true = [["B-PER", "O", "B-PER", "I-PER", "O", "B-LOC"]]
    y_pred = [["B-PER", "O", "B-PER", "O", "B-ORG", "B-LOC"]]
    scores = E.entity_scores(y_true, y_pred)
    assert scores["PER"]["precision"] == 0.5 and scores["PER"]["recall"] == 0.5
    assert scores["LOC"]["f1-score"] == 1.0
    assert scores["ORG"] == {"precision": 0.0, "recall": 0.0, "f1-score": 0.0, "support": 0}
    assert scores["micro avg"]["precision"] == pytest.approx(2 / 4)
    assert scores["micro avg"]["recall"] == pytest.approx(2 / 3)
    assert scores["micro avg"]["f1-score"] == pytest.approx(2 * (1 / 2) * (2 / 3) / (1 / 2 + 2 / 3))
    assert scores["macro avg"]["f1-score"] == pytest.approx((1.0 + 0.5 + 0.0) / 3)
    assert scores["weighted avg"]["f1-score"] == pytest.approx((1.0 * 1 + 0.5 * 2) / 3)
    assert scores["micro avg"]["support"] == 3


def test_entities_in_different_sentences_never_match():
    y_true = [["B-PER", "O"], ["O", "O"]]
    y_pred = [["O", "O"], ["B-PER", "O"]]
    assert E.entity_scores(y_true, y_pred)["micro avg"]["f1-score"] == 0.0
    assert E.entity_scores(y_true, y_true)["micro avg"]["f1-score"] == 1.0


def test_no_entities_anywhere_scores_zero_not_nan():
    scores = E.entity_scores([["O"]], [["O"]])
    assert scores["micro avg"] == {"precision": 0.0, "recall": 0.0, "f1-score": 0.0, "support": 0}


@pytest.mark.parametrize("scheme", ["iob2", "IOBES", "bioes", "IOB1"])
def test_scheme_names_are_normalized(scheme):
    assert E.check_scheme(scheme) in E.SCHEMES


@pytest.mark.parametrize("scheme", ["BILOU", "IOB", "", None, 2])
def test_unknown_scheme_is_refused(scheme):
    with raises(ValueError, "Unknown tag scheme", "IOB2", "BIOES"):
        E.get_entities(["O"], scheme=scheme)


def test_bad_arguments():
    with raises(ValueError, "Unknown mode", "strict"):
        E.get_entities(["O"], mode="lenient")
    with raises(ValueError, "Sentence 1", "3 true tags", "2 predicted"):
        E.entity_scores([["O"], ["O", "O", "O"]], [["O"], ["O", "O"]])
    with raises(ValueError, "2 true tag sequences", "1 predicted"):
        E.entity_scores([["O"], ["O"]], [["O"]])
    with raises(ValueError, "flat list of tags", "wrap it"):
        E.entity_scores(["O", "B-PER"], ["O", "B-PER"])
    with raises(ValueError, "non-empty strings", "position 1"):
        E.get_entities(["O", None])


# ------------------------------------------------------------ Keras metrics

TAGS = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]


def _one_hot(ids):
    return keras.ops.one_hot(np.maximum(np.asarray(ids), 0), len(TAGS))


def test_entity_f1_metric_matches_entity_scores_and_skips_ignored_positions():
    ignore = -100
    # Row 0: words B-PER I-PER O B-LOC, with sub-token and padding positions.
    y_true = np.array(
        [[ignore, 1, ignore, 2, 0, 3, ignore], [ignore, 3, 4, 0, ignore, ignore, ignore]]
    )
    # Predicted: the LOC of row 0 and the ignored positions are wrong.
    y_pred_ids = np.array([[0, 1, 3, 2, 0, 0, 4], [0, 3, 4, 0, 1, 1, 1]])
    metric = E.EntityF1(TAGS)
    metric.update_state(y_true, _one_hot(y_pred_ids))
    true_tags = [["B-PER", "I-PER", "O", "B-LOC"], ["B-LOC", "I-LOC", "O"]]
    pred_tags = [["B-PER", "I-PER", "O", "O"], ["B-LOC", "I-LOC", "O"]]
    expected = E.entity_scores(true_tags, pred_tags)["micro avg"]["f1-score"]
    assert float(metric.result()) == pytest.approx(expected)  # 2 of 3 found, none wrong: 0.8
    assert float(metric.result()) == pytest.approx(0.8)
    # Counts accumulate over batches and reset.
    metric.update_state(y_true, _one_hot(np.where(y_true < 0, 0, y_true)))
    assert float(metric.result()) == pytest.approx(2 * 5 / 6 * 1 / (5 / 6 + 1))
    metric.reset_state()
    assert float(metric.result()) == 0.0

    macro = E.EntityF1(TAGS, average="macro")
    macro.update_state(y_true, _one_hot(y_pred_ids))
    assert float(macro.result()) == pytest.approx(E.entity_scores(true_tags, pred_tags)["macro avg"]["f1-score"])


def test_token_accuracy_counts_only_labelled_positions():
    y_true = np.array([[-100, 1, 2, -100], [0, -100, -100, -100]])
    y_pred_ids = np.array([[4, 1, 0, 4], [0, 4, 4, 4]])
    metric = E.TokenAccuracy()
    metric.update_state(y_true, _one_hot(y_pred_ids))
    assert float(metric.result()) == pytest.approx(2 / 3)


def test_metrics_round_trip_their_config():
    metric = E.EntityF1(TAGS, scheme="IOB1", mode="strict", average="macro", name="f1")
    clone = E.EntityF1.from_config(metric.get_config())
    assert (clone.tag_names, clone.scheme, clone.mode, clone.average, clone.name) == (
        TAGS, "IOB1", "strict", "macro", "f1",
    )
    restored = keras.metrics.deserialize(keras.metrics.serialize(E.TokenAccuracy(ignore_class=-1)))
    assert isinstance(restored, E.TokenAccuracy) and restored.ignore_class == -1
    with raises(ValueError, "average", "micro"):
        E.EntityF1(TAGS, average="weighted")
