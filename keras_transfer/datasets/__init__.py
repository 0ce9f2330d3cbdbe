"""Datasets for transfer learning: the `TextData` container, readers for
lists, CSV, JSON Lines and class folders, and the IMDB review dataset.

Pure Python and NumPy: importing this package does not import Keras,
PyTorch or KerasHub.
"""

from keras_transfer.datasets.imdb import imdb
from keras_transfer.datasets.imdb import imdb_sample
from keras_transfer.datasets.readers import TextData
from keras_transfer.datasets.readers import from_lists
from keras_transfer.datasets.readers import read_csv
from keras_transfer.datasets.readers import read_folder
from keras_transfer.datasets.readers import read_jsonl

__all__ = [
    "TextData",
    "from_lists",
    "imdb",
    "imdb_sample",
    "read_csv",
    "read_folder",
    "read_jsonl",
]
