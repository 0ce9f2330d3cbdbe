"""Turning raw text into the dictionaries a backbone reads.

`TextPreprocessor` wraps a KerasHub tokenizer (the source of truth for the
vocabulary, saved with the model) and packs token ids the way the backbone's
family expects (`keras_transfer.families`): start token, separators, segment
ids, padding id and side, exactly as KerasHub's own preprocessor for the
family packs them. It works in two stages so that data pipelines can
tokenize once and pad per batch:

- `tokenize(texts)` returns one packed, unpadded id array per example;
- `collate(packed)` pads a batch to its longest member and builds the masks.

Calling the preprocessor on a list of strings does both.

WordPiece vocabularies are tokenized with HuggingFace `tokenizers` (Rust,
already a KerasHub dependency) using BERT's normalizer: 15x faster than
KerasHub's pure-Python path and identical to HF transformers' ids. Byte-pair
tokenizers already run on `tokenizers` inside KerasHub, and SentencePiece
ones (ALBERT, DeBERTaV3, XLM-RoBERTa, Llama, Mistral, Gemma) on the
`sentencepiece` package; neither needs TensorFlow.
"""

import re

import keras
import keras_hub
import numpy as np

from keras_transfer.families import FAMILIES, family_of

TRUNCATIONS = ("head", "tail", "head+tail")


def _check_truncation(truncation):
    if truncation not in TRUNCATIONS:
        raise ValueError(
            f"Unknown truncation {truncation!r}. Expected one of {TRUNCATIONS}: "
            "'head' keeps the beginning of a long text, 'tail' its end, and "
            "'head+tail' the first quarter and the last three quarters of the "
            "budget (best on IMDB in Sun et al. 2019)."
        )


