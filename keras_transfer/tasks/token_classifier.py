"""Token classification (NER, part of speech) over any supported backbone.

KerasHub has no token-classification task; this one tags words on the same
frozen / unfrozen backbone machinery as `kt.TextClassifier`. The data are
words with one tag each; the model reads sub-word tokens. `kt.tagging`
aligns the two: the first sub-token of each word carries its tag and the
rest are masked out of the loss (label `-100`,
`SparseCategoricalCrossentropy(ignore_class=-100)`); predictions are read
back from the first sub-tokens, so every method speaks in words.
"""

import keras
import numpy as np

from keras_transfer import freezing
from keras_transfer.backbones import DEFAULT_SEQUENCE_LENGTH
from keras_transfer.datasets.conll import TaggedData, check_sentences, check_tags
from keras_transfer.metrics.entities import (
    IGNORE_CLASS,
    EntityF1,
    TokenAccuracy,
    check_scheme,
    count_entities,
    format_report,
    get_entities,
    scores_from_counts,
)
from keras_transfer.tagging import TaggedBatches, check_tag_names, split_words
from keras_transfer.tasks.base import DEFAULT_BATCH_SIZE, Task, _as_standard_float, check_flag
from keras_transfer.tasks.text_classifier import (
    _check_no_truncation,
    check_head_arguments,
    check_label_names,
    head_initializer,
    task_from_preset,
)


def _check_not_raw_sentences(x, name):
    """Raises when `x` is a list of raw sentence strings instead of word lists."""
    if not (isinstance(x, (list, tuple)) and x and isinstance(x[0], str)):
        return
    sentence = next((s for s in x if isinstance(s, str) and len(s.split()) > 1), None)
    if sentence is None:
        return  # one sentence's words, not wrapped: check_sentences says so
    raise ValueError(
        f"Expected `{name}` to be a list of sentences, each a list of words, but "
        f"`{name}` holds raw strings such as {sentence[:60]!r}. Split each sentence "
        "into words: `[sentence.split() for sentence in sentences]`, or "
        "`[[w for w, _, _ in kt.tagging.split_words(s)] for s in sentences]` to "
        "split off punctuation too. To tag raw strings, "
        "`model.predict_entities(sentences)` does the splitting."
    )


def _plain_tag_lists(tags):
    """Per-sentence 1-D NumPy arrays of tags become lists."""
    if isinstance(tags, np.ndarray) and tags.ndim >= 1:
        tags = list(tags)
    if isinstance(tags, (list, tuple)):
        tags = [t.tolist() if isinstance(t, np.ndarray) and t.ndim == 1 else t for t in tags]
    return tags


def _is_word_lists(x):
    return (
        isinstance(x, (list, tuple))
        and len(x) > 0
        and isinstance(x[0], (list, tuple))
        and (len(x[0]) == 0 or isinstance(x[0][0], str))
    )


