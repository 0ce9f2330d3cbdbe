"""`kt.callbacks.GradualUnfreezing` with what it finds when `fit` begins:
blocks that already train (it never freezes them) and a learning rate that
`compile()` chose for a frozen backbone (it warns). On the tiny 2-block
BERT preset; the resumed runs are in test_resume.py, the stages themselves
in test_strategies.py."""

import warnings

import keras
import pytest
from helpers import LABELS, TEXTS, changed, raises, snapshot

import keras_transfer as kt
from keras_transfer import freezing

SEQUENCE_LENGTH = 16


def classifier(preset, freeze=True, **kwargs):
    keras.utils.set_random_seed(0)
    return kt.TextClassifier.from_preset(
        preset, num_classes=2, freeze=freeze, sequence_length=SEQUENCE_LENGTH, **kwargs
    )


def fit(model, epochs=2, **kwargs):
    """Fits with `GradualUnfreezing(**kwargs)`; returns the history and the
    messages of the UserWarnings raised."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        history = model.fit(
            TEXTS, LABELS, batch_size=5, epochs=epochs, verbose=0,
            callbacks=[kt.callbacks.GradualUnfreezing(verbose=0, **kwargs)],
        )
    return history, [str(w.message) for w in caught if w.category is UserWarning]


def rate_warnings(messages):
    return [m for m in messages if "chose for a frozen backbone" in m]


# ------------------------------------------------- the rate chosen for the head


@pytest.mark.parametrize(
    "compile_model",
    [lambda model: None, lambda model: model.compile(), lambda model: model.compile(layer_decay=0.8)],
    ids=["from_preset", "compile", "compile_layer_decay"],
)
def test_warns_once_when_blocks_train_at_the_rate_chosen_for_a_frozen_backbone(bert_preset, compile_model):
    """`fit` refuses a backbone unfrozen after `compile()` chose the head's
    rate; the callback unfreezes during `fit`, so it warns, once."""
    model = classifier(bert_preset)
    compile_model(model)
    history, messages = fit(model, epochs=3)
    assert history.history["unfrozen_blocks"] == [0, 1, 2]  # two unfreezing steps
    found = rate_warnings(messages)
    assert len(found) == 1, messages
    for fragment in ("GradualUnfreezing", "(0.003, for the head alone)", "model.compile(learning_rate=1e-4"):
        assert fragment in found[0]


def test_no_warning_at_a_rate_chosen_for_fine_tuning(bert_preset):
    model = classifier(bert_preset, compile=False)
    model.compile(learning_rate=1e-4)
    history, messages = fit(model)
    assert history.history["unfrozen_blocks"] == [0, 1]
    assert not rate_warnings(messages)


# ------------------------------------------------ blocks that already train


@pytest.mark.parametrize("freeze", [2, False])
def test_max_blocks_below_what_already_trains_is_refused(bert_preset, freeze):
    """`max_blocks=1` with both blocks training: it would have to freeze
    one. It refuses before any step, and the model keeps training both."""
    model = classifier(bert_preset, freeze=freeze, compile=False)
    model.compile(learning_rate=1e-4)
    with raises(ValueError, "max_blocks=1", "top 2 of 2 already train", "never freezes", "max_blocks=2"):
        fit(model, max_blocks=1)
    assert all(block.trainable for block in freezing.blocks(model.backbone))
    assert model.optimizer.iterations.numpy() == 0


def test_max_blocks_counts_the_blocks_already_training(bert_preset):
    model = classifier(bert_preset, freeze=1, compile=False)
    model.compile(learning_rate=1e-4)
    history, _ = fit(model, epochs=3, max_blocks=2)
    assert history.history["unfrozen_blocks"] == [1, 2, 2]


def test_embeddings_that_train_keep_training(bert_preset):
    """Top block and embeddings train; the next stage adds block 0 and
    leaves the embeddings training (unfreeze(top=2) alone would freeze them)."""
    model = classifier(bert_preset, compile=False)
    kt.unfreeze(model, top=1, embeddings=True)
    model.compile(learning_rate=1e-4)
    below, stack, _ = freezing._regions(model.backbone)
    embeddings = {v.path for layer in below for v in layer.weights}
    before = snapshot(model)
    history, _ = fit(model)
    assert history.history["unfrozen_blocks"] == [1, 2]
    assert all(layer.trainable for layer in below) and all(block.trainable for block in stack)
    assert embeddings <= changed(before, model)
    assert freezing.describe(model.backbone) == "embeddings train, blocks 0-1 of 0-1 train"


def test_verbose_says_how_many_parameters_start_training(bert_preset, capsys):
    model = classifier(bert_preset, compile=False)
    model.compile(learning_rate=1e-4)
    before = kt.count_params(model)[0]
    model.fit(TEXTS, LABELS, batch_size=5, epochs=2, verbose=0,
              callbacks=[kt.callbacks.GradualUnfreezing(every=1, verbose=1)])
    added = kt.count_params(model)[0] - before
    out = capsys.readouterr().out
    assert f"GradualUnfreezing: the top 1 of 2 blocks now train ({added:,} more parameters)." in out
