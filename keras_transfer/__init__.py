"""keras_transfer: transfer learning for NLP in a few lines of Keras.

Importing it selects Keras' PyTorch backend unless `KERAS_BACKEND` is
already set.
"""

import os
import sys
import warnings

os.environ.setdefault("KERAS_BACKEND", "torch")
if "keras" in sys.modules:
    import keras as _keras

    if _keras.config.backend() != "torch":
        warnings.warn(
            f"Keras was imported before keras_transfer and runs on the "
            f"{_keras.config.backend()!r} backend; keras_transfer is built and "
            "tested on 'torch'. Import keras_transfer first, or set "
            "KERAS_BACKEND=torch before starting Python.",
            stacklevel=2,
        )

from keras_transfer import callbacks, datasets, distributed, layers, lr_finder, metrics, optimizers, recipes, schedules, tagging  # noqa: E402
from keras_transfer.backbones import list_presets, load_backbone  # noqa: E402
from keras_transfer.bert import BertBackbone  # noqa: E402
from keras_transfer.batching import TextBatches  # noqa: E402
from keras_transfer.freezing import (  # noqa: E402
    count_params,
    freeze,
    frozen_state,
    restore_frozen_state,
    unfreeze,
)
from keras_transfer.plotting import plot_history  # noqa: E402
from keras_transfer.preprocessing import TextPreprocessor  # noqa: E402
from keras_transfer.seq2seq import Seq2SeqPreprocessor  # noqa: E402
from keras_transfer.saving import load_model  # noqa: E402
from keras_transfer.tasks import (  # noqa: E402
    MultiLabelClassifier,
    QuestionAnswerer,
    Task,
    TextClassifier,
    TextPairClassifier,
    TextRegressor,
    TokenClassifier,
    Translator,
)
from keras_transfer.xlnet import XLNetBackbone, XLNetTokenizer, convert_xlnet_checkpoint  # noqa: E402
from keras_transfer import scalars  # noqa: E402

scalars.install()  # Python numbers to GPU tensors without a device sync (see scalars.py)

__version__ = "0.1.0"

__all__ = [
    "BertBackbone",
    "MultiLabelClassifier",
    "QuestionAnswerer",
    "Seq2SeqPreprocessor",
    "Task",
    "TextBatches",
    "TextClassifier",
    "TextPairClassifier",
    "TextPreprocessor",
    "TextRegressor",
    "TokenClassifier",
    "Translator",
    "XLNetBackbone",
    "XLNetTokenizer",
    "callbacks",
    "convert_xlnet_checkpoint",
    "count_params",
    "datasets",
    "distributed",
    "freeze",
    "frozen_state",
    "layers",
    "list_presets",
    "load_backbone",
    "load_model",
    "lr_finder",
    "metrics",
    "optimizers",
    "plot_history",
    "recipes",
    "restore_frozen_state",
    "scalars",
    "schedules",
    "tagging",
    "unfreeze",
]
