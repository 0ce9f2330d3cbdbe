"""Tests for the evaluation scores and reports (keras_transfer/metrics/
classification.py and regression.py), against numbers worked out by hand."""

import json
import math

import keras
import numpy as np
import pytest
from helpers import raises

import keras_transfer as kt
from keras_transfer.metrics import (
    MultiLabelF1Score,
    PearsonCorrelation,
    classification_report,
    confusion_matrix,
    multilabel_report,
    pearson,
    rankdata,
    regression_report,
    spearman,
)

# Three classes, six examples:
#   true  0 0 1 1 1 2
#   pred  0 1 1 1 0 2
# confusion rows (true) [1 1 0] [1 2 0] [0 0 1]; columns sum to 2, 3, 1.
Y_TRUE = [0, 0, 1, 1, 1, 2]
Y_PRED = [0, 1, 1, 1, 0, 2]


# ------------------------------------------------------------ single-label


def test_confusion_matrix_by_hand():
    expected = [[1, 1, 0], [1, 2, 0], [0, 0, 1]]
    assert confusion_matrix(Y_TRUE, Y_PRED).tolist() == expected
    assert confusion_matrix(Y_TRUE, Y_PRED, num_classes=4).tolist() == [row + [0] for row in expected] + [[0] * 4]
    assert confusion_matrix(np.array([True, False]), [1.0, 1.0]).tolist() == [[0, 1], [0, 1]]


def test_classification_report_by_hand():
    report = classification_report(Y_TRUE, Y_PRED, label_names=["a", "b", "c"])
    np.testing.assert_allclose(report.precision, [1 / 2, 2 / 3, 1])
    np.testing.assert_allclose(report.recall, [1 / 2, 2 / 3, 1])
    np.testing.assert_allclose(report.f1, [1 / 2, 2 / 3, 1])
    assert report.support.tolist() == [2, 3, 1]
    assert report.accuracy == pytest.approx(4 / 6)
    assert report.macro_f1 == pytest.approx((1 / 2 + 2 / 3 + 1) / 3)
    assert report.weighted_f1 == pytest.approx((2 * 1 / 2 + 3 * 2 / 3 + 1 * 1) / 6)
    assert report.num_examples == 6


def test_precision_and_recall_differ():
    # true 0 0 0 1, pred 0 1 1 1: class 0 P=1 R=1/3, class 1 P=1/3 R=1.
    report = classification_report([0, 0, 0, 1], [0, 1, 1, 1])
    np.testing.assert_allclose(report.precision, [1, 1 / 3])
    np.testing.assert_allclose(report.recall, [1 / 3, 1])
    np.testing.assert_allclose(report.f1, [0.5, 0.5])


def test_classes_never_predicted_or_seen_score_zero():
    report = classification_report([0, 0, 1], [0, 0, 0], num_classes=3)
    np.testing.assert_allclose(report.precision, [2 / 3, 0, 0])
    np.testing.assert_allclose(report.recall, [1, 0, 0])
    np.testing.assert_allclose(report.f1, [0.8, 0, 0])
    assert report.macro_f1 == pytest.approx(0.8 / 3)
    assert report.label_names == ["0", "1", "2"]


def test_class_names_are_mapped_by_label_names():
    names = ["neg", "pos"]
    by_name = classification_report(["pos", "neg", "pos"], ["pos", "pos", "pos"], label_names=names)
    by_id = classification_report([1, 0, 1], [1, 1, 1], label_names=names)
    assert by_name.to_dict() == by_id.to_dict()
    assert by_name.confusion_matrix.tolist() == [[0, 1], [0, 2]]
    # The order of label_names decides the ids.
    flipped = classification_report(["pos", "neg", "pos"], ["pos", "pos", "pos"], label_names=["pos", "neg"])
    assert flipped.confusion_matrix.tolist() == [[2, 0], [1, 0]]


def test_report_table_and_dict():
    report = classification_report(Y_TRUE, Y_PRED, label_names=["negative", "neutral", "positive"])
    text = str(report)
    lines = text.splitlines()
    assert lines[0].split() == ["precision", "recall", "f1", "support"]
    assert lines[1].split() == ["negative", "0.5000", "0.5000", "0.5000", "2"]
    assert lines[3].split() == ["positive", "1.0000", "1.0000", "1.0000", "1"]
    assert "accuracy" in text and "0.6667" in text and "macro F1" in text
    assert lines[-1].split() == ["positive", "0", "0", "1"]
    assert "accuracy=0.6667" in repr(report)
    as_dict = json.loads(json.dumps(report.to_dict()))
    assert as_dict["per_class"]["neutral"] == {"precision": 2 / 3, "recall": 2 / 3, "f1": 2 / 3, "support": 3}
    assert as_dict["confusion_matrix"] == [[1, 1, 0], [1, 2, 0], [0, 0, 1]]
    assert as_dict["macro_f1"] == pytest.approx(report.macro_f1)


