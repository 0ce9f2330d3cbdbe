"""Metrics and evaluation scores for keras_transfer's tasks.

Each family of scores lives in a module of its own in this package; the
public ones are imported here.
"""

from keras_transfer.metrics.bleu import bleu, chrf
from keras_transfer.metrics.classification import (
    ClassificationReport,
    MultiLabelF1Score,
    MultiLabelReport,
    classification_report,
    confusion_matrix,
    multilabel_report,
)
from keras_transfer.metrics.entities import (
    EntityF1,
    TokenAccuracy,
    entity_report,
    entity_scores,
    get_entities,
)
from keras_transfer.metrics.regression import (
    PearsonCorrelation,
    RegressionReport,
    pearson,
    rankdata,
    regression_report,
    spearman,
)
from keras_transfer.metrics.squad import normalize_answer, squad_scores

__all__ = [
    "ClassificationReport",
    "EntityF1",
    "MultiLabelF1Score",
    "MultiLabelReport",
    "PearsonCorrelation",
    "RegressionReport",
    "TokenAccuracy",
    "bleu",
    "chrf",
    "classification_report",
    "confusion_matrix",
    "entity_report",
    "entity_scores",
    "get_entities",
    "multilabel_report",
    "normalize_answer",
    "pearson",
    "rankdata",
    "regression_report",
    "spearman",
    "squad_scores",
]
