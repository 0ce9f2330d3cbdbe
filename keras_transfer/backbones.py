"""Finding and loading pretrained backbones.

`load_backbone(preset)` accepts four kinds of preset and returns the KerasHub
backbone with a matching `TextPreprocessor`:

- a KerasHub preset name (`"bert_base_en_uncased"`), checked offline against
  KerasHub's registry, with "did you mean" suggestions for typos;
- a local KerasHub preset directory (what `save_to_preset` writes);
- a local HuggingFace-format directory (`config.json` with `model_type`),
  which KerasHub converts (a base `RobertaModel`, `DistilBertModel` or
  `AlbertModel` checkpoint, without the task class's `roberta.` prefix,
  too; a missing tensor is a clear error);
- a `hf://owner/name` or `kaggle://…` handle, downloaded by KerasHub.
"""

import difflib
import json
import os
import pathlib

import keras
import keras_hub
import numpy as np
from keras_hub.src.utils.transformers.safetensor_utils import SafetensorLoader
from safetensors import SafetensorError

from keras_transfer import fused
from keras_transfer.bert import BertBackbone, hf_intermediate_activation
from keras_transfer.families import FAMILIES, family_of
from keras_transfer.freezing import remember_frozen_layers, restore_frozen_layers, restore_frozen_state
from keras_transfer.precision import resolve_dtype
from keras_transfer.preprocessing import TextPreprocessor
from keras_transfer.xlnet import convert_xlnet_checkpoint

DEFAULT_SEQUENCE_LENGTH = 512


def _text_preset_family(metadata):
    path = metadata.get("metadata", {}).get("path", "")
    for family in FAMILIES.values():
        if family.name == path:
            return family
    return None


def list_presets(family=None, *, all_families=False):
    """KerasHub's built-in presets, read offline from its registry.

    Args:
        family: only the presets of this family, for example `"bert"` or
            `"gpt2"`. Defaults to `None` (every supported family).
        all_families: include presets of families keras_transfer does not
            support yet (vision, audio, …). Defaults to `False`.

    Returns:
        A dict from preset name to `{"family", "params", "description"}`.
    """
    if isinstance(family, bool):  # the old positional `all_families`
        family, all_families = None, family
    names = sorted({known.name for known in FAMILIES.values()})
    if family is not None and family not in names:
        raise ValueError(f"Unknown family {family!r}. The text families are: {', '.join(names)}.")
    if not isinstance(all_families, bool):
        raise ValueError(f"Expected `all_families` to be True or False. Received: all_families={all_families!r}")
    presets = {}
    for name, info in sorted(keras_hub.models.Backbone.presets.items()):
        found = _text_preset_family(info)
        if (found is None and not all_families) or (family is not None and (found is None or found.name != family)):
            continue
        metadata = info.get("metadata", {})
        presets[name] = {
            "family": found.name if found else metadata.get("path", "?"),
            "params": metadata.get("params"),
            "description": metadata.get("description", ""),
        }
    return presets


def _looks_like_path(preset):
    return (
        os.sep in preset
        or preset.startswith((".", "~"))
        or (os.altsep is not None and os.altsep in preset)
    )


def no_preset_directory(preset, path, advice):
    """The error for a `preset` path that is no directory; a file that
    `model.save` or `save_weights` wrote is named as such, with its loader."""
    name = path.name.lower()
    if path.is_file() and name.endswith(".keras"):
        advice = (
            "It is a saved model (`model.save`), not a preset: load it with "
            f"`kt.load_model({str(path)!r})`."
        )
    elif path.is_file() and name.endswith((".weights.h5", ".h5")):
        advice = (
            "It is a weights file (`save_weights`), not a preset: build the same "
            f"model and call `model.load_weights({str(path)!r})`."
        )
    return FileNotFoundError(f"No preset directory at {preset!r}. {advice}")


def _check_preset_name(preset):
    registry = keras_hub.models.Backbone.presets
    if preset not in registry:
        close = difflib.get_close_matches(preset, list(registry), n=3, cutoff=0.6)
        hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
        raise ValueError(
            f"Unknown preset {preset!r}.{hint} `keras-transfer presets` lists "
            "the names KerasHub knows; a local preset or HuggingFace-format "
            "directory, or an `hf://owner/name` handle, also works."
        )
    family = _text_preset_family(registry[preset])
    if family is None:
        path = registry[preset].get("metadata", {}).get("path", "?")
        supported = ", ".join(f.name for f in FAMILIES.values())
        raise ValueError(
            f"Preset {preset!r} belongs to the {path!r} family, which "
            f"keras_transfer does not support. Supported text families: "
            f"{supported}."
        )


