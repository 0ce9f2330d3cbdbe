"""Translation, and any other text-to-text task, over a pretrained backbone."""

import numbers
import os
import pathlib

import keras
import keras_hub
import numpy as np

from keras_transfer import distributed, freezing
from keras_transfer.callbacks.numerics import StopOnNaN
from keras_transfer.metrics import TokenAccuracy
from keras_transfer.precision import resolve_dtype
from keras_transfer.seq2seq import (
    DEFAULT_LENGTH,
    DEFAULT_PROMPT,
    ENCODER_DECODERS,
    Seq2SeqBatches,
    Seq2SeqPreprocessor,
    _check_length,
    causal_lm_class,
)
from keras_transfer.tasks.base import (
    DEFAULT_BATCH_SIZE,
    Task,
    ValidationEpochs,
    _check_accumulation,
    _EpochOrder,
    _epochs_to_run,
    _is_raw_text,
    check_fit_arguments,
    check_flag,
    check_data_given,
    check_epochs,
    callback_list,
    check_rate_callbacks,
)

FREEZE_OPTIONS = (False, "encoder")


def _generator_class(backbone):
    name = type(backbone).__name__
    family = ENCODER_DECODERS.get(name)
    if family is not None:
        return getattr(keras_hub.models, family.generator)
    cls = causal_lm_class(name)
    if cls is None:
        supported = ", ".join(sorted(ENCODER_DECODERS))
        raise ValueError(
            f"keras_transfer cannot generate text with {name}. Use an "
            f"encoder-decoder backbone ({supported}) or a decoder with a "
            "KerasHub CausalLM (GPT2Backbone, LlamaBackbone, …)."
        )
    return cls


def _is_source_text(x):
    """Whether `x` is text for a translator: strings, or a `ParallelData`."""
    return isinstance(x, str) or _is_raw_text(x) or (hasattr(x, "sources") and hasattr(x, "targets"))


def _check_preprocessor(backbone, preprocessor):
    """Raises unless `preprocessor` packs for `backbone` within its positions."""
    if not isinstance(preprocessor, Seq2SeqPreprocessor):
        raise ValueError(
            "Expected `preprocessor` to be a kt.Seq2SeqPreprocessor. "
            f"Received: {type(preprocessor).__name__}."
        )
    name = type(backbone).__name__
    if preprocessor.family != ENCODER_DECODERS.get(name):
        raise ValueError(
            f"The preprocessor packs for {preprocessor.backbone_class}, but the backbone "
            f"is {'an' if name[:1] in 'AEIOU' or name.startswith('XL') else 'a'} {name}. "
            f"Build it with kt.Seq2SeqPreprocessor(tokenizer, {name!r}, ...)."
        )
    limit = getattr(backbone, "max_sequence_length", None)
    if limit is None:  # relative positions (T5): any length
        return
    source, target = preprocessor.source_length, preprocessor.target_length
    if preprocessor.decoder_only:
        # The prompt and the target are one sequence: `generate` pads each
        # prompt to len(prompt) + target_length positions.
        if source + target > limit:
            keep = target if target <= limit - 4 else limit // 2
            raise ValueError(
                f"source_length={source} + target_length={target} = {source + target} "
                f"positions, but {name} has max_sequence_length={limit}: a decoder-only "
                "model reads the prompt and the target as one sequence. Pass lengths "
                f"that add up to at most {limit}, for example source_length={limit - keep}, "
                f"target_length={keep}."
            )
        return
    for what, value in (("source_length", source), ("target_length", target)):
        if value > limit:
            raise ValueError(
                f"{what}={value} is more than the {limit} positions of {name} "
                f"(max_sequence_length={limit}). Pass {what}={limit} or less."
            )


