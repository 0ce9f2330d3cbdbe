"""Keras callbacks for transfer learning.

Each callback lives in a module of its own in this package; the public ones
are imported here.
"""

from keras_transfer.callbacks.backup import BackupAndRestore
from keras_transfer.callbacks.learning_rate import LearningRateLogger
from keras_transfer.callbacks.numerics import NonFiniteLossWarning, StopOnNaN
from keras_transfer.callbacks.unfreezing import GradualUnfreezing

__all__ = ["BackupAndRestore", "GradualUnfreezing", "LearningRateLogger", "NonFiniteLossWarning", "StopOnNaN"]
