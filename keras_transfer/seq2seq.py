"""Packing and batching (source, target) text pairs for generation tasks.

Two routes lead from a pretrained model to translation (or any other
text-to-text task):

- an encoder-decoder backbone (KerasHub's BART and T5): the source goes to
  the encoder, the target is the decoder's input shifted by one;
- a decoder-only backbone (GPT-2 and the other causal families): the source
  is written into a prompt, the target follows it, and the loss counts only
  the target's tokens.

`Seq2SeqPreprocessor` knows both packings. Like `kt.TextPreprocessor` it is
pure NumPy in two stages, `pack` (once per example) and `collate` (per
batch, padded to the batch's longest member), so `Seq2SeqBatches` can
bucket examples by length. KerasHub's own seq2seq preprocessors need
TensorFlow or Grain; these do not.
"""

import dataclasses
import numbers

import keras
import keras_hub
import numpy as np

from keras_transfer.batching import plan_batches
from keras_transfer.preprocessing import _ids_without_typed_specials, _valid_unicode, check_texts
from keras_transfer.wording import counted


@dataclasses.dataclass(frozen=True)
class Seq2SeqFamily:
    """How one KerasHub encoder-decoder family packs its two sequences.

    Args:
        name: the family's short name, as KerasHub presets spell it.
        backbone_class: name of the KerasHub backbone class.
        generator: name of the KerasHub `Seq2SeqLM` whose `generate` decodes.
        encoder_start: tokenizer attribute of the token opening the source,
            or None.
        decoder_start: tokenizer attributes of the tokens the decoder starts
            from, in order.
    """

    name: str
    backbone_class: str
    generator: str
    encoder_start: str | None
    decoder_start: tuple


ENCODER_DECODERS = {
    family.backbone_class: family
    for family in [
        # BART: `<s> source </s>`; the decoder reads `</s> <s> target`.
        Seq2SeqFamily("bart", "BartBackbone", "BartSeq2SeqLM", "start_token_id",
                      ("end_token_id", "start_token_id")),
        # T5: `source </s>`; the decoder reads `<pad> target`.
        Seq2SeqFamily("t5", "T5Backbone", "T5Seq2SeqLM", None, ("pad_token_id",)),
    ]
}

DEFAULT_PROMPT = "Translate: {source}\nTranslation:"
#: Default `source_length` and `target_length`, special tokens included
#: (`Translator.from_preset` takes fewer where the backbone has fewer
#: positions).
DEFAULT_LENGTH = 64


def causal_lm_class(backbone_class):
    """The KerasHub `CausalLM` class for a decoder backbone class, or None."""
    name = backbone_class_name(backbone_class).replace("Backbone", "CausalLM")
    return getattr(keras_hub.models, name, None)


