"""Extractive question answering (SQuAD style) over any supported backbone.

KerasHub has no span question-answering task; this one puts the usual head
on a backbone: a `Dense(2)` over the sequence gives every token a start and
an end logit, masked so that an answer can only start or end inside the
context (or on the first token, which stands for "no answer in this
window"). Windows, labels and decoding live in `keras_transfer.qa`.
"""

import numbers
import os
import pathlib

import keras
import keras_hub
import numpy as np
from keras_hub.src.utils.preset_utils import find_subclass, get_preset_loader

from keras_transfer import distributed, freezing
from keras_transfer.backbones import _text_preset_family, load_backbone
from keras_transfer.datasets.squad import QAData, check_strings, normalize_answers
from keras_transfer.families import backbone_class, family_of
from keras_transfer.metrics.squad import squad_scores
from keras_transfer.qa import (
    QABatches,
    check_family,
    check_tokenizer,
    check_window_sizes,
    decode,
    is_integer,
    make_windows,
    plain_answers,
)
from keras_transfer.tasks.base import DEFAULT_BATCH_SIZE, Task, _as_standard_float, check_flag, check_verbose
from keras_transfer.tasks.text_classifier import _check_freeze, _check_no_truncation, apply_freeze, head_initializer
from keras_transfer.wording import counted

# Large enough to zero a softmax in float32, small enough not to overflow.
_MASK_VALUE = -1e9


@keras.saving.register_keras_serializable(package="keras_transfer")
class SpanLogits(keras.layers.Layer):
    """Takes the start (or end) logits out of `(batch, length, 2)` logits, masked.

    Positions where `span_mask` is False (the question, separators and
    padding) get a very low logit, so neither the loss nor a prediction can
    put an answer there. The output is float32 whatever the compute dtype.

    Args:
        index: `0` for the start logits, `1` for the end logits.

    Call args:
        logits: `(batch, length, 2)` tensor.
        span_mask: `(batch, length)` boolean tensor.

    Returns:
        A `(batch, length)` tensor.
    """

    def __init__(self, index, **kwargs):
        super().__init__(**kwargs)
        if index not in (0, 1):
            raise ValueError(f"Expected `index` 0 (start) or 1 (end). Received: index={index!r}")
        self.index = index

    def call(self, logits, span_mask):
        logits = keras.ops.cast(logits[..., self.index], "float32")
        return keras.ops.where(keras.ops.cast(span_mask, "bool"), logits, _MASK_VALUE)

    def compute_output_shape(self, logits_shape, span_mask_shape=None):
        return logits_shape[:-1]

    def get_config(self):
        config = super().get_config()
        config["index"] = self.index
        return config


def _preset_classes(preset):
    """`(family, tokenizer class)` of a preset, read from its config alone
    (no weights, no download), or `None` when they cannot be told that way:
    `load_backbone` then loads the preset and reports what is wrong with it.
    """
    if isinstance(preset, pathlib.PurePath):
        preset = str(preset)
    if not isinstance(preset, str):
        return None
    try:
        registry = keras_hub.models.Backbone.presets
        if preset in registry:
            family = _text_preset_family(registry[preset])
            backbone_cls = backbone_class(family) if family is not None else None
        elif os.path.isdir(os.path.expanduser(preset)):
            preset = os.path.expanduser(preset)
            backbone_cls = get_preset_loader(preset).check_backbone_class()
            family = family_of(backbone_cls)
        else:
            return None
        if backbone_cls is None:
            return None
        # The family's own tokenizer (LlamaTokenizer, not a subclass made
        # for another model over the same backbone class).
        tokenizer_cls = getattr(keras_hub.models, backbone_cls.__name__.replace("Backbone", "Tokenizer"), None)
        if not (isinstance(tokenizer_cls, type) and issubclass(tokenizer_cls, keras_hub.tokenizers.Tokenizer)):
            tokenizer_cls = find_subclass(preset, keras_hub.tokenizers.Tokenizer, backbone_cls)
        return family, tokenizer_cls
    except (ValueError, KeyError, OSError, TypeError):
        return None