@keras.saving.register_keras_serializable(package="keras_transfer")
class TokenClassifier(Task):
    """A word tagger (NER, part of speech): backbone, then a tag per token.

    Words are tokenized one by one; the first sub-token of each word is
    trained on and predicts its tag, the other sub-tokens are masked out of
    the loss. A sentence longer than the preprocessor's `sequence_length` is
    split into windows of whole words, so every word gets a tag. With a
    decoder backbone (GPT-2) each word sees only the words before it.

    Args:
        backbone: a KerasHub backbone of a supported family.
        num_tags: number of tags. May be left out when `tag_names` is given.
        preprocessor: the `kt.TextPreprocessor` that lets the model read
            words. Defaults to `None` (token ids only).
        tag_names: the tags, index `i` naming tag `i`, for example
            `["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]`. Needed for string
            tags, `predict_tags`, entities and entity scores. Defaults to
            `None`.
        tag_scheme: how the tags mark entities: `"IOB2"`, `"IOB1"` or
            `"BIOES"`; or `None` for tags without entities (part of speech,
            chunks). The tag names must fit the scheme (an `E-` tag in IOB2
            is an error); tag sequences in the data are not checked, as
            seqeval's default mode reads malformed ones leniently too.
            Defaults to `"IOB2"`.
        hidden_units: sizes of hidden Dense layers (GELU) between the token
            features and the output. Defaults to `()`: a linear head.
        dropout: dropout before each Dense layer of the head. Defaults to
            `0.1`.
        compile: compile with the task defaults right away. Defaults to
            `True`.

    Example:
    ```python
    model = kt.TokenClassifier.from_preset(
        "bert_base_en_uncased", tag_names=["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]
    )
    model.fit([["John", "lives", "in", "Paris"]], [["B-PER", "O", "O", "B-LOC"]])
    model.predict_entities(["Mary moved to Rome."])
    # [[{"text": "Mary", "label": "PER", "start": 0, "end": 4, "score": 0.91}, ...]]
    ```
    """

    # The head reads every token, never BERT's pooler: keep that frozen.
    pooling = "tokens"

    def __init__(
        self,
        backbone,
        num_tags=None,
        preprocessor=None,
        tag_names=None,
        tag_scheme="IOB2",
        hidden_units=(),
        dropout=0.1,
        compile=True,
        **kwargs,
    ):
        check_flag("compile", compile)
        tag_names, num_tags = check_label_names(
            tag_names, num_tags, count_name="num_tags", what="tag", names_name="tag_names"
        )
        if tag_scheme is not None:
            tag_scheme = check_scheme(tag_scheme)
            if tag_names is not None:
                check_tag_names(tag_names, tag_scheme)
        hidden_units = check_head_arguments(hidden_units, dropout)

        # === Functional graph ===
        inputs = backbone.input
        features = backbone(inputs)
        if isinstance(features, dict):
            features = features["sequence_output"]  # (B, T, hidden)
        dtype = backbone.dtype_policy
        x = features
        for i, units in enumerate(hidden_units):
            x = keras.layers.Dropout(dropout, dtype=dtype, name=f"head_dropout_{i}")(x)
            x = keras.layers.Dense(
                units, activation="gelu", kernel_initializer=head_initializer(), dtype=dtype, name=f"head_dense_{i}"
            )(x)
        x = keras.layers.Dropout(dropout, dtype=dtype, name="output_dropout")(x)
        outputs = keras.layers.Dense(
            num_tags, kernel_initializer=head_initializer(), dtype=dtype, name="logits"
        )(x)  # (B, T, num_tags)
        super().__init__(
            inputs=inputs,
            outputs=outputs,
            backbone=backbone,
            preprocessor=preprocessor,
            **kwargs,
        )

        # === Config ===
        self.num_tags = num_tags
        self.tag_names = tag_names
        self.tag_scheme = tag_scheme
        self.hidden_units = hidden_units
        self.dropout = dropout
        freezing.freeze_unused_pooler(self, backbone)
        if compile:
            self.compile()

    @classmethod
    def from_preset(
        cls,
        preset,
        num_tags=None,
        tag_names=None,
        tag_scheme="IOB2",
        freeze=True,
        sequence_length=DEFAULT_SEQUENCE_LENGTH,
        load_weights=True,
        dtype=None,
        **kwargs,
    ):
        """Builds a tagger over a pretrained backbone.

        Args:
            preset: a KerasHub preset name, a local KerasHub preset or
                HuggingFace-format directory, or an `hf://` handle.
            num_tags: number of tags; or give `tag_names`.
            tag_names: the tags, for example a `TaggedData`'s `tag_names`.
            tag_scheme: `"IOB2"`, `"IOB1"`, `"BIOES"`, or `None` for tags
                without entities. Defaults to `"IOB2"`.
            freeze: `True` trains only the head, `False` everything, an
                integer N the head and the top N transformer blocks.
                Defaults to `True`.
            sequence_length: longest packed window, special tokens
                included; longer sentences are split. Defaults to `512`.
            load_weights: load pretrained weights. Defaults to `True`.
            dtype: dtype policy of the backbone and head. Defaults to `None`.
            **kwargs: the head's arguments (`hidden_units`, `dropout`).
        """
        _check_no_truncation(
            cls, kwargs.pop("truncation", "head"), "a sentence longer than a window is split into windows of whole words"
        )
        return task_from_preset(
            cls,
            preset,
            freeze=freeze,
            sequence_length=sequence_length,
            load_weights=load_weights,
            dtype=dtype,
            num_tags=num_tags,
            tag_names=tag_names,
            tag_scheme=tag_scheme,
            **kwargs,
        )

    # Compile defaults ---------------------------------------------------------

    def default_loss(self):
        return keras.losses.SparseCategoricalCrossentropy(from_logits=True, ignore_class=IGNORE_CLASS)

    def default_metrics(self):
        metrics = [TokenAccuracy(name="accuracy")]
        if self.tag_scheme is not None and self.tag_names is not None:
            metrics.append(EntityF1(self.tag_names, scheme=self.tag_scheme, name="entity_f1"))
        return metrics

    # Data -----------------------------------------------------------------------

    def _tag_ids(self, words, tags, names=None, name="y"):
        """Checks tags (names or ids) against the words; returns id arrays."""
        tags = check_tags(words, _plain_tag_lists(tags), name)
        known = self.tag_names
        if names is not None and known is not None and list(names) != known:
            unknown = sorted(set(names) - set(known))
            if unknown:
                raise ValueError(
                    f"The data has tags {unknown[:5]} that this model does not "
                    f"know (its tag_names are {known})."
                )
        index = {tag: i for i, tag in enumerate(known)} if known is not None else None
        ids = []
        for i, sentence_tags in enumerate(tags):
            if all(isinstance(t, str) for t in sentence_tags):
                if index is None:
                    raise ValueError(
                        f"`{name}` holds string tags but the model has no "
                        "`tag_names`. Build it with tag_names=[...] or give "
                        "integer tag ids."
                    )
                missing = [t for t in sentence_tags if t not in index]
                if missing:
                    raise ValueError(
                        f"Unknown tag {missing[0]!r} in `{name}[{i}]`. The "
                        f"model's tag_names are {known}."
                    )
                ids.append(np.array([index[t] for t in sentence_tags], dtype="int32"))
                continue
            array = np.asarray(sentence_tags)
            if array.size and (array.dtype.kind not in "iu" or array.min() < 0 or array.max() >= self.num_tags):
                raise ValueError(
                    f"`{name}[{i}]` must hold tag names or tag ids in "
                    f"0..{self.num_tags - 1}. Received {list(sentence_tags)[:8]!r}."
                )
            ids.append(array.astype("int32"))
        return ids

    def _words_and_tags(self, x, y, name):
        if isinstance(x, TaggedData):
            if y is not None:
                raise ValueError(
                    f"`{name}` is a TaggedData that already holds its tags; do "
                    "not pass `y` as well."
                )
            if x.tags is None:
                return x.words, None
            return x.words, self._tag_ids(x.words, x.tags, x.tag_names, f"{name} tags")
        _check_not_raw_sentences(x, name)
        words = check_sentences(x, name)
        if y is None:
            return words, None
        return words, self._tag_ids(words, y, name="y" if name == "x" else f"{name} tags")

    def _as_batches(self, x, y, batch_size, shuffle, name="x", seed=None):
        """Word lists or a `TaggedData` become `TaggedBatches`; others pass."""
        if not isinstance(x, (TaggedData, list, tuple)):
            return x, y  # token-id dictionaries, datasets: Keras reads them
        if self.preprocessor is None:
            raise ValueError(
                "This model has no preprocessor, so it cannot read words. Pass "
                "token-id dictionaries, or attach one: `model.preprocessor = preprocessor`."
            )
        words, tag_ids = self._words_and_tags(x, y, name)
        if not words:
            raise ValueError(f"`{name}` is empty: there is nothing to train or predict on.")
        batches = TaggedBatches(
            self.preprocessor,
            words,
            tag_ids,
            batch_size=DEFAULT_BATCH_SIZE if batch_size is None else batch_size,
            shuffle=shuffle,
            bucketing=True,
            seed=seed,
        )
        return batches, None

    def _validation_batches(self, validation_data, batch_size):
        if isinstance(validation_data, TaggedData):
            return self._as_batches(validation_data, None, batch_size, False, "validation_data")[0]
        if (
            isinstance(validation_data, tuple)
            and len(validation_data) == 2
            and _is_word_lists(validation_data[0])
        ):
            return self._as_batches(*validation_data, batch_size, False, "validation_data")[0]
        return super()._validation_batches(validation_data, batch_size)

    def evaluate(self, x=None, y=None, batch_size=None, **kwargs):
        """Loss, token accuracy and entity F1 on word lists with tags (or a
        tagged `TaggedData`); anything else goes to `keras.Model.evaluate`."""
        untagged = (isinstance(x, TaggedData) and x.tags is None) or (
            isinstance(x, (list, tuple)) and not isinstance(x, TaggedData) and y is None
        )
        if untagged:
            raise ValueError(
                "`evaluate` needs the true tags: pass `y` (one list of tags per "
                "sentence), or a TaggedData with tags."
            )
        return super().evaluate(x, y, batch_size=batch_size, **kwargs)

    # Inference ----------------------------------------------------------------

    def predict(self, x, batch_size=None, **kwargs):
        """Word-level logits: one `(num_words, num_tags)` array per sentence.

        `x` is a list of word lists or a `TaggedData`. Each word's row is
        the logits at its first sub-token. Token-id dictionaries and other
        Keras inputs go to `keras.Model.predict` and give token-level
        logits of shape `(batch, length, num_tags)`.
        """
        if isinstance(x, TaggedData):
            x = x.words
        data, _ = self._as_batches(x, None, batch_size, shuffle=False)
        if not isinstance(data, TaggedBatches):
            return super().predict(data, batch_size=batch_size, **kwargs)
        return [_as_standard_float(rows) for rows in data.word_outputs(lambda inputs: self.predict_on_batch(inputs))]

    def _check_names(self, what):
        if self.tag_names is None:
            raise ValueError(
                f"{what} needs the tag names; this model has none. Build it "
                "with tag_names=[...] (or set `model.tag_names`)."
            )

    def predict_tags(self, x, batch_size=None, return_scores=False, verbose=0):
        """Predicts a tag for every word.

        Args:
            x: a list of word lists, or a `TaggedData`.
            batch_size: sentences per batch. Defaults to `32`.
            return_scores: also return each word's softmax probability of
                its tag. Defaults to `False`.
            verbose: `predict`'s progress bar (1) or none (0). Defaults to
                `0`.

        Returns:
            One list of tag names per sentence (and, with `return_scores`,
            one list of probabilities per sentence).

        Example:
        ```python
        model.predict_tags([["John", "lives", "in", "Paris"]])
        # [["B-PER", "O", "O", "B-LOC"]]
        ```
        """
        self._check_names("predict_tags")
        logits = self.predict(x, batch_size=batch_size, verbose=verbose)
        tags, scores = [], []
        for rows in logits:
            rows = rows.astype("float64")
            probabilities = np.exp(rows - rows.max(axis=-1, keepdims=True)) if len(rows) else rows
            if len(rows):
                probabilities /= probabilities.sum(axis=-1, keepdims=True)
            best = np.argmax(rows, axis=-1) if len(rows) else np.zeros(0, "int64")
            tags.append([self.tag_names[i] for i in best])
            scores.append([float(probabilities[j, i]) for j, i in enumerate(best)])
        return (tags, scores) if return_scores else tags

    def predict_entities(self, texts, batch_size=None):
        """Finds the entities in raw sentences.

        Each text is split into words (`kt.tagging.split_words`: runs of
        letters and digits, and punctuation on its own), tagged, and the
        tags read as entities in the model's `tag_scheme` (leniently, as
        seqeval's default mode).

        Args:
            texts: a list of strings.
            batch_size: texts per batch. Defaults to `32`.

        Returns:
            One list per text of entities, each a dictionary with `text`,
            `label`, `start` and `end` (character offsets into the text:
            `text[start:end]`) and `score` (the mean probability of the
            entity's word tags).

        Example:
        ```python
        model.predict_entities(["John lives in Paris."])
        # [[{"text": "John", "label": "PER", "start": 0, "end": 4, "score": 0.98},
        #   {"text": "Paris", "label": "LOC", "start": 14, "end": 19, "score": 0.95}]]
        ```
        """
        self._check_names("predict_entities")
        if self.tag_scheme is None:
            raise ValueError(
                "predict_entities needs entity tags; this model has "
                "tag_scheme=None. Use `predict_tags` for tags without entities."
            )
        if isinstance(texts, str):
            raise ValueError(
                f"Expected a list of strings, got a single string. Wrap it in a list: [{texts[:40]!r}]."
            )
        texts = list(texts)
        for i, text in enumerate(texts):
            if not isinstance(text, str):
                raise ValueError(
                    f"Expected every text to be a string. Received texts[{i}]={text!r}."
                )
        if not texts:
            return []
        spans = [split_words(text) for text in texts]
        tags, scores = self.predict_tags([[w for w, _, _ in s] for s in spans], batch_size, return_scores=True)
        results = []
        for text, words, sentence_tags, sentence_scores in zip(texts, spans, tags, scores):
            entities = []
            for label, first, end in get_entities(sentence_tags, self.tag_scheme):
                start, stop = words[first][1], words[end - 1][2]
                entities.append(
                    {
                        "text": text[start:stop],
                        "label": label,
                        "start": start,
                        "end": stop,
                        "score": float(np.mean(sentence_scores[first:end])),
                    }
                )
            results.append(entities)
        return results

    def report(self, x, y=None, mode="default", batch_size=None, digits=4, output_dict=False):
        """Entity-level precision, recall and F1 per type, as seqeval reports them.

        Scores whole sentences (however many windows they took).

        Args:
            x: a tagged `TaggedData`, or word lists with their tags as `y`.
            y: the true tags when `x` is word lists. Defaults to `None`.
            mode: `"default"` (conlleval, seqeval's default) or `"strict"`.
                Defaults to `"default"`.
            batch_size: sentences per batch. Defaults to `32`.
            digits: decimals in the printed table. Defaults to `4`.
            output_dict: return the dictionary of
                `kt.metrics.entity_scores` instead of the table. Defaults to
                `False`.

        Returns:
            The table as a string, or the scores' dictionary.
        """
        self._check_names("report")
        if self.tag_scheme is None:
            raise ValueError("report scores entities; this model has tag_scheme=None.")
        words, tag_ids = self._words_and_tags(x, y, "x")
        if tag_ids is None:
            raise ValueError("`report` needs the true tags: pass `y`, or a TaggedData with tags.")
        predicted = self.predict_tags(words, batch_size=batch_size)
        true = [[self.tag_names[i] for i in ids] for ids in tag_ids]
        scores = scores_from_counts(count_entities(true, predicted, self.tag_scheme, mode))
        return scores if output_dict else format_report(scores, digits)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "num_tags": self.num_tags,
                "tag_names": self.tag_names,
                "tag_scheme": self.tag_scheme,
                "hidden_units": list(self.hidden_units),
                "dropout": self.dropout,
            }
        )
        return config
