"""Task models: a backbone, a head and the preprocessor, as one Keras model."""

from keras_transfer.tasks.base import Task
from keras_transfer.tasks.multi_label import MultiLabelClassifier
from keras_transfer.tasks.pair_classifier import TextPairClassifier
from keras_transfer.tasks.question_answerer import QuestionAnswerer
from keras_transfer.tasks.regressor import TextRegressor
from keras_transfer.tasks.text_classifier import TextClassifier
from keras_transfer.tasks.token_classifier import TokenClassifier
from keras_transfer.tasks.translator import Translator

__all__ = [
    "MultiLabelClassifier",
    "QuestionAnswerer",
    "Task",
    "TextClassifier",
    "TextPairClassifier",
    "TextRegressor",
    "TokenClassifier",
    "Translator",
]