def _check_directory(path):
    config = path / "config.json"
    if not config.is_file():
        raise ValueError(
            f"{str(path)!r} is not a model directory: it has no config.json. "
            "Expected a KerasHub preset directory (written by "
            "`save_to_preset`) or a HuggingFace-format checkpoint directory."
        )
    try:
        content = json.loads(config.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(
            f"{str(config)!r} is not valid JSON ({error}). The preset "
            "directory is corrupted: save or download it again."
        ) from None
    if not isinstance(content, dict) or (
        "model_type" not in content and "class_name" not in content
    ):
        raise ValueError(
            f"{str(config)!r} is neither a KerasHub preset config (with "
            "`class_name`) nor a HuggingFace config (with `model_type`)."
        )
    return content


def _hf_normalization(path, tokenizer):
    """Makes an uncased WordPiece tokenizer strip accents as HF does.

    HF's BertNormalizer strips accents whenever it lowercases unless told
    otherwise; KerasHub's BertTokenizer defaults to keeping them, which
    turns "naïve café" into `[UNK]`s for an uncased vocabulary.
    """
    if not isinstance(tokenizer, keras_hub.tokenizers.WordPieceTokenizer):
        return
    lowercase, strip_accents = tokenizer.lowercase, None
    tokenizer_json = path / "tokenizer.json"
    if tokenizer_json.is_file():
        normalizer = json.loads(tokenizer_json.read_text()).get("normalizer") or {}
        if normalizer.get("type") == "BertNormalizer":
            lowercase = normalizer.get("lowercase", lowercase)
            strip_accents = normalizer.get("strip_accents")
    tokenizer_config = path / "tokenizer_config.json"
    if tokenizer_config.is_file():
        config = json.loads(tokenizer_config.read_text())
        lowercase = config.get("do_lower_case", lowercase)
        strip_accents = config.get("strip_accents", strip_accents)
    tokenizer.lowercase = bool(lowercase)
    tokenizer.strip_accents = bool(lowercase if strip_accents is None else strip_accents)


def _sentence_transformers_pooling(path):
    """The pooling a sentence-transformers checkpoint was trained with."""
    config = path / "1_Pooling" / "config.json"
    if not config.is_file():
        return None
    modes = json.loads(config.read_text())
    for key, mode in [
        ("pooling_mode_mean_tokens", "mean"),
        ("pooling_mode_cls_token", "cls"),
        ("pooling_mode_max_tokens", "max"),
        ("pooling_mode_lasttoken", "last"),
    ]:
        if modes.get(key):
            return mode
    return None


def _hf_loader(preset):
    """KerasHub's loader for a preset (a HuggingFace or KerasHub directory)."""
    from keras_hub.src.utils.preset_utils import get_preset_loader

    return get_preset_loader(preset)


# KerasHub's converters read these families' weights under the prefix that
# HF's task classes (RobertaForSequenceClassification, …) save them with; a
# base model (RobertaModel) saves the same tensors without it.
_BASE_MODEL_PREFIXES = {"roberta": "roberta.", "distilbert": "distilbert.", "albert": "albert."}


class _MissingTensor(Exception):
    """A tensor that KerasHub's converter asked for is not in the checkpoint."""

    def __init__(self, key, present):
        super().__init__(key)
        self.key = key
        self.present = present  # the checkpoint's tensor names


class _CheckpointWeights(SafetensorLoader):
    """KerasHub's reader of a HuggingFace checkpoint's safetensors files.

    Reads base-model checkpoints of the families in `_BASE_MODEL_PREFIXES`
    (`embeddings.…` where the converter asks for `roberta.embeddings.…`),
    and raises `_MissingTensor` for a tensor the checkpoint lacks where
    KerasHub would fail deep in safetensors (or with a bare `KeyError` on a
    sharded checkpoint's index).
    """

    def __init__(self, preset, model_type):
        super().__init__(preset)
        self.base_model_prefix = _BASE_MODEL_PREFIXES.get(model_type)

    def get_prefixed_key(self, hf_weight_key, dict_like):
        names = list(dict_like.keys())
        prefix = self.base_model_prefix
        if prefix and hf_weight_key.startswith(prefix) and hf_weight_key not in names:
            bare = hf_weight_key[len(prefix) :]
            if bare in names:
                return bare
        key = super().get_prefixed_key(hf_weight_key, dict_like)
        if key not in names:
            raise _MissingTensor(hf_weight_key, names)
        return key


def _missing_tensor_error(path, config, missing):
    """The `ValueError` for a checkpoint that lacks a tensor KerasHub reads."""
    key, model_type = missing.key, config.get("model_type")
    architecture = (config.get("architectures") or ["?"])[0]
    head, _, rest = key.partition(".")
    error = (
        f"Cannot convert the HuggingFace checkpoint {str(path)!r}: it has no "
        f"tensor {key!r}, which KerasHub's converter for model_type "
        f"{model_type!r} reads."
    )
    by_hand = (
        "convert the weights by hand (KerasHub's converters, in "
        "`keras_hub/src/utils/transformers/`, list the names they read)."
    )
    if rest in missing.present:
        why = f"Its weights lack the `{head}.` prefix"
    elif key == "lm_head.weight":
        why = "It has no output layer and config.json says tie_word_embeddings is false"
    else:
        return ValueError(
            f"{error} The weights file is incomplete, or was written for another "
            f"model type: save or download the checkpoint again, or {by_hand}"
        )
    if architecture.endswith("Model"):  # RobertaModel, LlamaModel: no head
        stem = architecture[: -len("Model")]
        head_class = f"{stem}ForCausalLM" if head in ("model", "lm_head") else f"{stem}ForMaskedLM"
        source = f"it was saved from a base model ({architecture})"
        save = f"{head_class} (`{head_class}.from_pretrained(path).save_pretrained(path)`"
    else:
        source = "it looks saved from a base model"
        save = "the model's class with a head (`AutoModelForCausalLM` or `AutoModelForMaskedLM`"
    return ValueError(
        f"{error} {why}: {source}, and KerasHub converts checkpoints saved "
        f"from a class with a head. Save it again from {save}; keras_transfer "
        f"never uses that head), or {by_hand}"
    )


def _fold_token_type_embedding(backbone, weights):
    """Adds RoBERTa's token type embedding into its position embeddings.

    HF's `RobertaModel` adds `token_type_embeddings[0]` to every token (its
    token type ids are all 0); KerasHub's `RobertaBackbone` has no such
    table and its converter drops it. Pretrained RoBERTa's row is zero, but
    a fine-tuned checkpoint's need not be. Folded into every position's
    embedding, the sum is HF's, as KerasHub does for XLM-RoBERTa.
    """
    try:
        table = weights.get_tensor("roberta.embeddings.token_type_embeddings.weight")
    except _MissingTensor:
        return
    positions = backbone.embeddings.position_embedding.position_embeddings
    folded = keras.ops.convert_to_numpy(keras.ops.cast(positions, "float32")) + table[0]
    positions.assign(folded)


def _load_hf_backbone(preset, config, load_weights, **kwargs):
    """Converts a HuggingFace-format directory with KerasHub's converter.

    As `Backbone.from_preset` does, with the weights read through
    `_CheckpointWeights`.
    """
    loader = _hf_loader(preset)
    # KerasHub's converter would build the tanh GELU (see bert.py).
    activation = hf_intermediate_activation(config)
    if activation:
        cls, kwargs = BertBackbone, {**kwargs, "intermediate_activation": activation}
    else:
        cls = loader.check_backbone_class()
    backbone = loader.load_backbone(cls, load_weights=False, **kwargs)
    if load_weights:
        with _CheckpointWeights(preset, config.get("model_type")) as weights:
            try:
                loader.converter.convert_weights(backbone, weights, loader.config)
            except _MissingTensor as missing:
                raise _missing_tensor_error(preset, config, missing) from None
            if config.get("model_type") == "roberta":
                _fold_token_type_embedding(backbone, weights)
    return backbone


def _download_error(preset, error):
    return RuntimeError(
        f"Could not download the weights of preset {preset!r}: {error}. "
        "If this machine is offline: download the preset once on a "
        "connected machine (KerasHub caches it under ~/.cache/kagglehub), "
        "or pass the path of a local preset or HuggingFace-format directory."
    )


def check_load_weights(load_weights):
    """Refuses a `load_weights` that is not True or False: a string such as
    "no" or "False" is true to Python, so it would load the weights."""
    if not isinstance(load_weights, (bool, np.bool_)):
        raise ValueError(
            "Expected `load_weights` to be True (the pretrained weights) or False "
            f"(random weights). Received: load_weights={load_weights!r}"
        )


def load_backbone(
    preset,
    sequence_length=DEFAULT_SEQUENCE_LENGTH,
    truncation="head",
    load_weights=True,
    dtype=None,
):
    """Loads a pretrained backbone and its matching preprocessor.

    Args:
        preset: a KerasHub preset name, a local KerasHub preset directory, a
            local HuggingFace-format directory, or an `hf://` / `kaggle://`
            handle.
        sequence_length: the longest packed sequence the preprocessor
            produces; capped at the backbone's maximum. Defaults to `512`.
        truncation: which part of long texts to keep: `"head"`, `"tail"`
            or `"head+tail"`. Defaults to `"head"`.
        load_weights: load the pretrained weights (`False` builds the
            architecture with random weights). Defaults to `True`.
        dtype: the backbone's dtype policy, for example `"bfloat16"`, or
            `"auto"`: `"mixed_bfloat16"` where bfloat16 is fast (a GPU, or
            a CPU with AVX512-BF16/AMX), Keras' global policy elsewhere
            (`keras_transfer/precision.py`). Defaults to `None` (Keras'
            global policy).

    Returns:
        `(backbone, preprocessor)`.

    Example:
    ```python
    backbone, preprocessor = kt.load_backbone("bert_base_en_uncased")
    kt.freeze(backbone)
    ```
    """
    if isinstance(preset, pathlib.PurePath):
        preset = str(preset)
    if not isinstance(preset, str) or not preset:
        raise ValueError(
            "Expected `preset` to be a preset name, a directory or an "
            f"`hf://` handle. Received: preset={preset!r}"
        )
    if isinstance(sequence_length, np.integer):
        sequence_length = int(sequence_length)
    if isinstance(sequence_length, bool) or not isinstance(sequence_length, int) or sequence_length < 3:
        raise ValueError(
            "Expected `sequence_length` to be an integer of at least 3. "
            f"Received: sequence_length={sequence_length!r}"
        )
    check_load_weights(load_weights)
    path = pathlib.Path(os.path.expanduser(preset))
    local = path.is_dir()
    hf_format = xlnet_format = False
    if local:
        config = _check_directory(path)
        hf_format = "model_type" in config
        # KerasHub cannot convert XLNet checkpoints; keras_transfer.xlnet can.
        xlnet_format = config.get("model_type") == "xlnet"
        preset = str(path)
    elif "://" in preset:
        pass
    elif _looks_like_path(preset) or path.exists():
        raise no_preset_directory(
            preset, path, "Check the path, or give a KerasHub preset name such as 'bert_base_en_uncased'."
        )
    else:
        _check_preset_name(preset)
    kwargs = {"load_weights": load_weights}
    dtype = resolve_dtype(dtype)
    if dtype is not None:
        kwargs["dtype"] = dtype
    try:
        if xlnet_format:
            backbone, tokenizer = convert_xlnet_checkpoint(path, **kwargs)
        elif hf_format:
            backbone = _load_hf_backbone(preset, config, **kwargs)
            tokenizer = keras_hub.tokenizers.Tokenizer.from_preset(preset)
        else:
            backbone = keras_hub.models.Backbone.from_preset(preset, **kwargs)
            if isinstance(backbone, BertBackbone):
                # A preset saved from `kt.BertBackbone`: KerasHub looks for a
                # tokenizer class made for that exact backbone class.
                tokenizer = _hf_loader(preset).load_tokenizer(keras_hub.models.BertTokenizer)
            else:
                tokenizer = keras_hub.tokenizers.Tokenizer.from_preset(preset)
    except (OSError, SafetensorError) as error:  # requests' ConnectionError is an OSError
        if local:
            raise ValueError(
                f"Could not read the preset directory {preset!r}: {error}. A "
                "file in it is missing, truncated or corrupted: save or copy "
                "the preset again."
            ) from error
        raise _download_error(preset, error) from None
    except KeyError as error:
        if not hf_format:
            raise
        raise ValueError(
            f"Could not convert the HuggingFace checkpoint {preset!r}: the "
            f"converter for model_type {config['model_type']!r} looked for "
            f"{error} in its config.json or tokenizer files and "
            "found none. Save the model and its tokenizer again with "
            "`save_pretrained`, or give the missing field."
        ) from None
    except ValueError as error:
        # Offline, KerasHub reports an `hf://` handle as having no config.
        if local or "://" not in preset:
            raise
        raise _download_error(preset, error) from None
    family = family_of(backbone)
    if hf_format:
        _hf_normalization(path, tokenizer)
        pooling = _sentence_transformers_pooling(path)
        if pooling is not None:
            backbone._kt_default_pooling = pooling
    # A backbone saved while frozen comes back with trainable weights, and
    # one saved partly frozen lists its frozen blocks in its config.
    restore_frozen_state(backbone)
    if local and not hf_format and not xlnet_format:
        restore_frozen_layers(backbone, config)
    remember_frozen_layers(backbone)
    fused.fuse(backbone)  # torch's fused linear and attention kernels
    max_length = getattr(backbone, "max_sequence_length", None) or sequence_length
    preprocessor = TextPreprocessor(
        tokenizer,
        backbone_class=family.backbone_class,
        sequence_length=min(sequence_length, max_length),
        truncation=truncation,
    )
    return backbone, preprocessor
