"""XLNet: HuggingFace checkpoints as KerasHub backbones, and XLNet's tokenizer.

KerasHub 0.32 has an `XLNetBackbone` but no XLNet presets, tokenizer or
HuggingFace converter. This module adds them:

- `XLNetTokenizer`: a `keras_hub.tokenizers.SentencePieceTokenizer` with
  XLNet's special tokens (`<sep>`, `<cls>`, `<pad>`, …) and its text
  normalization (collapse whitespace, `` and '' into ", strip accents);
  the same ids as HF's `XLNetTokenizer`.
- `XLNetBackbone`: KerasHub's `XLNetBackbone` fixed to work on batches
  (see below); everything else, weights included, is KerasHub's.
- `convert_xlnet_checkpoint(path)`: reads a HuggingFace-format directory
  (`config.json` with `model_type: "xlnet"`, `model.safetensors` or
  `pytorch_model.bin`, `spiece.model`) and returns `(backbone, tokenizer)`
  with every weight mapped exactly. `kt.load_backbone(path)` calls it for
  XLNet directories.

XLNet packs a text as `a <sep> <cls>` (a pair as `a <sep> b <sep> <cls>`),
with segment ids 0 for `a`, 1 for `b` and 2 for `<cls>`, pads on the left
and summarizes a text at its last token, `<cls>`; `kt.TextPreprocessor` and
the `"last"` pooling do all of this for the `xlnet` family.

The batch fix: KerasHub 0.32's XLNet is only right one text at a time. Its
embedding layer lays the relative-position encoding out as
`(positions, batch, dim)` and its mask layer the padding mask as
`(length, batch)`, then reshapes both where a transpose is meant, so with
two or more texts every row gets scrambled positions and, with padding,
another row's mask. `XLNetBackbone` builds KerasHub's graph with those two
layers fixed; its outputs match HF's `XLNetModel` to about 1e-6 on
left-padded batches.
"""

import json
import pathlib
import unicodedata

import keras
import keras_hub
import numpy as np
from keras import ops
from keras_hub.src.models.xlnet.xlnet_content_and_query_embedding import ContentAndQueryEmbedding
from keras_hub.src.models.xlnet.xlnet_encoder import (
    XLNetAttentionMaskLayer,
    XLNetEncoder,
    XLNetSegmentMatrixLayer,
)

# HF's `ff_activation` names and the Keras activations that compute the same
# function (HF's "gelu" is the exact, erf-based GELU, as is Keras' "gelu").
_ACTIVATIONS = {"gelu": "gelu", "relu": "relu", "silu": "silu", "swish": "silu"}
# KerasHub's XLNetEncoder hard-codes its layer-norm epsilon.
_LAYER_NORM_EPSILON = 1e-12
_WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin")


# ------------------------------------------------------------------ backbone


class _ContentAndQueryEmbedding(ContentAndQueryEmbedding):
    """KerasHub's token and relative-position embedding, batch-safe.

    KerasHub builds the sinusoidal encoding as `(positions, batch, dim)` and
    reshapes it to `(batch, positions, dim)`, which scrambles the positions
    of every row as soon as the batch holds more than one text. This
    broadcasts one `(positions, dim)` encoding to every row instead, as HF's
    `XLNetModel` does (positions `length … -length+1`, computed in float32).
    """

    def call(self, token_id_input, mlen=None):
        if mlen:
            raise ValueError(f"XLNet memory is not supported. Received: mlen={mlen!r}")
        word_emb = self.dropout_layer(self.word_embed(token_id_input))  # (B, T, H)
        batch, length = ops.shape(token_id_input)[0], ops.shape(token_id_input)[1]
        frequencies = ops.arange(0, self.hidden_dim, 2.0, dtype="float32")
        inverse = 1.0 / (10000.0 ** (frequencies / self.hidden_dim))  # (H/2,)
        positions = ops.arange(length, -length, -1.0, dtype="float32")  # (2T,)
        angles = ops.einsum("i,d->id", positions, inverse)  # (2T, H/2)
        encoding = ops.concatenate([ops.sin(angles), ops.cos(angles)], axis=-1)  # (2T, H)
        encoding = ops.cast(encoding, self.compute_dtype)
        pos_emb = ops.broadcast_to(encoding[None], (batch, 2 * length, self.hidden_dim))
        return word_emb, self.dropout_layer(pos_emb)


