"""Layers that task heads are built from. All are Keras-serializable."""

import keras
import torch
from keras import ops

POOLING_MODES = ("cls", "pooled", "mean", "max", "last")


@keras.saving.register_keras_serializable(package="keras_transfer")
class Pooling(keras.layers.Layer):
    """Reduces a backbone's token features to one vector per example.

    Args:
        mode: one of
            - `"cls"`: the first token's features (BERT's `[CLS]`); with a
              padding mask, the first non-padding token's;
            - `"pooled"`: the backbone's own pooled output (BERT's tanh
              pooler); needs a backbone that returns `pooled_output`;
            - `"mean"`: the average over non-padding tokens;
            - `"max"`: the element-wise maximum over non-padding tokens;
            - `"last"`: the last non-padding token, the summary position of
              a decoder such as GPT-2 (padding may be on either side).
            Defaults to `"cls"`.

    Call arguments:
        features: `(batch, length, hidden)` features, or the dictionary a
            KerasHub backbone returns (`sequence_output`, `pooled_output`).
        padding_mask: `(batch, length)`, true for real tokens. Needed by
            `"mean"`, `"max"` and `"last"`.

    Output shape: `(batch, hidden)`.

    Example:
    ```python
    features = backbone(inputs)
    pooled = kt.layers.Pooling("mean")(features, inputs["padding_mask"])
    ```
    """

    def __init__(self, mode="cls", **kwargs):
        super().__init__(**kwargs)
        if mode not in POOLING_MODES:
            raise ValueError(
                f"Unknown pooling mode {mode!r}. Expected one of {POOLING_MODES}."
            )
        self.mode = mode
        self.supports_masking = False

    def _sequence(self, features):
        if isinstance(features, dict):
            return features["sequence_output"]
        return features

    def call(self, features, padding_mask=None):
        if self.mode == "pooled":
            if not isinstance(features, dict) or "pooled_output" not in features:
                raise ValueError(
                    "Pooling('pooled') needs a backbone that returns a "
                    "`pooled_output` (BERT-style encoders). Use 'cls', 'mean', "
                    "'max' or 'last' for this backbone."
                )
            return features["pooled_output"]
        x = self._sequence(features)  # (B, T, H)
        if self.mode == "cls" and padding_mask is None:
            return x[:, 0, :]
        if (
            isinstance(x, torch.Tensor)
            and isinstance(padding_mask, torch.Tensor)
            and x.dtype in _TORCH_POOLING_DTYPES
            and x.ndim == 3
            and padding_mask.ndim == 2
            and padding_mask.device == x.device
        ):
            return _torch_pooling(self.mode, x, padding_mask)
        if self.mode == "cls":
            # The first real token: position 0 unless padding is on the left.
            first = ops.argmax(ops.cast(padding_mask, "int32"), axis=1)
            return ops.take_along_axis(x, first[:, None, None], axis=1)[:, 0, :]
        if padding_mask is None:
            raise ValueError(
                f"Pooling({self.mode!r}) needs the padding mask: call it as "
                "`Pooling(mode)(features, inputs['padding_mask'])`."
            )
        mask = ops.cast(padding_mask, x.dtype)  # (B, T)
        if self.mode == "mean":
            total = ops.sum(x * mask[:, :, None], axis=1)  # (B, H)
            count = ops.maximum(ops.sum(mask, axis=1, keepdims=True), 1.0)
            return total / count
        if self.mode == "max":
            lowest = ops.cast(-1e9, x.dtype) if x.dtype != "float16" else -6e4
            return ops.max(ops.where(mask[:, :, None] > 0, x, lowest), axis=1)
        # "last": the highest position holding a real token, whichever side
        # the padding is on.
        positions = ops.arange(ops.shape(x)[1], dtype="int32")[None, :]
        last = ops.max(ops.where(padding_mask, positions, 0), axis=1)
        return ops.take_along_axis(x, last[:, None, None], axis=1)[:, 0, :]

    def compute_output_shape(self, features_shape, padding_mask_shape=None):
        if isinstance(features_shape, dict):
            key = "pooled_output" if self.mode == "pooled" else "sequence_output"
            shape = features_shape[key]
            return shape if self.mode == "pooled" else (shape[0], shape[-1])
        return (features_shape[0], features_shape[-1])

    def get_config(self):
        config = super().get_config()
        config["mode"] = self.mode
        return config


# Float dtypes whose `keras.ops` arithmetic below is the plain torch call
# (Keras' `sum` casts nothing for them).
_TORCH_POOLING_DTYPES = (torch.float32, torch.bfloat16, torch.float64)


def _torch_pooling(mode, x, padding_mask):
    """`Pooling.call`'s `keras.ops` arithmetic as the torch calls those ops
    make on the torch backend: the same values and gradients, without the
    ops' conversions and checks (0.1-0.25 ms of a step's host time, against
    HF's one indexing op). `mode` is not "pooled"; `padding_mask` is given."""
    if mode == "cls":
        # ops.argmax(ops.cast(mask, "int32"), axis=1), then take_along_axis
        # (whose fix-up of negative indices has none to fix here).
        first = torch.argmax(_cast(padding_mask, torch.int32), dim=1)
        return torch.take_along_dim(x, first[:, None, None].long(), dim=1)[:, 0, :]
    if mode == "last":
        positions = torch.arange(x.shape[1], dtype=torch.int32, device=x.device)[None, :]
        zero = torch.zeros((), dtype=torch.int32, device=x.device)
        last = torch.amax(torch.where(_cast(padding_mask, torch.bool), positions, zero), dim=1)
        return torch.take_along_dim(x, last[:, None, None].long(), dim=1)[:, 0, :]
    mask = _cast(padding_mask, x.dtype)  # (B, T)
    if mode == "mean":
        total = torch.sum(x * mask[:, :, None], dim=1)
        one = torch.ones((), dtype=x.dtype, device=x.device)
        return total / torch.maximum(torch.sum(mask, dim=1, keepdim=True), one)
    lowest = torch.full((), -1e9, dtype=x.dtype, device=x.device)  # "max"
    return torch.amax(torch.where(mask[:, :, None] > 0, x, lowest), dim=1)


def _cast(x, dtype):
    """`ops.cast`: `x` itself when it has `dtype` already."""
    return x if x.dtype == dtype else x.to(dtype)
