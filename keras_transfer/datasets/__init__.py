"""Datasets for transfer learning: the `TextData` container, readers for
lists, CSV, JSON Lines and class folders, and the IMDB review dataset.

Pure Python and NumPy: importing this package does not import Keras,
PyTorch or KerasHub.
"""

from keras_transfer.datasets.conll import TaggedData
from keras_transfer.datasets.conll import read_conll
from keras_transfer.datasets.imdb import imdb
from keras_transfer.datasets.imdb import imdb_sample
from keras_transfer.datasets.parallel import ParallelData
from keras_transfer.datasets.parallel import multi30k
from keras_transfer.datasets.parallel import read_parallel
from keras_transfer.datasets.readers import TextData
from keras_transfer.datasets.readers import from_lists
from keras_transfer.datasets.readers import read_csv
from keras_transfer.datasets.readers import read_folder
from keras_transfer.datasets.readers import read_jsonl
from keras_transfer.datasets.squad import QAData
from keras_transfer.datasets.squad import read_squad

__all__ = [
    "ParallelData",
    "QAData",
    "TaggedData",
    "TextData",
    "from_lists",
    "imdb",
    "imdb_sample",
    "multi30k",
    "read_conll",
    "read_csv",
    "read_folder",
    "read_jsonl",
    "read_parallel",
    "read_squad",
]