class _XLNetPaddingMask(XLNetAttentionMaskLayer):
    """KerasHub's attention-mask layer, batch-safe.

    KerasHub reshapes the `(batch, length)` padding mask to
    `(length, batch)` where a transpose is meant, so each text of a padded
    batch gets a mix of the batch's masks. This returns the content-stream
    mask `(batch, length, length)` (a position sees every real token and
    itself) and the query-stream mask `(batch, 1, length)` (every real
    token), 1.0 where attention is allowed, as HF's `XLNetModel` computes
    them. Its `mask_emb` weight never trains (see `build`).
    """

    def build(self, inputs_shape):
        # `mask_emb` only feeds the query stream of XLNet's pretraining, which
        # this backbone never runs: it is kept (checkpoints hold it) but never
        # trains, or Keras would warn at every step that it has no gradient.
        self.mask_emb = self.add_weight(
            shape=(1, 1, self.hidden_dim),
            initializer=self.kernel_initializer,
            trainable=False,
            name="mask_emb",
        )
        self.built = True

    def call(self, inputs, mlen=None):
        if mlen:
            raise ValueError(f"XLNet memory is not supported. Received: mlen={mlen!r}")
        mask = ops.cast(inputs, "float32")  # (B, T), 1.0 for real tokens
        length = ops.shape(mask)[1]
        query = mask[:, None, :]  # (B, 1, T)
        content = ops.maximum(query, ops.eye(length, dtype="float32")[None])  # (B, T, T)
        return content, query


@keras.saving.register_keras_serializable(package="keras_transfer")
class XLNetBackbone(keras_hub.models.XLNetBackbone):
    """KerasHub's XLNet encoder, fixed to work on batches.

    The same architecture, arguments, inputs (`token_ids`, `segment_ids`,
    `padding_mask`), weights (names and shapes) and config as
    `keras_hub.models.XLNetBackbone`, of which it is a subclass. KerasHub
    0.32's is only right one text at a time: with two or more texts its
    relative positions are scrambled and, with padding, each text gets
    another's mask (two reshapes where transposes are meant). This one
    builds the same graph with those two layers fixed; its outputs equal
    HF's `XLNetModel` to about 1e-6 on left-padded batches.

    Args:
        vocabulary_size: size of the token vocabulary.
        num_layers: number of transformer blocks.
        num_heads: number of attention heads.
        hidden_dim: size of the hidden states.
        intermediate_dim: size of the feed-forward layer.
        dropout: dropout rate of the embeddings, attention output and
            feed-forward layers. Defaults to `0.0`.
        activation: activation of the feed-forward layer. Defaults to
            `"gelu"` (exact GELU, as HF's XLNet).
        kernel_initializer_range: standard deviation of the initial
            weights. Defaults to `0.02`.
        bias_initializer: initializer of the biases. Defaults to `"zeros"`.
        dtype: dtype policy of the weights and computations. Defaults to
            `None` (Keras' global policy).

    Example:
    ```python
    backbone = kt.XLNetBackbone(
        vocabulary_size=100, num_layers=2, num_heads=2, hidden_dim=16,
        intermediate_dim=32,
    )
    features = backbone({
        "token_ids": np.array([[5, 5, 7, 8, 4, 3], [9, 10, 11, 12, 4, 3]]),
        "segment_ids": np.array([[0, 0, 0, 0, 0, 2], [0, 0, 0, 0, 0, 2]]),
        "padding_mask": np.array([[0, 0, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1]]),
    })  # (2, 6, 16); the first text is padded on the left
    ```
    """

    def __init__(
        self,
        vocabulary_size,
        num_layers,
        num_heads,
        hidden_dim,
        intermediate_dim,
        dropout=0.0,
        activation="gelu",
        kernel_initializer_range=0.02,
        bias_initializer="zeros",
        dtype=None,
        **kwargs,
    ):
        # === Layers === (KerasHub's, with the embedding and mask fixed)
        self.content_query_embedding = _ContentAndQueryEmbedding(
            vocabulary_size=vocabulary_size,
            hidden_dim=hidden_dim,
            dropout=dropout,
            dtype=dtype,
            name="content_query_embedding",
        )
        self.attn_mask_layer = _XLNetPaddingMask(
            hidden_dim=hidden_dim,
            kernel_initializer_range=kernel_initializer_range,
            dtype=dtype,
            name="encoder_block_attn_mask_layer",
        )
        self.seg_mat_layer = XLNetSegmentMatrixLayer(dtype=dtype, name="encoder_block_seg_mat_layer")
        self.transformer_layers = [
            XLNetEncoder(
                num_heads=num_heads,
                hidden_dim=hidden_dim,
                head_dim=hidden_dim // num_heads,
                intermediate_dim=intermediate_dim,
                dropout=dropout,
                activation=activation,
                layer_norm_epsilon=_LAYER_NORM_EPSILON,
                kernel_initializer_range=kernel_initializer_range,
                bias_initializer=bias_initializer,
                dtype=dtype,
                name=f"xlnet_encoder_{i}",
            )
            for i in range(num_layers)
        ]
        output_dropout = keras.layers.Dropout(dropout, dtype=dtype, name="dropout")

        # === Functional Model ===
        token_id_input = keras.Input(shape=(None,), dtype="int32", name="token_ids")
        padding_mask_input = keras.Input(shape=(None,), dtype="int32", name="padding_mask")
        segment_id_input = keras.Input(shape=(None,), dtype="int32", name="segment_ids")
        word_emb, pos_emb = self.content_query_embedding(token_id_input)
        attn_mask_content, attn_mask_query = self.attn_mask_layer(padding_mask_input)
        seg_mat = self.seg_mat_layer(segment_id_input)
        output = word_emb
        for block in self.transformer_layers:
            output, _ = block(
                output_content=output,
                attn_mask_content=attn_mask_content,
                attn_mask_query=attn_mask_query,
                pos_emb=pos_emb,
                seg_mat=seg_mat,
            )
        output = output_dropout(output)
        keras_hub.models.Backbone.__init__(
            self,
            inputs={
                "token_ids": token_id_input,
                "padding_mask": padding_mask_input,
                "segment_ids": segment_id_input,
            },
            outputs=output,
            dtype=dtype,
            **kwargs,
        )

        # === Config === (KerasHub's `get_config` reads these)
        self.vocabulary_size = vocabulary_size
        self.num_layers = num_layers
        self.num_heads = num_heads
        self.hidden_dim = hidden_dim
        self.intermediate_dim = intermediate_dim
        self.dropout = dropout
        self.activation = activation
        self.kernel_initializer_range = kernel_initializer_range
        self.bias_initializer = bias_initializer