def truncate(ids, budget, truncation="head"):
    """Shortens `ids` to at most `budget` tokens the way `truncation` says.

    `"head+tail"` keeps `budget // 4` tokens of the beginning, but at least
    one once the budget is 2 or more (a budget of 1 keeps the last token),
    and fills the rest of the budget from the end. A budget below 1 keeps
    nothing.
    """
    budget = max(int(budget), 0)  # `ids[:-1]` would keep almost everything
    if len(ids) <= budget:
        return ids
    if truncation == "head":
        return ids[:budget]
    if truncation == "tail":
        return ids[len(ids) - budget :]
    head = max(budget // 4, 1) if budget >= 2 else 0
    return np.concatenate([ids[:head], ids[len(ids) - (budget - head) :]])


def _is_column(value):
    return isinstance(value, (list, np.ndarray))


def columns_as_pairs(texts, name="x"):
    """Reads a tuple `(texts_a, texts_b)` of two text columns as pairs.

    Two lists (or arrays) of strings of the same length become the list of
    `(texts_a[i], texts_b[i])` pairs, as the pair tasks read them; any other
    value is returned unchanged. A tuple of two strings stays two texts.
    """
    if not (isinstance(texts, tuple) and len(texts) == 2 and all(map(_is_column, texts))):
        return texts
    columns = [c.tolist() if isinstance(c, np.ndarray) else list(c) for c in texts]
    for column, values in enumerate(columns):
        for i, text in enumerate(values):
            if not isinstance(text, str):
                raise ValueError(
                    f"Expected every text to be a string. Received: {name}[{column}][{i}]="
                    f"{text!r} of type {type(text).__name__} (`{name}` is read as two "
                    "text columns, (texts_a, texts_b)). Convert the texts with "
                    "str(...) or drop the missing ones."
                )
    if len(columns[0]) != len(columns[1]):
        raise ValueError(
            f"`{name}` is a tuple of two text columns of different lengths "
            f"({len(columns[0])} and {len(columns[1])}). Give one text_b per "
            "text_a: (texts_a, texts_b) with texts_a[i] paired with texts_b[i]."
        )
    return list(zip(*columns))


def check_texts(texts, name="x"):
    """Validates a batch of raw texts (strings or pairs of strings).

    Returns a list of strings or of `(text_a, text_b)` pairs; a tuple of
    two text columns is read as pairs (`columns_as_pairs`).
    """
    if isinstance(texts, str):
        raise ValueError(
            f"Expected a list of strings for `{name}`, got a single string. "
            f"Wrap it in a list: [{texts[:40]!r}]."
        )
    texts = columns_as_pairs(texts, name)
    if isinstance(texts, np.ndarray):
        texts = texts.tolist()
    texts = list(texts)
    for i, text in enumerate(texts):
        if isinstance(text, (tuple, list)):
            if len(text) != 2 or not all(isinstance(t, str) for t in text):
                raise ValueError(
                    f"`{name}[{i}]` is {text!r}: a text pair must be two "
                    "strings, (text_a, text_b). To pair two parallel lists "
                    "of texts, give the tuple (texts_a, texts_b) or "
                    "list(zip(texts_a, texts_b))."
                )
        elif not isinstance(text, str):
            raise ValueError(
                f"Expected every text to be a string. Received: {name}[{i}]="
                f"{text!r} of type {type(text).__name__}. Convert the texts "
                "with str(...) or drop the missing ones before training."
            )
    return texts


def _packs_alike(family, other):
    """Whether two families wrap texts in the same special tokens."""
    fields = ("start", "sep", "end", "pair_sep_repeat", "end_segment_id")
    return all(getattr(family, f) == getattr(other, f) for f in fields)


def _check_tokenizer(tokenizer, backbone_class):
    """Raises unless `tokenizer` can pack texts the way `backbone_class` does.

    A tokenizer of another family would pack without the special tokens the
    backbone was trained with (a GPT-2 tokenizer has no `[CLS]`), or with
    the wrong ones (a BERT tokenizer's `[SEP]` ending a Qwen text). KerasHub
    tokenizers name their family through `backbone_cls`; families that pack
    alike (BERT and DistilBERT, Llama and Mistral) may share tokenizers.
    The special tokens are checked once the vocabulary is there (a
    deserialized tokenizer gets it later, from the saved assets): returns
    whether they were.
    """
    family = FAMILIES[backbone_class]
    name = type(tokenizer).__name__
    own = getattr(tokenizer, "backbone_cls", None)
    try:
        own = family_of(own) if isinstance(own, type) else None
    except ValueError:  # a family keras_transfer does not support
        own = None
    tokenizer_class = backbone_class.replace("Backbone", "Tokenizer")
    module = "keras_hub.models" if hasattr(keras_hub.models, tokenizer_class) else "kt"
    fix = (
        "Pass the tokenizer that comes with the backbone's preset "
        "(`backbone, preprocessor = kt.load_backbone(preset)` gives the two "
        f"together), for example {module}.{tokenizer_class}.from_preset(preset)"
    )
    if own is not None and not _packs_alike(own, family):
        article = "an" if name[:1] in "AEIOU" or name.startswith("XL") else "a"  # an AlbertTokenizer, an XLNetTokenizer
        raise ValueError(
            f"The tokenizer is {article} {name}, of the {own.name} family, but "
            f"backbone_class={backbone_class!r} packs texts the {family.name} "
            f"way, with other special tokens. {fix}, or "
            f"backbone_class={own.backbone_class!r} if the backbone is of the "
            f"{own.name} family."
        )
    try:
        tokenizer.vocabulary_size()
    except ValueError:  # no vocabulary yet
        return False
    # Decoders may lack a start token (Qwen has none); encoders need theirs.
    needed = (family.sep,) if family.decoder else (family.start, family.sep, family.end)
    needed = [a for a in needed if a]
    missing = [a for a in needed if getattr(tokenizer, a, None) is None]
    if missing:
        raise ValueError(
            f"The tokenizer ({name}) has no {' or '.join(missing)}, which the "
            f"{family.name} family (backbone_class={backbone_class!r}) packs "
            f"every text with. {fix}."
        )
    return True


def _valid_unicode(text):
    """`text`, with lone surrogates (from `errors="surrogateescape"`
    decoding, say), which tokenizers cannot encode, replaced by U+FFFD."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


def _typed_specials(tokenizer):
    """The special tokens of `tokenizer` a user could type (longer than one character)."""
    return [s for s in getattr(tokenizer, "special_tokens", None) or [] if len(s) > 1]


def _typed_special_pieces(texts, specials):
    """Splits texts where they spell a special token (RoBERTa's "</s>", an
    HTML strike-through tag; GPT-2's "<|endoftext|>"): each occurrence is
    cut in two halves, to be tokenized as plain text, never as the special
    token itself (which would put a separator inside a text). Returns the
    pieces, the index of the text each came from, and where in that text it
    starts (for the character offsets of question answering).
    """
    if not specials or not any(s in text for text in texts for s in specials):
        return list(texts), list(range(len(texts))), [0] * len(texts)
    pattern = re.compile("(" + "|".join(re.escape(s) for s in specials) + ")")
    pieces, owners, shifts = [], [], []
    for i, text in enumerate(texts):
        at = 0
        for part in pattern.split(text):
            for half in [part[:-1], part[-1:]] if part in specials else [part]:
                if half:
                    pieces.append(half)
                    owners.append(i)
                    shifts.append(at)
                at += len(half)
    return pieces, owners, shifts


def _ids_without_typed_specials(tokenizer, texts):
    """Token ids where special tokens typed in the text stay plain text.

    KerasHub's byte-pair tokenizers map the string "<|endoftext|>" inside a
    text to the special token itself, so user text could inject control
    tokens. Each occurrence is tokenized in two halves instead, which
    byte-level BPE spells with ordinary tokens.
    """
    specials = _typed_specials(tokenizer)
    if not specials or not any(s in text for text in texts for s in specials):
        return [np.asarray(ids, dtype="int32") for ids in tokenizer(texts)]
    pieces, owners, _ = _typed_special_pieces(texts, specials)
    ids = [[] for _ in texts]
    for owner, piece_ids in zip(owners, tokenizer(pieces) if pieces else []):
        ids[owner].extend(np.asarray(piece_ids).tolist())
    return [np.asarray(row, dtype="int32") for row in ids]


@keras.saving.register_keras_serializable(package="keras_transfer")
class TextPreprocessor(keras_hub.models.Preprocessor):
    """Tokenizes and packs raw text for a KerasHub backbone.

    Args:
        tokenizer: a KerasHub tokenizer of the backbone's family.
        backbone_class: name of the KerasHub backbone class whose packing to
            use, for example `"BertBackbone"`.
        sequence_length: the longest packed sequence, special tokens
            included. Batches are padded to their longest member, never
            beyond this. Defaults to `512`.
        truncation: `"head"`, `"tail"` or `"head+tail"`: which part of a
            text longer than `sequence_length` to keep. `"head+tail"` keeps
            a quarter of the text's budget from the beginning (at least one
            token once the budget is 2) and the rest from the end. Defaults
            to `"head"`.

    The tokenizer must have the special tokens the family packs with (a
    `ValueError` says which are missing), and `sequence_length` must hold
    them: a RoBERTa-style pair `<s> a </s></s> b </s>` needs at least 4.

    Example:
    ```python
    backbone, preprocessor = kt.load_backbone("bert_base_en_uncased")
    batch = preprocessor(["A moving film.", "Dull."])
    batch["token_ids"].shape  # (2, 6): padded to the longest text
    ```
    """

    @classmethod
    def from_preset(cls, preset, **kwargs):
        """Refused with the way to get one: KerasHub's `from_preset` looks
        for a preprocessor class registered for the preset's backbone, and
        none is (this one serves every family), so it fails with "Unable to
        find a subclass of TextPreprocessor" after reading the preset."""
        raise ValueError(
            "kt.TextPreprocessor has no `from_preset`. Load it with its backbone: "
            f"`backbone, preprocessor = kt.load_backbone({preset!r}, sequence_length=128)` "
            "(a task's `from_preset` attaches it as `model.preprocessor`), or build it from "
            "a tokenizer: `kt.TextPreprocessor(tokenizer, backbone_class=\"BertBackbone\")`."
        )

    def __init__(
        self,
        tokenizer,
        backbone_class,
        sequence_length=512,
        truncation="head",
        **kwargs,
    ):
        super().__init__(**kwargs)
        family_of(backbone_class)  # raises an error listing the families
        if isinstance(sequence_length, np.integer):
            sequence_length = int(sequence_length)
        if isinstance(sequence_length, bool) or not isinstance(sequence_length, int) or sequence_length < 3:
            raise ValueError(
                "Expected `sequence_length` to be an integer of at least 3. "
                f"Received: sequence_length={sequence_length!r}"
            )
        _check_truncation(truncation)
        # Checked again before packing until the vocabulary has arrived.
        self._tokenizer_checked = _check_tokenizer(tokenizer, backbone_class)
        self.tokenizer = tokenizer
        self.backbone_class = backbone_class
        self.sequence_length = sequence_length
        self.truncation = truncation
        self._fast = None

    @property
    def family(self):
        return FAMILIES[self.backbone_class]

    @property
    def pad_id(self):
        """The id at padding positions (hidden by the padding mask)."""
        attribute = self.family.pad
        pad_id = getattr(self.tokenizer, attribute, None) if attribute else None
        return 0 if pad_id is None else int(pad_id)

    # Tokenizing ---------------------------------------------------------

    def _fast_wordpiece(self):
        """An HF `tokenizers` twin of a KerasHub WordPiece tokenizer."""
        if self._fast is None:
            import tokenizers
            from tokenizers import models, normalizers, pre_tokenizers

            tok = self.tokenizer
            vocab = {token: i for i, token in enumerate(tok.get_vocabulary())}
            fast = tokenizers.Tokenizer(
                models.WordPiece(
                    vocab,
                    unk_token=tok.oov_token,
                    continuing_subword_prefix=tok.suffix_indicator,
                )
            )
            fast.normalizer = normalizers.BertNormalizer(
                clean_text=True,
                handle_chinese_chars=True,
                strip_accents=tok.strip_accents,
                lowercase=tok.lowercase,
            )
            fast.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
            self._fast = fast
        return self._fast

    def token_ids(self, texts):
        """Tokenizes strings into lists of ids, without special tokens."""
        if not texts:
            return []
        texts = [_valid_unicode(text) for text in texts]
        if isinstance(self.tokenizer, keras_hub.tokenizers.WordPieceTokenizer):
            encodings = self._fast_wordpiece().encode_batch(
                texts, add_special_tokens=False
            )
            return [np.asarray(e.ids, dtype="int32") for e in encodings]
        return _ids_without_typed_specials(self.tokenizer, texts)

    def _special(self, attribute):
        """`[id]` of a special token, or `[]` where the tokenizer has none."""
        token_id = getattr(self.tokenizer, attribute, None) if attribute else None
        return [] if token_id is None else [int(token_id)]

    def _specials(self, pairs):
        """`(start, middle, sep, end)` id lists of the single or pair packing."""
        family = self.family
        middle = self._special(family.sep) * family.pair_sep_repeat if pairs else []
        return (
            self._special(family.start),
            middle,
            self._special(family.sep),
            self._special(family.end),
        )

    def min_sequence_length(self, pairs=False):
        """How many special tokens pack a text (or a text pair): the
        smallest `sequence_length` that can hold one."""
        return sum(len(ids) for ids in self._specials(pairs))

    def _check_room(self, pairs):
        """Raises if `sequence_length` cannot hold the packing's special tokens."""
        need = self.min_sequence_length(pairs)
        if self.sequence_length >= need:
            return
        start, middle, sep, end = self._specials(pairs)
        token = self.tokenizer.id_to_token
        words = [token(i) for i in start] + ["a"] + [token(i) for i in middle]
        words += (["b"] if pairs else []) + [token(i) for i in sep + end]
        kind, room = ("text pair", "some of each text") if pairs else ("text", "any of it")
        raise ValueError(
            f"sequence_length={self.sequence_length} cannot hold a {kind} for "
            f"the {self.family.name} family: its packing `{' '.join(words)}` "
            f"has {need} special tokens. Give a sequence_length of at least "
            f"{need} ({need + (2 if pairs else 1)} or more to keep {room}), "
            "for example `from_preset(preset, sequence_length=128)`."
        )

    def tokenize(self, texts):
        """Packs each text (or text pair) into an unpadded id array.

        Returns a list with one `(token_ids, segment_ids)` pair of int32
        arrays per example.
        """
        texts = check_texts(texts)
        if not texts:
            raise ValueError(
                "Received an empty list of texts: there is nothing to "
                "tokenize. Give at least one string."
            )
        if not self._tokenizer_checked:
            self._tokenizer_checked = _check_tokenizer(self.tokenizer, self.backbone_class)
        pairs = any(isinstance(t, (tuple, list)) for t in texts)
        if pairs and not all(isinstance(t, (tuple, list)) for t in texts):
            raise ValueError(
                "Mixed single texts and text pairs in one batch. Give every "
                "example as a string, or every example as (text_a, text_b)."
            )
        self._check_room(pairs)
        # `end`: a token after the last separator (XLNet's `<cls>`), in its
        # own segment; `middle`: the separators between the texts of a pair.
        start, middle, sep, end = self._specials(pairs)
        end_segments = np.full(len(end), self.family.end_segment_id, "int32")
        # What the texts may fill (not below 0: `_check_room` passed).
        budget = self.sequence_length - sum(len(ids) for ids in (start, middle, sep, end))
        if not pairs:
            packed = []
            for ids in self.token_ids(texts):
                ids = truncate(ids, budget, self.truncation)
                tokens = np.concatenate([start, ids, sep, end]).astype("int32")
                segments = np.zeros(len(tokens) - len(end), "int32")
                packed.append((tokens, np.concatenate([segments, end_segments])))
            return packed
        first = self.token_ids([a for a, _ in texts])
        second = self.token_ids([b for _, b in texts])
        packed = []
        for a, b in zip(first, second):
            # Longest first: trim the longer text until both fit; an odd
            # budget's extra token goes to the first text, as KerasHub's
            # round-robin packer and HF's `longest_first` give it.
            keep_a = min(len(a), max((budget + 1) // 2, budget - len(b)))
            keep_b = min(len(b), budget - keep_a)
            a = truncate(a, keep_a, self.truncation)
            b = truncate(b, keep_b, self.truncation)
            seg_a = np.zeros(len(start) + len(a) + len(middle), "int32")
            seg_b = np.ones(len(b) + len(sep), "int32")
            tokens = np.concatenate([start, a, middle, b, sep, end]).astype("int32")
            packed.append((tokens, np.concatenate([seg_a, seg_b, end_segments])))
        return packed

    def collate(self, packed):
        """Pads packed examples to the batch's longest one.

        Returns the dictionary the backbone reads: `token_ids`,
        `padding_mask` and, for families that take them, `segment_ids`.
        Padding goes after the text, or before it for families whose
        `padding_side` is `"left"`.
        """
        length = max(len(tokens) for tokens, _ in packed)
        token_ids = np.full((len(packed), length), self.pad_id, dtype="int32")
        segment_ids = np.zeros((len(packed), length), dtype="int32")
        padding_mask = np.zeros((len(packed), length), dtype="bool")
        left = self.family.padding_side == "left"
        for row, (tokens, segments) in enumerate(packed):
            span = slice(length - len(tokens), length) if left else slice(0, len(tokens))
            token_ids[row, span] = tokens
            segment_ids[row, span] = segments
            padding_mask[row, span] = True
        batch = {"token_ids": token_ids, "padding_mask": padding_mask}
        if self.family.segment_ids:
            batch["segment_ids"] = segment_ids
        return batch

    def call(self, x):
        return self.collate(self.tokenize(x))

    def __call__(self, x, *args, **kwargs):
        # Pure NumPy work: skip Keras' layer machinery (tensor conversion and
        # autocasting would only slow it down).
        return self.call(x)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "tokenizer": keras.layers.serialize(self.tokenizer),
                "backbone_class": self.backbone_class,
                "sequence_length": self.sequence_length,
                "truncation": self.truncation,
            }
        )
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        if isinstance(config["tokenizer"], dict):
            config["tokenizer"] = keras.layers.deserialize(config["tokenizer"])
        return cls(**config)