def _check_length(name, value):
    """`value` as an int; raises unless it is an integer of at least 4."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 4:
        raise ValueError(
            f"Expected `{name}` to be an integer of at least 4. Received: {name}={value!r}"
        )
    return int(value)


def backbone_class_name(backbone_class):
    """The class name of a backbone given by name, by class or as an instance."""
    if isinstance(backbone_class, str):
        return backbone_class
    if isinstance(backbone_class, type) and issubclass(backbone_class, keras_hub.models.Backbone):
        return backbone_class.__name__
    if isinstance(backbone_class, keras_hub.models.Backbone):
        return type(backbone_class).__name__
    raise ValueError(
        "Expected `backbone_class` to be the name of a KerasHub backbone class, for "
        f"example 'BartBackbone' or 'GPT2Backbone'. Received: backbone_class={backbone_class!r}"
    )


@keras.saving.register_keras_serializable(package="keras_transfer")
class Seq2SeqPreprocessor(keras_hub.models.Preprocessor):
    """Tokenizes and packs (source, target) pairs for a generation task.

    Args:
        tokenizer: the KerasHub tokenizer of the backbone.
        backbone_class: name of the KerasHub backbone class, for example
            `"BartBackbone"` or `"GPT2Backbone"` (the class itself, or a
            backbone, stands for its name).
        source_length: the longest packed source (encoder-decoder) or
            prompt (decoder-only), special tokens included. Defaults to `64`.
        target_length: the longest target, special tokens included; also
            the most tokens `generate` writes. Defaults to `64`.
        prompt: decoder-only models only: the template the source is
            written into, with a `{source}` field. Defaults to
            `"Translate: {source}\\nTranslation:"`.

    Example:
    ```python
    pre = kt.Seq2SeqPreprocessor(tokenizer, "BartBackbone")
    x, y, weights = pre.collate(pre.pack(["A dog."], ["Ein Hund."]))
    ```
    """

    @classmethod
    def from_preset(cls, preset, **kwargs):
        """Refused with the way to get one (KerasHub's `from_preset` finds
        no preprocessor class registered for the backbone and says only
        "Unable to find a subclass of Seq2SeqPreprocessor")."""
        raise ValueError(
            "kt.Seq2SeqPreprocessor has no `from_preset`. `kt.Translator.from_preset("
            f"{preset!r})` builds one and attaches it as `model.preprocessor`; or build it "
            "from a tokenizer: `kt.Seq2SeqPreprocessor(tokenizer, \"BartBackbone\")`."
        )

    def __init__(
        self,
        tokenizer,
        backbone_class,
        source_length=DEFAULT_LENGTH,
        target_length=DEFAULT_LENGTH,
        prompt=DEFAULT_PROMPT,
        **kwargs,
    ):
        super().__init__(**kwargs)
        source_length = _check_length("source_length", source_length)
        target_length = _check_length("target_length", target_length)
        backbone_class = backbone_class_name(backbone_class)
        self.family = ENCODER_DECODERS.get(backbone_class)
        if self.family is None and causal_lm_class(backbone_class) is None:
            supported = sorted(ENCODER_DECODERS) + ["any decoder with a KerasHub CausalLM (GPT2Backbone, …)"]
            raise ValueError(
                f"keras_transfer cannot generate text with {backbone_class}. "
                f"Supported: {', '.join(supported)}."
            )
        if self.decoder_only and (not isinstance(prompt, str) or "{source}" not in prompt):
            raise ValueError(
                "Expected `prompt` to be a string with a `{source}` field, for "
                f"example 'Translate to German: {{source}}\\nGerman:'. Received: prompt={prompt!r}"
            )
        self.tokenizer = tokenizer
        self.backbone_class = backbone_class
        self.source_length = source_length
        self.target_length = target_length
        self.prompt = prompt
        self._prompt_checked = False
        if self.decoder_only:
            self._check_prompt_fits()

    def _check_prompt_fits(self):
        """Raises unless the prompt's template leaves room for the source.

        A tokenizer being loaded from a saved model gets its vocabulary
        after this preprocessor is built: then the check waits for the
        first text packed.
        """
        if self._prompt_checked:
            return
        try:
            self.tokenizer.vocabulary_size()
        except ValueError:  # "No vocabulary has been set" (KerasHub)
            return
        self._prompt_checked = True
        template = [part for part in self.prompt.split("{source}", 1) if part]
        fixed = 1 + (sum(len(ids) for ids in self._ids(template)) if template else 0)
        if fixed >= self.source_length:
            raise ValueError(
                f"The prompt {self.prompt!r} takes {fixed} tokens (its template "
                "and the start token), which leaves no room for the source in "
                f"source_length={self.source_length}. Pass a larger source_length "
                "or a shorter prompt."
            )

    @property
    def decoder_only(self):
        return self.family is None

    def _ids(self, texts):
        # As `kt.TextPreprocessor` reads text: lone surrogates become U+FFFD,
        # special tokens typed in the text ("</s>") stay text.
        return _ids_without_typed_specials(self.tokenizer, [_valid_unicode(text) for text in texts])

    def _token(self, attribute):
        return int(getattr(self.tokenizer, attribute))

    @property
    def end_token_id(self):
        return self._token("end_token_id")

    @property
    def pad_token_id(self):
        return int(getattr(self.tokenizer, "pad_token_id", 0) or 0)

    # Packing ----------------------------------------------------------------

    def pack_sources(self, sources):
        """The packed source (or prompt) of each text, unpadded."""
        if self.decoder_only:
            self._check_prompt_fits()
        sources = check_texts(sources, "sources")
        if any(isinstance(s, (tuple, list)) for s in sources):
            raise ValueError("Expected every source to be one string, not a pair of texts.")
        if self.decoder_only:
            # The prompt opens with the start token and keeps its template
            # end (for example "\nTranslation:") even when the source is cut.
            start = [self._token("start_token_id")]
            head, tail = self.prompt.split("{source}", 1)
            packed = []
            for text in sources:
                ids = self._ids([head + text])[0]
                tail_ids = self._ids([tail])[0] if tail else np.zeros(0, "int32")
                budget = self.source_length - 1 - len(tail_ids)
                packed.append(np.concatenate([start, ids[: max(budget, 1)], tail_ids]).astype("int32"))
            return packed
        start = [] if self.family.encoder_start is None else [self._token(self.family.encoder_start)]
        budget = self.source_length - len(start) - 1
        return [
            np.concatenate([start, ids[:budget], [self.end_token_id]]).astype("int32")
            for ids in self._ids(sources)
        ]

    def decoder_prompt(self):
        """The token ids the decoder starts from (encoder-decoder models)."""
        return [self._token(attribute) for attribute in self.family.decoder_start]

    def pack(self, sources, targets):
        """Packs pairs: one `(source_ids, target_ids)` per example.

        `target_ids` holds the target tokens and the end token; the decoder's
        input is built from it at `collate` time.
        """
        targets = check_texts(targets, "targets")
        if len(sources) != len(targets):
            raise ValueError(
                f"Got {counted(len(sources), 'source')} but "
                f"{counted(len(targets), 'target')}. Give "
                "one target text per source text."
            )
        packed_sources = self.pack_sources(sources)
        budget = self.target_length - 1
        if not self.decoder_only:
            budget -= len(self.family.decoder_start) - 1
        # A decoder-only target continues the prompt: a leading space keeps
        # byte-level BPE from gluing its first word to the prompt's last.
        texts = [" " + t if self.decoder_only else t for t in targets]
        packed_targets = [
            np.concatenate([ids[:budget], [self.end_token_id]]).astype("int32")
            for ids in self._ids(texts)
        ]
        return list(zip(packed_sources, packed_targets))

    def length(self, example):
        source, target = example
        return len(source) + len(target)

    # Batching -----------------------------------------------------------------

    def _pad(self, rows, side="right"):
        length = max(len(r) for r in rows)
        ids = np.full((len(rows), length), self.pad_token_id, dtype="int32")
        mask = np.zeros((len(rows), length), dtype="bool")
        for i, row in enumerate(rows):
            if side == "right":
                ids[i, : len(row)], mask[i, : len(row)] = row, True
            else:
                ids[i, length - len(row) :], mask[i, length - len(row) :] = row, True
        return ids, mask

    def collate(self, examples):
        """Pads a batch of packed pairs: `(x, y, sample_weight)`.

        `y` is the next token at every decoder position; `sample_weight`
        is 1 on the target's tokens (the end token included) and 0 on the
        prompt and the padding.
        """
        if self.decoder_only:
            rows = [np.concatenate([s, t]) for s, t in examples]
            ids, mask = self._pad(rows)
            x = {"token_ids": ids[:, :-1], "padding_mask": mask[:, :-1]}
            y = ids[:, 1:]
            weight = np.zeros_like(y, dtype="float32")
            for i, (s, t) in enumerate(examples):
                weight[i, len(s) - 1 : len(s) - 1 + len(t)] = 1.0
            return x, y, weight
        encoder_ids, encoder_mask = self._pad([s for s, _ in examples])
        start = self.decoder_prompt()
        decoder_ids, decoder_mask = self._pad([np.concatenate([start, t]) for _, t in examples])
        x = {
            "encoder_token_ids": encoder_ids,
            "encoder_padding_mask": encoder_mask,
            "decoder_token_ids": decoder_ids[:, :-1],
            "decoder_padding_mask": decoder_mask[:, :-1],
        }
        y = decoder_ids[:, 1:]
        weight = decoder_mask[:, 1:].astype("float32")
        if len(start) > 1:  # the fixed start tokens are not predictions
            weight[:, : len(start) - 1] = 0.0
        return x, y, weight

    def generation_inputs(self, sources):
        """The `generate` inputs for a batch of sources, and prompt lengths.

        Decoder-only prompts are left-aligned and padded to
        `source_length + target_length`; KerasHub's `generate` writes into
        the padding of each row.
        """
        packed = self.pack_sources(sources)
        # The positions to fill must not hold the stop token: KerasHub's
        # samplers stop a row once one of its unfilled positions holds it.
        fill = self.pad_token_id if self.pad_token_id != self.end_token_id else self.end_token_id + 1
        if self.decoder_only:
            length = max(len(p) for p in packed) + self.target_length
            ids = np.full((len(packed), length), fill, dtype="int32")
            mask = np.zeros((len(packed), length), dtype="bool")
            for i, p in enumerate(packed):
                ids[i, : len(p)], mask[i, : len(p)] = p, True
            return {"token_ids": ids, "padding_mask": mask}, [len(p) for p in packed]
        encoder_ids, encoder_mask = self._pad(packed)
        start = self.decoder_prompt()
        decoder_ids = np.full((len(packed), self.target_length), fill, dtype="int32")
        decoder_ids[:, : len(start)] = start
        decoder_mask = np.zeros_like(decoder_ids, dtype="bool")
        decoder_mask[:, : len(start)] = True
        inputs = {
            "encoder_token_ids": encoder_ids,
            "encoder_padding_mask": encoder_mask,
            "decoder_token_ids": decoder_ids,
            "decoder_padding_mask": decoder_mask,
        }
        return inputs, [len(start)] * len(packed)

    def decode(self, token_ids, prompt_lengths):
        """Turns generated ids back into text: after the prompt, before the end."""
        # Special tokens are not text (as `skip_special_tokens` in HF).
        special = {self.end_token_id, self.pad_token_id}
        start_id = getattr(self.tokenizer, "start_token_id", None)
        if start_id is not None:
            special.add(int(start_id))
        texts = []
        for row, start in zip(np.asarray(token_ids), prompt_lengths):
            ids = row[start:].tolist()
            if self.end_token_id in ids:
                ids = ids[: ids.index(self.end_token_id)]
            ids = [i for i in ids if i not in special]
            texts.append(self.tokenizer.detokenize([ids])[0] if ids else "")
        return [t if isinstance(t, str) else t.decode("utf-8", "replace") for t in texts]

    def call(self, x):
        sources, targets = x
        return self.collate(self.pack(sources, targets))

    def __call__(self, x, *args, **kwargs):
        return self.call(x)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "tokenizer": keras.layers.serialize(self.tokenizer),
                "backbone_class": self.backbone_class,
                "source_length": self.source_length,
                "target_length": self.target_length,
                "prompt": self.prompt,
            }
        )
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        if isinstance(config["tokenizer"], dict):
            config["tokenizer"] = keras.layers.deserialize(config["tokenizer"])
        return cls(**config)


class Seq2SeqBatches(keras.utils.PyDataset):
    """A `PyDataset` of padded (source, target) batches, bucketed by length.

    Args:
        preprocessor: a `kt.Seq2SeqPreprocessor`.
        sources: the source texts.
        targets: the target texts, one per source.
        batch_size: examples per batch. Defaults to `32`.
        shuffle: reshuffle the batches every epoch. Defaults to `False`.
        seed: seed of the shuffling; epoch `e`'s order is a pure function of
            `(seed, e)`. Defaults to `None` (drawn from NumPy's generator).
    """

    def __init__(self, preprocessor, sources, targets, batch_size=32, shuffle=False, seed=None, **kwargs):
        super().__init__(**kwargs)
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(
                f"Expected `batch_size` to be a positive integer. Received: batch_size={batch_size!r}"
            )
        if len(sources) == 0:
            raise ValueError("The dataset is empty: there are no (source, target) pairs to batch.")
        self.preprocessor = preprocessor
        self.packed = preprocessor.pack(sources, targets)
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = int(np.random.randint(0, 2**31 - 1) if seed is None else seed)
        self.epoch = 0
        self.lengths = np.array([preprocessor.length(e) for e in self.packed])
        self._batches = self._plan()

    def _plan(self):
        rng = np.random.default_rng([self.seed, self.epoch])
        return plan_batches(self.lengths, self.batch_size, rng, self.shuffle)

    def __len__(self):
        return len(self._batches)

    def __getitem__(self, index):
        return self.preprocessor.collate([self.packed[i] for i in self._batches[index]])

    def set_epoch(self, epoch):
        """Sets the epoch whose batch order `__getitem__` serves."""
        self.epoch = int(epoch)
        if self.shuffle:
            self._batches = self._plan()

    def on_epoch_end(self):
        self.set_epoch(self.epoch + 1)