# ----------------------------------------------------------------- tokenizer


def normalize_xlnet_text(text, lowercase=False, strip_accents=True):
    """XLNet's text preprocessing, done before SentencePiece.

    As HF's `XLNetTokenizer` with `remove_space=True`: runs of whitespace
    become one space and the ends are trimmed, `` and '' become ", accents
    are removed (NFKD, combining marks dropped) unless
    `strip_accents=False`, and the text is lowercased if `lowercase`.
    """
    text = " ".join(text.split())
    text = text.replace("``", '"').replace("''", '"')
    if strip_accents:
        text = unicodedata.normalize("NFKD", text)
        text = "".join(char for char in text if not unicodedata.combining(char))
    if lowercase:
        text = text.lower()
    return text


@keras.saving.register_keras_serializable(package="keras_transfer")
class XLNetTokenizer(keras_hub.tokenizers.SentencePieceTokenizer):
    """XLNet's SentencePiece tokenizer, with its special tokens.

    Normalizes text as HF's `XLNetTokenizer` does (see
    `normalize_xlnet_text`), then runs SentencePiece. The special tokens are
    looked up in the vocabulary and exposed as `sep_token_id`,
    `cls_token_id`, `pad_token_id`, `unk_token_id`, `start_token_id`
    (`<s>`), `end_token_id` (`</s>`) and `mask_token_id`; a vocabulary that
    lacks one of them is refused. Tokenizing adds no special tokens:
    `kt.TextPreprocessor` packs `a <sep> <cls>`.

    Args:
        proto: a path to a SentencePiece model file (`spiece.model`), or its
            serialized bytes.
        lowercase: lowercase the text first (HF's `do_lower_case`).
            Defaults to `False`.
        strip_accents: remove accents first (HF's `keep_accents=False`).
            Defaults to `True`.
        **kwargs: passed to `SentencePieceTokenizer` (`sequence_length`,
            `dtype`, …).

    Example:
    ```python
    tokenizer = kt.XLNetTokenizer("xlnet-base-cased/spiece.model")
    tokenizer(["A  naïve café."])   # ids of "▁A", "▁naive", "▁cafe", "."
    tokenizer.cls_token_id          # 3 in xlnet-base-cased
    ```
    """

    backbone_cls = XLNetBackbone

    def __init__(self, proto=None, lowercase=False, strip_accents=True, **kwargs):
        self._add_special_token("<sep>", "sep_token")
        self._add_special_token("<cls>", "cls_token")
        self._add_special_token("<pad>", "pad_token")
        self._add_special_token("<unk>", "unk_token")
        self._add_special_token("<s>", "start_token")
        self._add_special_token("</s>", "end_token")
        self._add_special_token("<mask>", "mask_token")
        self.lowercase = bool(lowercase)
        self.strip_accents = bool(strip_accents)
        super().__init__(proto=proto, **kwargs)

    def _normalize(self, inputs):
        def one(text):
            if isinstance(text, bytes):
                text = text.decode("utf-8")
            return normalize_xlnet_text(text, self.lowercase, self.strip_accents)

        if isinstance(inputs, (str, bytes)):
            return one(inputs)
        if isinstance(inputs, np.ndarray) and inputs.dtype.kind in "USO":
            return np.array([one(t) for t in inputs.reshape(-1)], dtype=object).reshape(
                inputs.shape
            ).tolist()
        if isinstance(inputs, (list, tuple)) and all(isinstance(t, (str, bytes)) for t in inputs):
            return [one(t) for t in inputs]
        return inputs  # tensors and anything else: as SentencePieceTokenizer takes them

    def tokenize(self, inputs):
        return super().tokenize(self._normalize(inputs))

    def get_config(self):
        config = super().get_config()
        config.update({"lowercase": self.lowercase, "strip_accents": self.strip_accents})
        return config