def test_plot_confusion_matrix(tmp_path):
    pytest.importorskip("matplotlib")
    from matplotlib.figure import Figure

    report = classification_report(Y_TRUE, Y_PRED, label_names=["a", "b", "c"])
    figure = report.plot_confusion_matrix(tmp_path / "cm.png")
    assert isinstance(figure, Figure)
    assert (tmp_path / "cm.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    axes = figure.axes[0]
    cells = [t.get_text() for t in axes.texts]
    assert cells == ["1", "1", "0", "1", "2", "0", "0", "0", "1"]
    assert [t.get_text() for t in axes.get_xticklabels()] == ["a", "b", "c"]
    normalized = report.plot_confusion_matrix(normalize=True)
    assert [t.get_text() for t in normalized.axes[0].texts][:3] == ["0.50", "0.50", "0.00"]


@pytest.mark.parametrize(
    "y_true, y_pred, kwargs, fragments",
    [
        ([[0, 1], [1, 0]], [1, 0], {}, ["one class per example (1-D)", "argmax"]),
        (["a", "b"], ["a", "a"], {}, ["holds class names", "label_names"]),
        (["a", "z"], ["a", "a"], {"label_names": ["a", "b"]}, ["Unknown labels ['z']"]),
        ([0, 1, 1], [0, 1], {}, ["3 true labels but 2 predictions"]),
        ([], [], {}, ["empty"]),
        ([0, 5], [0, 1], {"num_classes": 2}, ["class id 5", "num_classes=2"]),
        ([0, -1], [0, 1], {}, [">= 0"]),
        ([0.5, 1.0], [0, 1], {}, ["class ids (integers)"]),
        ([0, 1], [0, 1], {"label_names": "ab"}, ["list of names"]),
        ([0, 1], [0, 1], {"label_names": ["a", "b"], "num_classes": 3}, ["num_classes=3", "2 label_names"]),
    ],
)
def test_classification_report_bad_input(y_true, y_pred, kwargs, fragments):
    with raises(ValueError, *fragments):
        classification_report(y_true, y_pred, **kwargs)


# ------------------------------------------------------------ multi-label

# label 0: tp 2; label 1: tp 1, fn 1; label 2: fp 1, fn 1.
ML_TRUE = [[1, 0, 1], [0, 1, 0], [1, 1, 0], [0, 0, 0]]
ML_PRED = [[1, 0, 0], [0, 1, 1], [1, 0, 0], [0, 0, 0]]


def test_multilabel_report_by_hand():
    report = multilabel_report(ML_TRUE, ML_PRED, label_names=["x", "y", "z"], thresholds=[0.5, 0.4, 0.3])
    np.testing.assert_allclose(report.precision, [1, 1, 0])
    np.testing.assert_allclose(report.recall, [1, 0.5, 0])
    np.testing.assert_allclose(report.f1, [1, 2 / 3, 0])
    assert report.support.tolist() == [2, 2, 1]
    # Pooled: tp 3, fp 1, fn 2.
    assert report.micro_precision == pytest.approx(3 / 4)
    assert report.micro_recall == pytest.approx(3 / 5)
    assert report.micro_f1 == pytest.approx(2 / 3)
    assert report.macro_f1 == pytest.approx(5 / 9)
    assert report.subset_accuracy == pytest.approx(1 / 4)
    assert report.hamming_loss == pytest.approx(3 / 12)
    lines = str(report).splitlines()
    assert lines[0].split() == ["precision", "recall", "f1", "support", "threshold"]
    assert lines[2].split() == ["y", "1.0000", "0.5000", "0.6667", "2", "0.400"]
    as_dict = json.loads(json.dumps(report.to_dict()))
    assert as_dict["per_label"]["z"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1, "threshold": 0.3}
    assert as_dict["micro_f1"] == pytest.approx(2 / 3)
    assert "micro_f1=0.6667" in repr(report)


def test_multilabel_report_takes_booleans():
    as_bool = multilabel_report(np.array(ML_TRUE, bool), np.array(ML_PRED, bool))
    assert as_bool.to_dict() == multilabel_report(ML_TRUE, ML_PRED).to_dict()


@pytest.mark.parametrize(
    "y_true, y_pred, fragments",
    [
        ([1, 0], [1, 0], ["multi-hot array", "shape (2,)"]),
        ([[1, 2]], [[1, 0]], ["only 0s and 1s", "y_true"]),
        ([[1, 0]], [[1, 0, 0]], ["3 columns", "expected 2"]),
        ([[1, 0], [0, 1]], [[1, 0]], ["2 true label rows but 1 predicted"]),
    ],
)
def test_multilabel_report_bad_input(y_true, y_pred, fragments):
    with raises(ValueError, *fragments):
        multilabel_report(y_true, y_pred)


def test_multi_label_f1_metric_by_hand():
    probabilities = np.array([[0.9, 0.2, 0.6], [0.1, 0.7, 0.35], [0.8, 0.45, 0.1], [0.3, 0.1, 0.2]])
    # With thresholds (0.5, 0.5, 0.5) the decisions are ML_PRED but for
    # (0, 2) (0.6 > 0.5) and (1, 2); with (0.5, 0.4, 0.7): ML_PRED + (2, 1).
    micro = MultiLabelF1Score("micro", threshold=[0.5, 0.4, 0.7])
    macro = MultiLabelF1Score("macro", threshold=[0.5, 0.4, 0.7])
    decisions = (probabilities > [0.5, 0.4, 0.7]).astype(int)
    expected = multilabel_report(ML_TRUE, decisions)
    for metric in (micro, macro):
        metric.update_state(np.array(ML_TRUE[:2], "float32"), probabilities[:2])
        metric.update_state(np.array(ML_TRUE[2:], "float32"), probabilities[2:])
    assert float(micro.result()) == pytest.approx(expected.micro_f1, abs=1e-6)
    assert float(macro.result()) == pytest.approx(expected.macro_f1, abs=1e-6)
    # (2, 1) moves label 1 to tp 2: F1 1, so macro (1 + 1 + 0) / 3.
    assert expected.macro_f1 == pytest.approx(2 / 3)
    scalar = MultiLabelF1Score("micro", threshold=0.5)
    scalar.update_state(np.array(ML_TRUE, "float32"), probabilities)
    at_half = multilabel_report(ML_TRUE, (probabilities > 0.5).astype(int))
    assert float(scalar.result()) == pytest.approx(at_half.micro_f1, abs=1e-6)


def test_multi_label_f1_metric_config_round_trip():
    metric = MultiLabelF1Score("macro", threshold=[0.2, 0.7], name="f1_macro")
    again = keras.metrics.deserialize(keras.metrics.serialize(metric))
    assert type(again) is MultiLabelF1Score
    assert again.get_config() == metric.get_config()
    assert again.label_threshold == [0.2, 0.7] and again.average == "macro"
    assert float(again.result()) == 0.0  # nothing seen yet


@pytest.mark.parametrize("threshold", [0.0, 1.0, 1.5, [0.5, -0.1], "high", [[0.5]]])
def test_multi_label_f1_metric_bad_threshold(threshold):
    with raises(ValueError, "threshold"):
        MultiLabelF1Score(threshold=threshold)


# ------------------------------------------------------------ regression


def test_rankdata_averages_ties():
    assert rankdata([10, 20, 20, 5]).tolist() == [2.0, 3.5, 3.5, 1.0]
    assert rankdata([3, 3, 3]).tolist() == [2.0, 2.0, 2.0]
    assert rankdata([1.5, -2.0, 7.0, 1.5, 1.5]).tolist() == [3.0, 1.0, 5.0, 3.0, 3.0]


def test_regression_report_by_hand():
    # errors 1 0 0 1; y centred -1.5 -.5 .5 1.5, p centred -1 -1 0 2.
    report = regression_report([1, 2, 3, 4], [2, 2, 3, 5])
    assert report.mse == pytest.approx(0.5)
    assert report.rmse == pytest.approx(math.sqrt(0.5))
    assert report.mae == pytest.approx(0.5)
    assert report.r2 == pytest.approx(1 - 0.5 / 1.25)
    assert report.pearson == pytest.approx(5 / math.sqrt(5 * 6))
    # Ranks of p: 1.5 1.5 3 4 (the tie averaged).
    assert report.spearman == pytest.approx(4.5 / math.sqrt(5 * 4.5))
    assert report.num_examples == 4
    lines = str(report).splitlines()
    assert lines[0].split() == ["mse", "rmse", "mae", "r2", "pearson", "spearman", "examples"]
    assert lines[1].split()[:4] == ["output_0", "0.5000", "0.7071", "0.5000"]
    assert json.loads(json.dumps(report.to_dict()))["spearman"] == pytest.approx(report.spearman)


def test_correlations_by_hand():
    # y centred -1 0 1, p centred -7/3 -1/3 8/3: cov 5, |y|² 2, |p|² 114/9.
    assert pearson([1, 2, 3], [2, 4, 7]) == pytest.approx(5 / math.sqrt(2 * 114 / 9))
    assert spearman([1, 2, 3], [2, 4, 70]) == 1.0
    assert spearman([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    assert math.isnan(pearson([1, 1, 1], [1, 2, 3]))
    assert math.isnan(regression_report([1, 1], [1, 2]).r2)


def test_regression_report_with_several_outputs():
    y = np.array([[1, 10], [2, 20], [3, 30], [4, 40]], dtype=float)
    p = np.array([[2, 10], [2, 20], [3, 30], [5, 40]], dtype=float)
    report = regression_report(y, p, output_names=["rating", "votes"])
    np.testing.assert_allclose(report.mae, [0.5, 0.0])
    np.testing.assert_allclose(report.pearson, [5 / math.sqrt(30), 1.0])
    assert report.to_dict()["mae"] == [0.5, 0.0]
    assert str(report).splitlines()[2].split()[0] == "votes"
    # A (n, 1) column is the same as (n,).
    column = regression_report(np.array([[1.0], [2.0], [3.0]]), [1.0, 2.5, 2.5])
    assert column.mae == pytest.approx(regression_report([1, 2, 3], [1, 2.5, 2.5]).mae)


@pytest.mark.parametrize(
    "y_true, y_pred, fragments",
    [
        ([1, 2, 3], [1, 2], ["shape (3,)", "(2,)"]),
        ([], [], ["empty"]),
        ([1, float("nan")], [1, 2], ["finite"]),
        (["a", "b"], [1, 2], ["could not convert"]),
    ],
)
def test_regression_report_bad_input(y_true, y_pred, fragments):
    with raises(ValueError, *fragments):
        regression_report(y_true, y_pred)


def test_pearson_metric_over_batches_is_the_whole_set_correlation():
    rng = np.random.default_rng(0)
    y = rng.normal(size=50).astype("float32")
    p = (1000 + y * 0.01 + rng.normal(size=50) * 0.01).astype("float32")  # small spread, large mean
    metric = PearsonCorrelation()
    for start in range(0, 50, 7):
        metric.update_state(y[start : start + 7], p[start : start + 7, None])
    assert float(metric.result()) == pytest.approx(np.corrcoef(y, p)[0, 1], abs=1e-3)
    metric.reset_state()
    assert float(metric.result()) == 0.0
    metric.update_state([1.0, 2.0], [2.0, 4.0])
    metric.update_state([3.0], [7.0])
    assert float(metric.result()) == pytest.approx(pearson([1, 2, 3], [2, 4, 7]), abs=1e-6)


def test_pearson_metric_weights_and_outputs():
    metric = PearsonCorrelation()
    # A zero weight drops the example.
    metric.update_state([1.0, 2.0, 3.0, 9.0], [2.0, 4.0, 7.0, -5.0], sample_weight=[1.0, 1.0, 1.0, 0.0])
    assert float(metric.result()) == pytest.approx(pearson([1, 2, 3], [2, 4, 7]), abs=1e-6)
    # Two outputs: the mean of their correlations.
    two = PearsonCorrelation()
    two.update_state(np.array([[1, 1], [2, 3], [3, 2]], "float32"), np.array([[1, 3], [2, 2], [3, 1]], "float32"))
    assert float(two.result()) == pytest.approx((1.0 + pearson([1, 3, 2], [3, 2, 1])) / 2, abs=1e-6)
    constant = PearsonCorrelation()
    constant.update_state([1.0, 1.0], [1.0, 2.0])
    assert float(constant.result()) == 0.0
    again = keras.metrics.deserialize(keras.metrics.serialize(metric))
    assert type(again) is PearsonCorrelation and again.name == "pearson"


def test_public_names():
    for name in ["classification_report", "multilabel_report", "regression_report", "confusion_matrix",
                 "ClassificationReport", "MultiLabelReport", "RegressionReport", "MultiLabelF1Score",
                 "PearsonCorrelation", "pearson", "spearman", "rankdata"]:
        assert name in kt.metrics.__all__ and hasattr(kt.metrics, name)
