"""What the toolkit knows about each KerasHub backbone family.

A family is a backbone class together with the facts a task needs to use it:
whether it reads left to right (a decoder) or both ways (an encoder), which
pooling suits it, which special tokens wrap a text or a text pair, whether
the backbone takes segment ids, and on which side padding goes. Adding a
family is one `Family(...)` entry.
"""

import dataclasses

import keras_hub


@dataclasses.dataclass(frozen=True)
class Family:
    """Facts about one KerasHub backbone family.

    Args:
        name: the family's short name, as KerasHub presets spell it.
        backbone_class: name of the KerasHub backbone class.
        decoder: True for causal (left-to-right) models.
        default_pooling: pooling used when a task is not told one.
        segment_ids: whether the backbone takes a `segment_ids` input.
        start: name of the tokenizer attribute holding the start token id
            (for example `"cls_token_id"`), or None for no start token.
        sep: the attribute holding the separator (and end) token id.
        pair_sep_repeat: how many separators sit between the two texts of a
            pair (RoBERTa-style models use two).
        pooler: name of the backbone's own pooler layer, if any: it only
            trains when a head reads the `"pooled"` output.
        padding_side: `"right"` (pads after the text) or `"left"` (pads
            before it, so the last position is always the last real token;
            XLNet-style models expect this).
        pad: the tokenizer attribute holding the padding token id, or None
            for tokenizers that have no padding token (most decoders): their
            padding positions get id 0, which the padding mask hides.
        end: the attribute holding a token placed after the last separator,
            or None (XLNet ends every text with `<cls>`: `a <sep> <cls>`).
        end_segment_id: the segment id of that `end` token (XLNet: 2).
    """

    name: str
    backbone_class: str
    decoder: bool
    default_pooling: str
    segment_ids: bool
    start: str | None
    sep: str
    pair_sep_repeat: int = 1
    pooler: str | None = None
    padding_side: str = "right"
    pad: str | None = "pad_token_id"
    end: str | None = None
    end_segment_id: int = 0

    def __post_init__(self):
        if self.padding_side not in ("right", "left"):
            raise ValueError(
                f"Family {self.name!r}: `padding_side` must be 'right' or "
                f"'left'. Received: padding_side={self.padding_side!r}"
            )

    @property
    def kind(self):
        return "decoder" if self.decoder else "encoder"


FAMILIES = {
    family.backbone_class: family
    for family in [
        # Encoders: `[CLS] a [SEP] b [SEP]`, or RoBERTa's `<s> a </s></s> b </s>`,
        # exactly as KerasHub's own text classifier preprocessors pack them.
        Family(
            "bert", "BertBackbone", False, "cls", True, "cls_token_id", "sep_token_id",
            pooler="pooled_dense",
        ),
        Family(
            "distil_bert", "DistilBertBackbone", False, "cls", False,
            "cls_token_id", "sep_token_id",
        ),
        Family(
            "roberta", "RobertaBackbone", False, "cls", False,
            "start_token_id", "end_token_id", pair_sep_repeat=2,
        ),
        Family(
            "xlm_roberta", "XLMRobertaBackbone", False, "cls", False,
            "start_token_id", "end_token_id", pair_sep_repeat=2,
        ),
        Family(
            "albert", "AlbertBackbone", False, "cls", True, "cls_token_id", "sep_token_id",
            pooler="pooled_dense",
        ),
        Family(
            "deberta_v3", "DebertaV3Backbone", False, "cls", False,
            "cls_token_id", "sep_token_id",
        ),
        Family(
            "electra", "ElectraBackbone", False, "cls", True, "cls_token_id", "sep_token_id",
            pooler="pooled_dense",
        ),
        # Decoders: `<start> a <end>` and `<start> a <end> b <end>` (no start
        # token where the tokenizer has none), read at the last real token.
        # Their tokenizers have no padding token: padding gets id 0 and is
        # hidden by the padding mask.
        Family("gpt2", "GPT2Backbone", True, "last", False, "start_token_id", "end_token_id"),
        Family("qwen", "QwenBackbone", True, "last", False, None, "end_token_id"),
        Family("llama", "LlamaBackbone", True, "last", False, "start_token_id", "end_token_id"),
        Family("llama3", "Llama3Backbone", True, "last", False, "start_token_id", "end_token_id"),
        Family(
            "mistral", "MistralBackbone", True, "last", False, "start_token_id", "end_token_id",
        ),
        Family("gemma", "GemmaBackbone", True, "last", False, "start_token_id", "end_token_id"),
        # XLNet: `a <sep> <cls>` / `a <sep> b <sep> <cls>`, segments 0, 1 and 2
        # for `<cls>`, padded on the left and read at `<cls>`, as HF does.
        Family(
            "xlnet", "XLNetBackbone", False, "last", True, None, "sep_token_id",
            padding_side="left", end="cls_token_id", end_segment_id=2,
        ),
    ]
}


def family_of(backbone):
    """Returns the `Family` of a backbone instance, class or class name.

    Raises a `ValueError` listing the supported families when the backbone
    belongs to none of them.
    """
    if isinstance(backbone, str):
        names = [backbone]
    else:
        cls = backbone if isinstance(backbone, type) else type(backbone)
        names = [klass.__name__ for klass in cls.__mro__]
    for name in names:
        if name in FAMILIES:
            return FAMILIES[name]
    supported = ", ".join(f"{f.name} ({f.backbone_class})" for f in FAMILIES.values())
    raise ValueError(
        f"keras_transfer does not support backbones of class {names[0]} yet. "
        f"Supported families: {supported}."
    )


def backbone_class(family):
    """The KerasHub class object for a `Family`."""
    return getattr(keras_hub.models, family.backbone_class)
