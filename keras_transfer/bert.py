"""BERT checkpoints with the GELU they were trained with.

KerasHub builds every `BertBackbone` with the tanh approximation of GELU,
which Google's original BERT used. Checkpoints trained with HuggingFace
`transformers` and `hidden_act: "gelu"` in their `config.json` (the
offline all-MiniLM-L6-v2 among them, and most BERTs on the Hub) were
trained with the exact, erf-based GELU, so KerasHub's converter gives a
slightly different model: on MiniLM the hidden states differ from HF's by
up to 0.016. The exact GELU is also the faster one on CPU (torch's tanh
form takes about 2.5 times as long).

`BertBackbone` is KerasHub's class with one more argument,
`intermediate_activation`: `"gelu_approximate"` (KerasHub's default) or
`"gelu"`. `kt.load_backbone` uses it for HuggingFace-format BERT
directories whose `hidden_act` is `"gelu"`; the choice is in the config,
so `save`, `save_to_preset`, `kt.load_model` and `kt.load_backbone` keep
it.
"""

import keras
import keras_hub

ACTIVATIONS = ("gelu_approximate", "gelu")


@keras.saving.register_keras_serializable(package="keras_transfer")
class BertBackbone(keras_hub.models.BertBackbone):
    """KerasHub's `BertBackbone`, with the feedforward GELU chosen.

    Args:
        intermediate_activation: `"gelu_approximate"` (the tanh form,
            KerasHub's choice and Google BERT's) or `"gelu"` (the exact
            erf form, HuggingFace's `hidden_act: "gelu"`). Defaults to
            `"gelu_approximate"`.
        *args, **kwargs: as for `keras_hub.models.BertBackbone`.
    """

    def __init__(self, *args, intermediate_activation="gelu_approximate", **kwargs):
        if intermediate_activation not in ACTIVATIONS:
            raise ValueError(
                f"Expected `intermediate_activation` to be one of {ACTIVATIONS}. "
                f"Received: intermediate_activation={intermediate_activation!r}"
            )
        super().__init__(*args, **kwargs)
        self.intermediate_activation = intermediate_activation
        if intermediate_activation == "gelu":
            exact = keras.activations.get("gelu")  # approximate=False
            for layer in self.transformer_layers:
                layer.activation = exact
                layer._feedforward_intermediate_dense.activation = exact

    def get_config(self):
        config = super().get_config()
        config["intermediate_activation"] = self.intermediate_activation
        return config


def hf_intermediate_activation(config):
    """`"gelu"` for a HuggingFace BERT config whose `hidden_act` is exact GELU, else None."""
    if config.get("model_type") != "bert":
        return None
    return "gelu" if config.get("hidden_act", "gelu") == "gelu" else None
