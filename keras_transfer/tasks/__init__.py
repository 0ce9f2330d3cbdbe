"""Task models: a backbone, a head and the preprocessor, as one Keras model."""

from keras_transfer.tasks.base import Task
from keras_transfer.tasks.text_classifier import TextClassifier

__all__ = ["Task", "TextClassifier"]