@keras.saving.register_keras_serializable(package="keras_transfer")
class QuestionAnswerer(Task):
    """Extractive question answering: finds each answer as a span of its context.

    The question and the context are packed as the family packs a text pair
    (`[CLS] question [SEP] context [SEP]` with segment ids for BERT); a
    context longer than the sequence is split into windows that overlap by
    `stride` tokens. A `Dense(2)` over the backbone's sequence output gives
    start and end logits; the loss is the cross-entropy of the answer's
    start and end positions (summed), a window without the whole answer
    pointing at its first token, as in HuggingFace's `run_qa.py`.
    `answer()` picks the best valid span across a question's windows and
    returns its text by character offsets into the original context.

    Args:
        backbone: a KerasHub backbone of a supported family (BERT, GPT-2).
        preprocessor: the `kt.TextPreprocessor`; its `sequence_length` is the
            window length. Needed for raw text. Defaults to `None`.
        stride: tokens shared by consecutive windows of a long context
            (HuggingFace's `stride`, run_qa.py's `doc_stride`). Defaults to
            `128`.
        max_question_length: longer questions keep their first tokens.
            Defaults to `64`.
        max_answer_length: the longest answer `answer()` returns, in
            tokens. Defaults to `30`.
        allow_unanswerable: SQuAD 2.0 style: answer `""` when the null
            score (start and end on the first token) beats the best span by
            more than `null_threshold`. Defaults to `False`.
        null_threshold: the margin, in logits, the null score needs over the
            best span. Raise it to answer more often. Defaults to `0.0`.
        dropout: dropout on the sequence output before the span layer.
            Defaults to `0.0` (none, as BERT's SQuAD head).
        compile: compile with the task defaults right away. Defaults to
            `True`.

    Inputs (for token-id dictionaries instead of raw text): the backbone's
    inputs and `span_mask`, True where an answer may start or end.

    Example:
    ```python
    model = kt.QuestionAnswerer.from_preset("bert_base_en_uncased", freeze=False)
    data = kt.datasets.read_squad("train-v1.1.json")
    model.fit(data, epochs=1)
    model.answer(["Where is the tower?"], ["The tower is in Paris."])
    # [{"text": "Paris", "start": 16, "end": 21, "score": 0.93}]
    ```
    """

    # The head reads every token, never BERT's pooler: keep that frozen.
    pooling = "tokens"

    def __init__(
        self,
        backbone,
        preprocessor=None,
        stride=128,
        max_question_length=64,
        max_answer_length=30,
        allow_unanswerable=False,
        null_threshold=0.0,
        dropout=0.0,
        compile=True,
        **kwargs,
    ):
        check_flag("compile", compile)
        family = family_of(backbone)
        check_family(family)
        if preprocessor is not None:
            check_tokenizer(preprocessor.tokenizer)
            specials = (family.start is not None) + family.pair_sep_repeat + 1
            check_window_sizes(preprocessor.sequence_length, stride, max_question_length, specials)
        else:
            check_window_sizes(10**6, stride, max_question_length)  # types only
        if not is_integer(max_answer_length) or max_answer_length < 1:
            raise ValueError(
                "Expected `max_answer_length` to be a positive integer (tokens). "
                f"Received: max_answer_length={max_answer_length!r}"
            )
        check_flag("allow_unanswerable", allow_unanswerable)
        allow_unanswerable = bool(allow_unanswerable)  # a NumPy bool too, saved as Python's
        if isinstance(null_threshold, (bool, np.bool_)) or not isinstance(null_threshold, numbers.Real):
            raise ValueError(f"Expected `null_threshold` to be a number. Received: {null_threshold!r}")
        if isinstance(dropout, (bool, np.bool_)) or not isinstance(dropout, numbers.Real) or not 0 <= dropout < 1:
            raise ValueError(f"Expected `dropout` in [0, 1). Received: dropout={dropout!r}")
        # NumPy numbers pass the checks; the config keeps Python ones.
        stride, max_question_length = int(stride), int(max_question_length)
        max_answer_length = int(max_answer_length)
        dropout = dropout.item() if isinstance(dropout, np.generic) else dropout

        # === Functional graph ===
        inputs = dict(backbone.input)
        inputs["span_mask"] = keras.Input(shape=(None,), dtype="bool", name="span_mask")
        features = backbone({k: v for k, v in inputs.items() if k != "span_mask"})
        if isinstance(features, dict):
            features = features["sequence_output"]
        dtype = backbone.dtype_policy
        if dropout:
            features = keras.layers.Dropout(dropout, dtype=dtype, name="span_dropout")(features)
        logits = keras.layers.Dense(2, kernel_initializer=head_initializer(), dtype=dtype, name="span_dense")(features)  # (B, T, 2)
        outputs = {
            "start_logits": SpanLogits(0, name="start_logits")(logits, inputs["span_mask"]),
            "end_logits": SpanLogits(1, name="end_logits")(logits, inputs["span_mask"]),
        }
        super().__init__(
            inputs=inputs,
            outputs=outputs,
            backbone=backbone,
            preprocessor=preprocessor,
            **kwargs,
        )

        # === Config ===
        self.stride = stride
        self.max_question_length = max_question_length
        self.max_answer_length = max_answer_length
        self.allow_unanswerable = allow_unanswerable
        self.null_threshold = float(null_threshold)
        self.dropout = dropout
        freezing.freeze_unused_pooler(self, backbone)
        if compile:
            self.compile()

    @classmethod
    def from_preset(
        cls,
        preset,
        freeze=False,
        sequence_length=384,
        stride=128,
        max_answer_length=30,
        load_weights=True,
        dtype=None,
        **kwargs,
    ):
        """Builds a question answerer over a pretrained backbone.

        Args:
            preset: a KerasHub preset name, a local KerasHub preset or
                HuggingFace-format directory, or an `hf://` handle.
            freeze: `True` trains only the span head, `False` everything,
                an integer N the head and the top N blocks. Span prediction
                needs the backbone to adapt: a frozen one gives poor spans.
                Defaults to `False`.
            sequence_length: the window length, question and special tokens
                included. Defaults to `384` (as BERT on SQuAD).
            stride: tokens shared by consecutive windows. Defaults to `128`.
            max_answer_length: longest answer in tokens. Defaults to `30`.
            load_weights: load pretrained weights. Defaults to `True`.
            dtype: dtype policy of the backbone and head. Defaults to
                `None` (Keras' global policy).
            **kwargs: other arguments of `QuestionAnswerer`
                (`max_question_length`, `allow_unanswerable`,
                `null_threshold`, `dropout`, `compile`).
        """
        _check_freeze(freeze)
        check_flag("compile", kwargs.get("compile", True))
        _check_no_truncation(
            cls, kwargs.pop("truncation", "head"), "a long context is split into windows that overlap by `stride` tokens"
        )
        found = _preset_classes(preset)
        if found is not None:  # refuse before the weights load
            check_family(found[0])
            check_tokenizer(found[1])
        backbone, preprocessor = load_backbone(
            preset, sequence_length=sequence_length, load_weights=load_weights, dtype=dtype
        )
        compile = kwargs.pop("compile", True)
        model = cls(
            backbone=backbone,
            preprocessor=preprocessor,
            stride=stride,
            max_answer_length=max_answer_length,
            compile=False,
            **kwargs,
        )
        apply_freeze(model, freeze)
        if compile:
            model.compile()  # after freezing: the default rate depends on it
        return model

    # Compile defaults -------------------------------------------------------

    def default_loss(self):
        return {
            "start_logits": keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            "end_logits": keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        }

    def default_metrics(self):
        # Names, not metric objects: the model keeps what `compile` got as an
        # attribute, and Keras would also report tracked objects on their own.
        return {"start_logits": ["accuracy"], "end_logits": ["accuracy"]}

    def compile(self, optimizer="auto", loss="auto", metrics="auto", **kwargs):
        """Configures training; see `kt.Task.compile`.

        The default loss is the cross-entropy of the start position plus
        that of the end position; the metrics are the share of windows whose
        start (end) position is predicted exactly.
        """
        super().compile(optimizer=optimizer, loss=loss, metrics=metrics, **kwargs)

    # Data -------------------------------------------------------------------

    def _qa_inputs(self, x, questions, contexts, answers, name, need_answers):
        """(questions, contexts, answers) from a `QAData` or three lists."""
        if isinstance(x, QAData):
            if questions is not None or contexts is not None or answers is not None:
                raise ValueError(
                    f"`{name}` is a QAData that holds its questions, contexts and "
                    "answers; do not pass `questions`, `contexts` or `answers` too."
                )
            questions, contexts, answers, ids = x.questions, x.contexts, x.answers, x.ids
        elif isinstance(x, tuple) and len(x) in (2, 3) and questions is None:
            questions, contexts = x[0], x[1]
            answers = x[2] if len(x) == 3 else answers
            ids = None
        elif x is not None:
            raise ValueError(
                f"Expected `{name}` to be a kt.datasets.QAData, a (questions, "
                "contexts, answers) tuple, or a PyDataset of token ids. Received "
                f"{type(x).__name__}. Or pass questions=..., contexts=..., "
                "answers=... as keywords."
            )
        else:
            ids = None
        if questions is None or contexts is None:
            raise ValueError(
                "Give the questions and their contexts: `questions=[...]`, "
                "`contexts=[...]` (one context per question), or a QAData."
            )
        questions = check_strings(questions, "questions", ids)
        contexts = check_strings(contexts, "contexts", ids)
        if len(questions) != len(contexts):
            raise ValueError(
                f"Got {counted(len(questions), 'question')} but "
                f"{counted(len(contexts), 'context')}. "
                "Give one context per question (repeat a shared context)."
            )
        if not questions:
            raise ValueError("No questions: there is nothing to train or answer.")
        if answers is not None and not isinstance(x, QAData):
            answers = normalize_answers(plain_answers(answers), contexts, ids)
        if need_answers:
            if answers is None:
                raise ValueError(
                    "Training and evaluation need the answers: pass `answers=[...]` "
                    "({'text': ..., 'answer_start': ...} per question) or a "
                    "QAData with answers (kt.datasets.read_squad)."
                )
            unanswerable = sum(not a["text"] for a in answers)
            if unanswerable and not self.allow_unanswerable:
                raise ValueError(
                    f"{unanswerable} of the {counted(len(answers), 'question')} "
                    f"{'have' if unanswerable != 1 else 'has'} no answer "
                    "(SQuAD 2.0 style), but this model has allow_unanswerable=False "
                    "and would never answer ''. Build it with "
                    "allow_unanswerable=True, or drop those questions."
                )
        return questions, contexts, answers

    def _check_preprocessor(self):
        if self.preprocessor is None:
            raise ValueError(
                "This model has no preprocessor, so it cannot read raw text. "
                "Attach one: `model.preprocessor = preprocessor`."
            )

    def windows(self, questions, contexts, answers=None):
        """The packed windows of questions and contexts (see `kt.qa.make_windows`)."""
        self._check_preprocessor()
        return make_windows(
            self.preprocessor,
            questions,
            contexts,
            answers,
            stride=self.stride,
            max_question_length=self.max_question_length,
        )

    def _batches(self, x, questions, contexts, answers, batch_size, shuffle, seed, name):
        if x is not None and not isinstance(x, (QAData, tuple, list, str)):
            return x  # token ids or a dataset of them, as Keras takes
        questions, contexts, answers = self._qa_inputs(x, questions, contexts, answers, name, True)
        self._check_preprocessor()
        return QABatches(
            self.preprocessor,
            self.windows(questions, contexts, answers),
            batch_size=DEFAULT_BATCH_SIZE if batch_size is None else batch_size,
            shuffle=shuffle,
            seed=seed,
        )

    # Training and inference -------------------------------------------------

    def fit(
        self,
        x=None,
        y=None,
        questions=None,
        contexts=None,
        answers=None,
        batch_size=None,
        epochs=1,
        validation_data=None,
        shuffle=True,
        seed=None,
        **kwargs,
    ):
        """Trains on questions, contexts and answers.

        Args:
            x: a `kt.datasets.QAData` (from `read_squad`), a `(questions,
                contexts, answers)` tuple, or a `PyDataset` of token-id
                batches; or leave it out and pass the three lists.
            y: only with token-id data, as in Keras.
            questions, contexts, answers: lists, one entry per question;
                each answer a SQuAD dict `{"text": ..., "answer_start":
                ...}`, the answer string, or `None` (unanswerable).
            batch_size: windows per batch. Defaults to `32`.
            epochs: passes over the data. Defaults to `1`.
            validation_data: a `QAData` or a `(questions, contexts,
                answers)` tuple; its window loss and accuracies are
                reported. Defaults to `None`.
            shuffle: reshuffle the batches every epoch. Defaults to `True`.
            seed: seed of the shuffling. Defaults to `None`.
            **kwargs: passed to `keras.Model.fit` (`callbacks`, `verbose`…).
        """
        if kwargs.get("cache_features") is True:
            raise ValueError(
                "cache_features=True: QuestionAnswerer does not cache features "
                "(its head reads every token of every window). Leave it out."
            )
        kwargs.pop("cache_features", None)
        # Checked before the data is windowed (`Task.fit` checks them after).
        check_flag("shuffle", shuffle)
        check_verbose(kwargs.get("verbose", "auto"))
        if distributed.initialize():
            seed = distributed.broadcast_seed(seed)  # one batch plan on every process
        data = self._batches(x, questions, contexts, answers, batch_size, shuffle, seed, "x")
        if validation_data is not None and not isinstance(validation_data, keras.utils.PyDataset):
            validation_data = self._batches(
                validation_data, None, None, None, batch_size, False, None, "validation_data"
            )
        # Under torchrun each process takes its rows of every batch, as of
        # `TextBatches` in `Task.fit` (not the whole batch on every one).
        if isinstance(data, QABatches):
            distributed.check_batch_size(data.batch_size)
            data, batch_size = distributed.shard(data), None
        if isinstance(validation_data, QABatches):
            validation_data = distributed.shard(validation_data)
        return super().fit(
            data,
            y,
            batch_size=batch_size,
            epochs=epochs,
            validation_data=validation_data,
            shuffle=shuffle,
            cache_features=False,
            **kwargs,
        )

    def evaluate(self, x=None, y=None, questions=None, contexts=None, answers=None, batch_size=None, **kwargs):
        """The window loss and start/end accuracies, as `keras.Model.evaluate`.

        Takes the same data as `fit`. For SQuAD's exact match and F1 of
        the decoded answers, use `evaluate_answers`.
        """
        distributed.initialize()
        data = self._batches(x, questions, contexts, answers, batch_size, False, None, "x")
        if isinstance(data, QABatches):
            batch_size = None
            data = distributed.shard(data)  # under torchrun, each process its rows
        return super().evaluate(data, y, batch_size=batch_size, **kwargs)

    def predict(self, x, batch_size=None, **kwargs):
        """Keras' predict on token-id inputs; for raw text use `answer`."""
        if isinstance(x, (QAData, tuple)) or (
            isinstance(x, (list, str)) and (not x or isinstance(x[0], str))
        ):
            raise ValueError(
                "QuestionAnswerer.predict takes token-id inputs (with `span_mask`) "
                "and returns logits. For answers to raw questions, call "
                "`model.answer(questions, contexts)`."
            )
        return keras.tree.map_structure(_as_standard_float, keras.Model.predict(self, x, batch_size=batch_size, **kwargs))

    def answer_logits(self, windows, batch_size=None):
        """Start and end logits of every window, each trimmed to its length."""
        batches = QABatches(self.preprocessor, windows, batch_size=DEFAULT_BATCH_SIZE if batch_size is None else batch_size)
        starts, ends = [None] * len(windows), [None] * len(windows)
        for rows in batches._batches:
            out = self.predict_on_batch(batches.inputs(rows))
            s, e = keras.ops.convert_to_numpy(out["start_logits"]), keras.ops.convert_to_numpy(
                out["end_logits"]
            )
            for k, row in enumerate(rows):
                n = len(windows[row].token_ids)
                starts[row], ends[row] = s[k, :n], e[k, :n]
        return starts, ends

    def answer(self, questions, contexts=None, batch_size=None):
        """Answers each question with a span of its context.

        Args:
            questions: a list of questions, or a `QAData`.
            contexts: one context per question (left out with a `QAData`).
            batch_size: windows per forward pass. Defaults to `32`.

        Returns:
            One dict per question: `text` (`""` when unanswerable questions
            are allowed and the null answer wins), `start` and `end`
            (character offsets, `context[start:end] == text`) and `score`
            (the probability of the start times that of the end, within the
            window that holds the span).

        Example:
        ```python
        model.answer(["Who wrote it?"], ["It was written by Ann Lee in 1990."])
        # [{"text": "Ann Lee", "start": 18, "end": 25, "score": 0.81}]
        ```
        """
        x = questions if isinstance(questions, QAData) else None
        questions, contexts, _ = self._qa_inputs(
            x, None if x is not None else questions, contexts, None, "questions", False
        )
        self._check_preprocessor()
        windows = self.windows(questions, contexts)
        starts, ends = self.answer_logits(windows, batch_size)
        return decode(
            starts,
            ends,
            windows,
            contexts,
            max_answer_length=self.max_answer_length,
            allow_unanswerable=self.allow_unanswerable,
            null_threshold=self.null_threshold,
        )

    def evaluate_answers(self, x=None, questions=None, contexts=None, answers=None, batch_size=None):
        """SQuAD exact match and F1 (in percent) of `answer()` on labelled data.

        Takes a `QAData` or the three lists; answers are scored against
        every reference answer of a question, with the official
        normalisation (`kt.metrics.squad_scores`).

        Returns:
            `{"exact_match": ..., "f1": ..., "count": ...}`.
        """
        questions, contexts, answers = self._qa_inputs(x, questions, contexts, answers, "x", True)
        predictions = self.answer(questions, contexts, batch_size=batch_size)
        return squad_scores(predictions, answers)

    @classmethod
    def from_config(cls, config):
        # A model saved with a preprocessor whose tokenizer gives no offsets
        # (trained on token ids) still loads: the preprocessor is attached
        # after the constructor, which refuses it, and raw text fails as
        # before, at `fit` or `answer`.
        config = dict(config)
        preprocessor = config.get("preprocessor")
        if isinstance(preprocessor, dict):
            preprocessor = keras.layers.deserialize(preprocessor)
        tokenizer = getattr(preprocessor, "tokenizer", None)
        try:
            if tokenizer is not None:
                check_tokenizer(tokenizer)
        except ValueError:
            model = super().from_config({**config, "preprocessor": None})
            model.preprocessor = preprocessor
            return model
        return super().from_config({**config, "preprocessor": preprocessor})

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "stride": self.stride,
                "max_question_length": self.max_question_length,
                "max_answer_length": self.max_answer_length,
                "allow_unanswerable": self.allow_unanswerable,
                "null_threshold": self.null_threshold,
                "dropout": self.dropout,
            }
        )
        return config
