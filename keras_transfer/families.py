"""What the toolkit knows about each KerasHub backbone family.

A family is a backbone class together with the facts a task needs to use it:
whether it reads left to right (a decoder) or both ways (an encoder), which
pooling suits it, which special tokens wrap a text or a text pair, and whether
the backbone takes segment ids. Adding a family is one `Family(...)` entry.
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

    @property
    def kind(self):
        return "decoder" if self.decoder else "encoder"


FAMILIES = {
    family.backbone_class: family
    for family in [
        Family(
            "bert", "BertBackbone", False, "cls", True, "cls_token_id", "sep_token_id",
            pooler="pooled_dense",
        ),
        Family("gpt2", "GPT2Backbone", True, "last", False, "start_token_id", "end_token_id"),
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
