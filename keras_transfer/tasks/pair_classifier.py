"""Classification of text pairs: entailment, paraphrase, similarity classes.

A `TextPairClassifier` is a `TextClassifier` that reads two texts per
example. The preprocessor packs each pair the backbone family's way, as
the model was pretrained: `[CLS] a [SEP] b [SEP]` with segment ids 0 then 1
for BERT-style encoders, the texts joined by separators for families
without segment ids (GPT-2: `a <|endoftext|> b <|endoftext|>`).
"""

import keras
import numpy as np

from keras_transfer.backbones import DEFAULT_SEQUENCE_LENGTH
from keras_transfer.preprocessing import columns_as_pairs
from keras_transfer.tasks.base import _is_text_data
from keras_transfer.tasks.text_classifier import TextClassifier, task_from_preset

_PAIR_HELP = (
    "Give a list of (text_a, text_b) pairs, a tuple (texts_a, texts_b) of "
    "two parallel lists, or a TextData of pairs (for example "
    "kt.datasets.read_csv(path, text_column=('premise', 'hypothesis')))."
)


def as_pairs(x, name="x"):
    """Normalizes a pair task's input to a list of `(text_a, text_b)` tuples.

    Accepts a list of pairs, or a tuple `(texts_a, texts_b)` of two lists
    (or arrays) of strings of the same length. Anything that is not text
    (token-id dictionaries, datasets) and `TextData` of pairs pass through.
    Single texts raise a `ValueError` saying how to give pairs.
    """
    if _is_text_data(x):
        if len(x.texts) and not isinstance(x.texts[0], tuple):
            raise ValueError(
                f"`{name}` is a TextData of single texts, but a TextPairClassifier "
                f"reads text pairs. {_PAIR_HELP}"
            )
        return x
    if isinstance(x, str):
        raise ValueError(f"`{name}` is a single string; a TextPairClassifier reads text pairs. {_PAIR_HELP}")
    x = columns_as_pairs(x, name)  # (texts_a, texts_b)
    if isinstance(x, np.ndarray) and x.dtype.kind in "USO":
        x = x.tolist()
    if isinstance(x, (list, tuple)):
        for i, item in enumerate(x):
            if isinstance(item, str):
                raise ValueError(
                    f"`{name}[{i}]` is a single text ({item[:40]!r}); a "
                    f"TextPairClassifier reads text pairs. {_PAIR_HELP}"
                )
        return [tuple(item) if isinstance(item, list) else item for item in x]
    return x


@keras.saving.register_keras_serializable(package="keras_transfer")
class TextPairClassifier(TextClassifier):
    """A classifier of text pairs (entailment, paraphrase, same topic…).

    The same model as `kt.TextClassifier` (backbone, pooling, a small head,
    one logit per class), reading two texts per example. Each pair is
    packed as the backbone family was pretrained on pairs: BERT-style
    encoders get `[CLS] a [SEP] b [SEP]` and segment ids (0 for `a`, 1 for
    `b`); families without segment ids get the texts joined by their
    separator token. A pair longer than `sequence_length` is cut longest
    first: the longer text loses tokens until both fit, or until each has
    half of the budget; the preprocessor's `truncation` ("head", "tail",
    "head+tail") says which part of a cut text is kept.

    `fit`, `evaluate`, `predict` and `report` take a list of
    `(text_a, text_b)` pairs, a tuple `(texts_a, texts_b)` of two parallel
    lists, or a `kt.datasets.TextData` of pairs; a single text is an error.
    (A plain `TextClassifier` also accepts pairs, packed the same way; this
    class says what it expects and refuses single texts.)

    Args:
        backbone: a KerasHub backbone of a supported family.
        num_classes: number of classes (at least 2). May be left out when
            `label_names` is given.
        preprocessor: the `kt.TextPreprocessor` that lets the model read
            raw text. Defaults to `None` (token ids only).
        pooling: `"cls"`, `"pooled"`, `"mean"`, `"max"` or `"last"`.
            Defaults to the checkpoint's or the family's default.
        hidden_units: sizes of hidden GELU layers in the head. Defaults to
            `()`.
        dropout: dropout before each Dense layer of the head. Defaults to
            `0.1`.
        activation: activation of the output layer. Defaults to `None`
            (logits).
        label_names: class names, `label_names[i]` naming class `i`.
            Defaults to `None`.
        compile: compile with the task defaults. Defaults to `True`.

    Example:
    ```python
    model = kt.TextPairClassifier.from_preset(
        "bert_base_en_uncased", label_names=["entailment", "neutral", "contradiction"]
    )
    pairs = [("A man sleeps.", "A person rests."), ("A man sleeps.", "He runs.")]
    model.fit(pairs, ["entailment", "contradiction"], epochs=1)
    model.predict_labels([("It rains.", "The street is wet.")])
    ```
    """

    @classmethod
    def from_preset(
        cls,
        preset,
        num_classes=None,
        label_names=None,
        freeze=True,
        sequence_length=DEFAULT_SEQUENCE_LENGTH,
        truncation="head",
        load_weights=True,
        dtype=None,
        **kwargs,
    ):
        """Builds a pair classifier over a pretrained backbone.

        Args:
            preset: a KerasHub preset name, a local KerasHub preset or
                HuggingFace-format directory, or an `hf://` handle.
            num_classes: number of classes; or give `label_names`.
            label_names: class names. Defaults to `None`.
            freeze: `True` trains only the head, `False` everything, an
                integer N the head and the top N blocks. Defaults to `True`.
            sequence_length: longest packed pair, special tokens included.
                Defaults to `512`.
            truncation: which part of a text that must be cut is kept:
                `"head"`, `"tail"` or `"head+tail"`. The budget is shared
                longest first. Defaults to `"head"`.
            load_weights: load pretrained weights. Defaults to `True`.
            dtype: dtype policy of the backbone and head. Defaults to
                `None`.
            **kwargs: the head's arguments (`pooling`, `hidden_units`,
                `dropout`, `activation`).
        """
        return task_from_preset(
            cls,
            preset,
            freeze=freeze,
            sequence_length=sequence_length,
            truncation=truncation,
            load_weights=load_weights,
            dtype=dtype,
            num_classes=num_classes,
            label_names=label_names,
            **kwargs,
        )

    def _as_batches(self, x, y, batch_size, shuffle, name="x", seed=None):
        x = as_pairs(x, name)
        return super()._as_batches(x, y, batch_size, shuffle, name=name, seed=seed)

    def predict(self, x, batch_size=None, **kwargs):
        """Predicts on text pairs (in their order) or anything Keras accepts."""
        return super().predict(as_pairs(x), batch_size=batch_size, **kwargs)

    def report(self, x, y=None, batch_size=None, **kwargs):
        """Scores the model on labelled pairs: a `ClassificationReport`.

        Takes pairs as `fit` does; see `TextClassifier.report`.
        """
        return super().report(as_pairs(x), y, batch_size=batch_size, **kwargs)