def _default_lengths(backbone, source_length, target_length):
    """`from_preset`'s lengths: those given, and defaults that fit the others.

    A length left out is `DEFAULT_LENGTH`, or less where the backbone has
    fewer positions; a decoder-only backbone shares its positions between
    the prompt and the target, so the defaults split them.
    """
    given = {"source_length": source_length, "target_length": target_length}
    limit = getattr(backbone, "max_sequence_length", None)
    if limit is None:
        return tuple(DEFAULT_LENGTH if v is None else v for v in given.values())
    if type(backbone).__name__ in ENCODER_DECODERS:
        return tuple(min(DEFAULT_LENGTH, limit) if v is None else v for v in given.values())
    source, target = given["source_length"], given["target_length"]
    if source is None and target is None:
        source = min(DEFAULT_LENGTH, limit // 2)
    for name, value, other in (("source_length", source, target), ("target_length", target, source)):
        if value is None and other is not None and limit - other < 4:
            other_name = "target_length" if name == "source_length" else "source_length"
            raise ValueError(
                f"{other_name}={other} leaves {limit - other} of the {limit} positions of "
                f"{type(backbone).__name__} for {name}, which needs at least 4 (a "
                f"decoder-only model reads the prompt and the target as one sequence). "
                f"Pass a smaller {other_name}."
            )
    if target is None:
        target = min(DEFAULT_LENGTH, limit - source)
    if source is None:
        source = min(DEFAULT_LENGTH, limit - target)
    return source, target


def _freeze_encoder(backbone):
    """Freezes the encoder half of an encoder-decoder backbone.

    The token embedding is shared by encoder and decoder in BART and T5, so
    it keeps training with the decoder.
    """
    if type(backbone).__name__ not in ENCODER_DECODERS:
        raise ValueError(
            f"freeze='encoder' needs an encoder-decoder backbone; "
            f"{type(backbone).__name__} has no encoder. Use freeze=False."
        )
    frozen = [
        layer
        for layer in backbone.layers
        if "encoder" in layer.name and "decoder" not in layer.name and layer.weights
    ]
    for layer in frozen:
        freezing._set_frozen(layer, True)


def _load(preset, load_weights, dtype):
    """A backbone and tokenizer from a preset name or directory."""
    from keras_transfer.backbones import (
        _check_directory,
        _download_error,
        _looks_like_path,
        check_load_weights,
        no_preset_directory,
    )

    check_load_weights(load_weights)
    if isinstance(preset, pathlib.PurePath):
        preset = str(preset)
    if not isinstance(preset, str) or not preset:
        raise ValueError(
            f"Expected `preset` to be a preset name or directory. Received: preset={preset!r}"
        )
    path = pathlib.Path(os.path.expanduser(preset))
    local = path.is_dir()
    if local:
        _check_directory(path)
        preset = str(path)
    elif _looks_like_path(preset) or path.exists():
        raise no_preset_directory(preset, path, "Check the path.")
    elif "://" not in preset and preset not in keras_hub.models.Backbone.presets:
        import difflib

        names = [
            name
            for name, info in keras_hub.models.Backbone.presets.items()
            if info.get("metadata", {}).get("path") in ("bart", "t5", "gpt2")
        ]
        close = difflib.get_close_matches(preset, names, n=3, cutoff=0.6)
        hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
        raise ValueError(f"Unknown preset {preset!r}.{hint} Generation presets include {sorted(names)[:6]}.")
    kwargs = {"load_weights": load_weights}
    dtype = resolve_dtype(dtype)
    if dtype is not None:
        kwargs["dtype"] = dtype
    try:
        backbone = keras_hub.models.Backbone.from_preset(preset, **kwargs)
        tokenizer = keras_hub.tokenizers.Tokenizer.from_preset(preset)
    except OSError as error:
        if local:
            raise
        raise _download_error(preset, error) from None
    freezing.restore_frozen_state(backbone)
    return backbone, tokenizer


@keras.saving.register_keras_serializable(package="keras_transfer")
class Translator(Task):
    """Text-to-text generation (translation, summarisation, …) by fine-tuning.

    Two routes, chosen by the backbone:

    - encoder-decoder (BART, T5): the source is encoded, the target decoded;
      `freeze="encoder"` trains only the decoder (and the shared token
      embedding);
    - decoder-only (GPT-2 and other KerasHub causal LMs): the source is
      written into `prompt`, the target follows it, and the loss counts only
      the target's tokens.

    The model's outputs are next-token logits; `fit` and `evaluate` take
    `(sources, targets)` as raw strings, `translate` decodes raw strings with
    KerasHub's samplers, and `evaluate_bleu` scores them with sacreBLEU.

    Args:
        backbone: a KerasHub `BartBackbone`, `T5Backbone` or decoder backbone.
        preprocessor: a `kt.Seq2SeqPreprocessor` for that backbone.
        compile: compile with the task defaults right away. Defaults to
            `True`.

    Example:
    ```python
    model = kt.Translator.from_preset("bart_base_en", target_length=48)
    model.fit(["A dog runs."], ["Ein Hund rennt."], epochs=3)
    model.translate(["A dog sleeps."], sampler="beam")
    ```
    """

    def __init__(self, backbone, preprocessor=None, compile=True, **kwargs):
        check_flag("compile", compile)
        generator_class = _generator_class(backbone)
        if preprocessor is not None:
            _check_preprocessor(backbone, preprocessor)
        # === Functional graph: KerasHub's own LM head over the backbone ===
        lm = generator_class(backbone=backbone, preprocessor=None)
        super().__init__(
            inputs=lm.inputs,
            outputs=lm.outputs,
            backbone=backbone,
            preprocessor=preprocessor,
            **kwargs,
        )
        object.__setattr__(self, "_generator_class", generator_class)
        object.__setattr__(self, "_generators", {})
        if compile:
            self.compile()

    @property
    def preprocessor(self):
        """The `kt.Seq2SeqPreprocessor` that packs raw text for the backbone."""
        return Task.preprocessor.fget(self)

    @preprocessor.setter
    def preprocessor(self, value):
        if value is not None and self.backbone is not None:
            _check_preprocessor(self.backbone, value)
        Task.preprocessor.fset(self, value)

    @classmethod
    def from_preset(
        cls,
        preset,
        freeze=False,
        source_length=None,
        target_length=None,
        prompt=DEFAULT_PROMPT,
        load_weights=True,
        dtype=None,
        compile=True,
    ):
        """Builds a translator over a pretrained backbone.

        Args:
            preset: a KerasHub preset name (`"bart_base_en"`, `"t5_small_multi"`,
                `"gpt2_base_en"`) or a local KerasHub preset directory.
            freeze: `False` trains everything; `"encoder"` freezes the encoder
                of an encoder-decoder model. Defaults to `False`.
            source_length: longest packed source or prompt. Defaults to
                `None`: 64, or fewer where the backbone has fewer positions.
            target_length: longest target; also the most tokens generated.
                Defaults to `None`: 64, or fewer where the backbone has fewer
                positions. A decoder-only backbone reads the prompt and the
                target as one sequence: the two lengths must add up to at
                most its `max_sequence_length`, and the defaults share it.
            prompt: template of decoder-only models, with a `{source}` field.
                Defaults to `"Translate: {source}\\nTranslation:"`.
            load_weights: load pretrained weights. Defaults to `True`.
            dtype: dtype policy of the backbone, or `"auto"` (see
                `kt.load_backbone`). Defaults to `None`.
            compile: compile with the task defaults. Defaults to `True`.
        """
        check_flag("compile", compile)
        if freeze not in FREEZE_OPTIONS or isinstance(freeze, int) and not isinstance(freeze, bool):
            raise ValueError(
                f"Expected `freeze` to be one of {FREEZE_OPTIONS}. Received: freeze={freeze!r}. "
                "A text generator's head is the backbone's own embedding, so "
                "the backbone cannot be frozen whole."
            )
        if source_length is not None:
            source_length = _check_length("source_length", source_length)
        if target_length is not None:
            target_length = _check_length("target_length", target_length)
        backbone, tokenizer = _load(preset, load_weights, dtype)
        _generator_class(backbone)
        source_length, target_length = _default_lengths(backbone, source_length, target_length)
        preprocessor = Seq2SeqPreprocessor(
            tokenizer,
            type(backbone).__name__,
            source_length=source_length,
            target_length=target_length,
            prompt=prompt,
        )
        if freeze == "encoder":
            _freeze_encoder(backbone)
        return cls(backbone=backbone, preprocessor=preprocessor, compile=compile)

    def freeze_encoder(self):
        """Freezes the encoder (encoder-decoder models); compile again after."""
        _freeze_encoder(self.backbone)

    # Compile defaults ---------------------------------------------------------

    def compile(self, *args, weighted_metrics="auto", **kwargs):
        """As `kt.Task.compile`; the default metric is token accuracy.

        Only the target's tokens count, not the prompt or the padding: the
        default loss is the mean cross-entropy over the batch's target
        tokens, and token accuracy (`kt.metrics.TokenAccuracy`) counts
        correct target tokens over every batch, so it does not depend on
        how the texts were batched.
        """
        if isinstance(weighted_metrics, str) and weighted_metrics == "auto":
            weighted_metrics = [TokenAccuracy(name="accuracy")]
        super().compile(*args, weighted_metrics=weighted_metrics, **kwargs)
        self._compiled_with["weighted_metrics"] = weighted_metrics

    def default_loss(self):
        # The per-token weights mark the target: divide by their sum, not by
        # every position (which would scale each batch's loss, and so its
        # step, by its share of target tokens).
        return keras.losses.SparseCategoricalCrossentropy(from_logits=True, reduction="mean_with_sample_weight")

    def default_metrics(self):
        return None

    # Data -----------------------------------------------------------------

    def _pairs(self, x, y, name):
        if hasattr(x, "sources") and hasattr(x, "targets"):
            if y is not None:
                raise ValueError(f"`{name}` already holds its targets; do not pass `y` as well.")
            return list(x.sources), list(x.targets)
        if y is None:
            raise ValueError(
                f"`{name}` needs target texts: pass `y=targets` (one per "
                "source), or a kt.datasets.ParallelData."
            )
        for value, what in ((x, "sources"), (y, "targets")):
            if isinstance(value, str):
                raise ValueError(
                    f"Expected a list of {what}, got a single string. Wrap it in a list: [{value[:40]!r}]."
                )
        return list(x), list(y)

    def _as_batches(self, x, y, batch_size, shuffle, name="x", seed=None):
        """`(sources, targets)` or a `ParallelData` become `Seq2SeqBatches`.

        Anything else passes through. `kt.Task`'s helpers (`fine_tune`,
        `find_learning_rate`) read the data through this.
        """
        if _is_source_text(x):
            return self._as_seq2seq_batches(x, y, batch_size, shuffle, seed, name), None
        return x, y

    def _validation_batches(self, validation_data, batch_size):
        """`fit`'s `validation_data`: a `ParallelData` or `(sources, targets)`."""
        if validation_data is None or isinstance(validation_data, keras.utils.PyDataset):
            return validation_data
        pair = isinstance(validation_data, tuple) and len(validation_data) == 2
        sources, targets = validation_data if pair else (validation_data, None)
        return self._as_seq2seq_batches(sources, targets, batch_size, False, name="validation_data")

    def _as_seq2seq_batches(self, x, y, batch_size, shuffle, seed=None, name="x"):
        if isinstance(x, keras.utils.PyDataset):
            return x
        if self.preprocessor is None:
            raise ValueError(
                "This model has no preprocessor, so it cannot read raw text. "
                "Attach one: `model.preprocessor = kt.Seq2SeqPreprocessor(...)`."
            )
        sources, targets = self._pairs(x, y, name)
        return Seq2SeqBatches(
            self.preprocessor,
            sources,
            targets,
            batch_size=DEFAULT_BATCH_SIZE if batch_size is None else batch_size,
            shuffle=shuffle,
            seed=seed,
        )

    def fit(
        self,
        x=None,
        y=None,
        batch_size=None,
        epochs=1,
        validation_data=None,
        shuffle=True,
        seed=None,
        cache_features="auto",
        stop_on_nan=True,
        cache_memory_limit=None,
        cache_dir=None,
        **kwargs,
    ):
        """Trains on `(sources, targets)`: raw strings or a `ParallelData`.

        `validation_data` may be a `ParallelData` or a `(sources, targets)`
        tuple. `seed` fixes the batch order (epoch `e` gets the order of
        `(seed, e)`); `stop_on_nan` adds `kt.callbacks.StopOnNaN` as
        `kt.Task.fit` does, and under torchrun the same call trains
        data-parallel (`batch_size` is the global batch). Everything else is
        `keras.Model.fit`.

        A translator has no feature cache: its output layer is the
        backbone's own token embedding, so nothing runs on fixed features.
        `cache_features` (`"auto"` or `False`), `cache_memory_limit` and
        `cache_dir` are accepted, as `kt.Task.fit` takes them, and unused.
        """
        if cache_features is True:
            raise ValueError(
                "cache_features=True, but a Translator has no feature cache: its "
                "output layer is the backbone's own token embedding, so nothing "
                "runs on fixed features. Leave `cache_features` out."
            )
        check_fit_arguments(
            cache_features, stop_on_nan, cache_memory_limit, cache_dir, shuffle, kwargs.get("verbose", "auto")
        )
        check_epochs(epochs)
        check_data_given(x, "fit")
        self._check_something_trains()
        if distributed.initialize():
            seed = distributed.broadcast_seed(seed)
        self._compile_if_uncompiled(for_fit=True)
        self._check_optimizer_knows_variables()
        callbacks = callback_list(kwargs.pop("callbacks", None))
        check_rate_callbacks(self.optimizer, callbacks)
        distributed.sync_model(self)
        if stop_on_nan and not any(isinstance(c, StopOnNaN) for c in callbacks):
            callbacks.append(StopOnNaN())
        data = self._as_seq2seq_batches(x, y, batch_size, shuffle, seed)
        if isinstance(data, Seq2SeqBatches):
            distributed.check_batch_size(data.batch_size)
            callbacks.append(_EpochOrder(data))
        validation_data = self._validation_batches(validation_data, batch_size)
        steps = kwargs.get("steps_per_epoch") or len(data)
        to_run = _epochs_to_run(epochs, kwargs)
        _check_accumulation(self.optimizer, steps, to_run)
        self._size_schedule(steps * to_run)
        validated = ValidationEpochs()
        callbacks.append(validated)
        kwargs = distributed.main_process_kwargs({**kwargs, "callbacks": callbacks})
        # DataParallel's fit (not Task's): under torchrun the processes stop together.
        history = distributed.DataParallel.fit(
            self,
            distributed.shard(data),
            epochs=epochs,
            validation_data=None if validation_data is None else distributed.shard(validation_data),
            **kwargs,
        )
        return validated.note(history)

    def _check_something_trains(self):
        if not self.trainable_weights:
            raise ValueError(
                "Nothing in this Translator trains: every weight is frozen. A "
                "translator's output layer is the backbone's own token embedding, "
                "so a frozen backbone (`kt.freeze(model)`) leaves nothing to train. "
                "Unfreeze it first: `model.unfreeze()` (or `model.unfreeze(top=2)` "
                "for the top blocks only), then `model.compile(...)` again."
            )

    def fine_tune(self, x, y=None, validation_data=None, head_epochs=0, epochs=2, unfreeze="all", **kwargs):
        """Unfreezes the backbone (or its top `unfreeze` blocks) and trains (`kt.recipes.fine_tune`).

        A translator has no head of its own to train first (its output
        layer is the backbone's token embedding), so there is no stage 1:
        `head_epochs` must be `0`. Example:
        `model.fine_tune(train, validation_data=valid, epochs=3)`.
        """
        if isinstance(head_epochs, numbers.Integral) and not isinstance(head_epochs, bool) and head_epochs > 0:
            raise ValueError(
                f"head_epochs={head_epochs}, but a Translator has no head-only stage: its "
                "output layer is the backbone's own token embedding, so with the "
                "backbone frozen nothing would train. Pass head_epochs=0 (the "
                "default), or call `fit`."
            )
        return super().fine_tune(
            x, y, validation_data=validation_data, head_epochs=head_epochs,
            epochs=epochs, unfreeze=unfreeze, **kwargs,
        )

    def evaluate(self, x=None, y=None, batch_size=None, **kwargs):
        """Loss and token accuracy on `(sources, targets)` (teacher forcing)."""
        distributed.initialize()
        data = self._as_seq2seq_batches(x, y, batch_size, False)
        kwargs = distributed.main_process_kwargs(kwargs)
        self._compile_if_uncompiled(for_fit=False)
        return keras.Model.evaluate(self, distributed.shard(data), **kwargs)

    def predict(self, x, batch_size=None, **kwargs):
        """Keras' predict on token-id inputs: next-token logits.

        For translations of raw text, use `translate`.
        """
        if _is_source_text(x):
            raise ValueError(
                "Translator.predict takes token-id inputs (as `preprocessor.collate` "
                "builds them) and returns next-token logits. For translations of raw "
                "text, call `model.translate(sources)`."
            )
        return super().predict(x, batch_size=batch_size, **kwargs)

    # Generation -------------------------------------------------------------

    def _generator(self, sampler):
        key = sampler if isinstance(sampler, str) else id(sampler)
        if key not in self._generators:
            generator = self._generator_class(backbone=self.backbone, preprocessor=None)
            generator.compile(sampler=sampler)
            self._generators[key] = generator
        return self._generators[key]

    def translate(self, sources, sampler="greedy", batch_size=None, verbose=False):
        """Generates a target text for each source, in order.

        Args:
            sources: a list of source strings.
            sampler: a KerasHub sampler name (`"greedy"`, `"beam"`,
                `"top_k"`, …) or a `keras_hub.samplers.Sampler`. Defaults
                to `"greedy"`.
            batch_size: sources decoded together. Defaults to `32`.
            verbose: print progress. Defaults to `False`.

        Returns:
            A list of strings.
        """
        if self.preprocessor is None:
            raise ValueError("This model has no preprocessor, so it cannot read raw text.")
        packed = self.preprocessor.pack_sources(sources)
        if not packed:
            return []
        generator = self._generator(sampler)
        batch_size = DEFAULT_BATCH_SIZE if batch_size is None else batch_size
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(
                f"Expected `batch_size` to be a positive integer. Received: batch_size={batch_size!r}"
            )
        order = np.argsort([len(p) for p in packed], kind="stable")
        sources = list(sources)
        outputs = [None] * len(sources)
        for start in range(0, len(order), batch_size):
            rows = order[start : start + batch_size]
            inputs, prompt_lengths = self.preprocessor.generation_inputs([sources[i] for i in rows])
            generated = generator.generate(inputs, stop_token_ids=[self.preprocessor.end_token_id])
            ids = generated["token_ids"] if "token_ids" in generated else generated["decoder_token_ids"]
            for row, text in zip(rows, self.preprocessor.decode(keras.ops.convert_to_numpy(ids), prompt_lengths)):
                outputs[row] = text.strip()
            if verbose:
                print(f"translated {min(start + batch_size, len(order))}/{len(order)}")
        return outputs

    def evaluate_bleu(self, sources, references=None, sampler="greedy", batch_size=None):
        """Translates `sources` and scores the result with sacreBLEU.

        Args:
            sources: source strings, or a `ParallelData` (its targets are
                the references).
            references: one reference string per source.
            sampler: as for `translate`. Defaults to `"greedy"`.
            batch_size: as for `translate`.

        Returns:
            A dict with `bleu` and `chrf` (0–100) and the `translations`.
        """
        from keras_transfer.metrics.bleu import bleu, chrf

        sources, references = self._pairs(sources, references, "sources")
        hypotheses = self.translate(sources, sampler=sampler, batch_size=batch_size)
        return {
            "bleu": bleu(hypotheses, references),
            "chrf": chrf(hypotheses, references),
            "translations": hypotheses,
        }

    def describe_freezing(self):
        trainable, frozen = freezing.count_params(self)
        lines = [
            f"Trains: {trainable:,} parameters · Frozen: {frozen:,} parameters",
            f"Backbone {type(self.backbone).__name__}: {freezing.describe(self.backbone)}",
        ]
        if self.preprocessor is not None:
            p = self.preprocessor
            lines.append(
                f"Preprocessor: {type(p.tokenizer).__name__}, vocabulary "
                f"{p.tokenizer.vocabulary_size():,}, source_length {p.source_length}, "
                f"target_length {p.target_length}"
                + (f", prompt {p.prompt!r}" if p.decoder_only else "")
            )
        return lines