# ----------------------------------------------------------------- converter


def _read_config(path):
    config_file = path / "config.json"
    if not config_file.is_file():
        raise ValueError(
            f"{str(path)!r} has no config.json: expected a HuggingFace-format "
            "XLNet checkpoint directory (config.json, model.safetensors, "
            "spiece.model)."
        )
    try:
        config = json.loads(config_file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{str(config_file)!r} is not valid JSON ({error}).") from None
    if not isinstance(config, dict) or config.get("model_type") != "xlnet":
        found = config.get("model_type") if isinstance(config, dict) else None
        raise ValueError(
            f"{str(config_file)!r} is not an XLNet config: expected "
            f'"model_type": "xlnet". Received: model_type={found!r}.'
        )
    return config


def backbone_config(config):
    """`XLNetBackbone` arguments for a HuggingFace `XLNetConfig` dict.

    Raises a `ValueError` for settings KerasHub's XLNet does not implement
    (unidirectional attention, bidirectional data, clamped or same-length
    positions, another layer-norm epsilon or activation).
    """

    def setting(key, default):
        return config.get(key, default)

    problems = []
    if setting("attn_type", "bi") != "bi":
        problems.append(f"attn_type={setting('attn_type', 'bi')!r} (only 'bi')")
    if setting("bi_data", False):
        problems.append("bi_data=True (only False)")
    if setting("same_length", False):
        problems.append("same_length=True (only False)")
    if (setting("clamp_len", -1) or -1) > 0:
        problems.append(f"clamp_len={setting('clamp_len', -1)!r} (only -1, no clamping)")
    epsilon = setting("layer_norm_eps", _LAYER_NORM_EPSILON)
    if not np.isclose(epsilon, _LAYER_NORM_EPSILON, rtol=1e-3, atol=0):
        problems.append(f"layer_norm_eps={epsilon!r} (only {_LAYER_NORM_EPSILON})")
    activation = setting("ff_activation", "gelu")
    if activation not in _ACTIVATIONS:
        problems.append(f"ff_activation={activation!r} (only {sorted(_ACTIVATIONS)})")
    hidden_dim, num_heads = config.get("d_model"), config.get("n_head")
    missing = [k for k in ("vocab_size", "d_model", "n_layer", "n_head", "d_inner") if k not in config]
    if missing:
        problems.append(f"missing {missing}")
    elif hidden_dim % num_heads or setting("d_head", hidden_dim // num_heads) != hidden_dim // num_heads:
        problems.append(
            f"d_head={setting('d_head', None)!r} with d_model={hidden_dim} and "
            f"n_head={num_heads} (KerasHub uses d_model // n_head)"
        )
    if problems:
        raise ValueError(
            "This XLNet config has settings KerasHub's XLNetBackbone does not "
            "implement: " + "; ".join(problems) + "."
        )
    return {
        "vocabulary_size": config["vocab_size"],
        "num_layers": config["n_layer"],
        "num_heads": num_heads,
        "hidden_dim": hidden_dim,
        "intermediate_dim": config["d_inner"],
        "dropout": float(setting("dropout", 0.1)),
        "activation": _ACTIVATIONS[activation],
        "kernel_initializer_range": float(setting("initializer_range", 0.02)),
    }


def _load_tensors(path):
    """{name: float32 array} from the checkpoint's weight file(s)."""
    import torch

    def to_numpy(tensor):
        return tensor.detach().to(torch.float32).numpy()

    if (path / "model.safetensors").is_file() or (path / "model.safetensors.index.json").is_file():
        from safetensors import safe_open

        if (path / "model.safetensors").is_file():
            files = ["model.safetensors"]
        else:
            index = json.loads((path / "model.safetensors.index.json").read_text())
            files = sorted(set(index["weight_map"].values()))
        tensors = {}
        for name in files:
            with safe_open(str(path / name), framework="pt") as shard:
                for key in shard.keys():
                    tensors[key] = to_numpy(shard.get_tensor(key))
        return tensors
    if (path / "pytorch_model.bin").is_file():
        # `weights_only=True` refuses anything but tensors: no code from the
        # file is run.
        state = torch.load(path / "pytorch_model.bin", map_location="cpu", weights_only=True)
        return {key: to_numpy(value) for key, value in state.items()}
    raise ValueError(
        f"{str(path)!r} has no weights: expected one of {list(_WEIGHT_FILES)}. "
        "Save the model with `save_pretrained`, or pass load_weights=False "
        "for random weights."
    )


def weight_map(backbone):
    """`[(keras_variable, hf_name, transpose)]` for every backbone weight.

    HF names are those of `XLNetModel`'s state dict (no `transformer.`
    prefix). Dense kernels are stored transposed by PyTorch.
    """
    mapping = [
        (backbone.get_layer("encoder_block_attn_mask_layer").mask_emb, "mask_emb", False),
        (backbone.token_embedding.embeddings, "word_embedding.weight", False),
    ]
    for i in range(backbone.num_layers):
        block, p = backbone.get_layer(f"xlnet_encoder_{i}"), f"layer.{i}."
        attention = block.relative_attention
        mapping += [
            (attention._query_dense.kernel, p + "rel_attn.q", False),
            (attention._key_dense.kernel, p + "rel_attn.k", False),
            (attention._value_dense.kernel, p + "rel_attn.v", False),
            (attention._output_dense.kernel, p + "rel_attn.o", False),
            (attention._encoding_dense.kernel, p + "rel_attn.r", False),
            (block.content_attention_bias, p + "rel_attn.r_w_bias", False),
            (block.positional_attention_bias, p + "rel_attn.r_r_bias", False),
            (block.segment_attention_bias, p + "rel_attn.r_s_bias", False),
            (block.segment_encoding, p + "rel_attn.seg_embed", False),
            (block.layer_norm.gamma, p + "rel_attn.layer_norm.weight", False),
            (block.layer_norm.beta, p + "rel_attn.layer_norm.bias", False),
            (block.layer_norm_ff.gamma, p + "ff.layer_norm.weight", False),
            (block.layer_norm_ff.beta, p + "ff.layer_norm.bias", False),
            (block.feedforward_intermediate_dense.kernel, p + "ff.layer_1.weight", True),
            (block.feedforward_intermediate_dense.bias, p + "ff.layer_1.bias", False),
            (block.feedforward_output_dense.kernel, p + "ff.layer_2.weight", True),
            (block.feedforward_output_dense.bias, p + "ff.layer_2.bias", False),
        ]
    return mapping


def _assign_weights(backbone, tensors, path):
    # XLNetLMHeadModel and the task heads keep the encoder under `transformer.`.
    prefix = "" if "word_embedding.weight" in tensors else "transformer."
    mapping = weight_map(backbone)
    missing = [name for _, name, _ in mapping if prefix + name not in tensors]
    if missing:
        raise ValueError(
            f"The checkpoint in {str(path)!r} lacks {len(missing)} XLNet "
            f"weights, for example {missing[:3]}. It is not a complete "
            "XLNetModel checkpoint (or its weights do not match config.json)."
        )
    for variable, name, transpose in mapping:
        value = tensors[prefix + name]
        expected = tuple(variable.shape)[::-1] if transpose else tuple(variable.shape)
        if tuple(value.shape) != expected:
            raise ValueError(
                f"Weight {prefix + name!r} in {str(path)!r} has shape "
                f"{tuple(value.shape)} but config.json implies {expected}: "
                "the config and the weights do not match."
            )
        variable.assign(value.T if transpose else value)
    mapped = {id(variable) for variable, _, _ in mapping}
    unmapped = [v.path for v in backbone.weights if id(v) not in mapped]
    if unmapped:  # a KerasHub version with weights this converter does not know
        raise ValueError(
            f"keras_transfer cannot map these XLNetBackbone weights from HF "
            f"names: {unmapped}. This KerasHub version is not supported."
        )


def xlnet_tokenizer_from_hf(path):
    """The `XLNetTokenizer` of a HuggingFace-format XLNet directory.

    Reads `spiece.model` and, when present, `tokenizer_config.json`
    (`do_lower_case`, `keep_accents`).
    """
    path = pathlib.Path(path)
    model = path / "spiece.model"
    if not model.is_file():
        raise ValueError(
            f"{str(path)!r} has no spiece.model, XLNet's SentencePiece "
            "vocabulary. Copy it from the checkpoint the weights come from "
            "(HF's `tokenizer.save_pretrained(path)` writes it)."
        )
    settings = {}
    config_file = path / "tokenizer_config.json"
    if config_file.is_file():
        settings = json.loads(config_file.read_text())
    try:
        return XLNetTokenizer(
            proto=model.read_bytes(),
            lowercase=bool(settings.get("do_lower_case", False)),
            strip_accents=not settings.get("keep_accents", False),
        )
    except ValueError as error:
        raise ValueError(
            f"{str(model)!r} is not an XLNet vocabulary: {error}"
        ) from None


def convert_xlnet_checkpoint(path, load_weights=True, dtype=None):
    """Converts a HuggingFace-format XLNet directory to KerasHub objects.

    Args:
        path: a directory holding `config.json` (`model_type: "xlnet"`),
            the weights (`model.safetensors`, a sharded
            `model.safetensors.index.json`, or `pytorch_model.bin`, read
            with `torch.load(weights_only=True)`), and `spiece.model`. The
            weights of `XLNetModel` and of the HF models built on it
            (`XLNetLMHeadModel`, `XLNetForSequenceClassification`, …)
            both work; heads are ignored.
        load_weights: copy the checkpoint's weights (`False`: random
            weights of the same architecture). Defaults to `True`.
        dtype: dtype policy of the backbone, for example `"bfloat16"`.
            Defaults to `None` (Keras' global policy).

    Returns:
        `(backbone, tokenizer)`: an `XLNetBackbone` (a subclass of
        `keras_hub.models.XLNetBackbone`) and an `XLNetTokenizer`.

    Example:
    ```python
    backbone, tokenizer = kt.convert_xlnet_checkpoint("xlnet-base-cased/")
    # or, with the preprocessor that packs `a <sep> <cls>`:
    backbone, preprocessor = kt.load_backbone("xlnet-base-cased/")
    ```
    """
    path = pathlib.Path(path).expanduser()
    if not path.is_dir():
        raise FileNotFoundError(f"No XLNet checkpoint directory at {str(path)!r}.")
    config = _read_config(path)
    tokenizer = xlnet_tokenizer_from_hf(path)
    kwargs = backbone_config(config)
    if tokenizer.vocabulary_size() > kwargs["vocabulary_size"]:
        raise ValueError(
            f"spiece.model has {tokenizer.vocabulary_size()} tokens but the "
            f"model's vocab_size is {kwargs['vocabulary_size']}: the "
            "vocabulary does not belong to these weights."
        )
    tensors = _load_tensors(path) if load_weights else None
    backbone = XLNetBackbone(**kwargs, dtype=dtype)
    if tensors is not None:
        _assign_weights(backbone, tensors, path)
    return backbone, tokenizer
