"""What `fine_tune` and `find_learning_rate` must leave as the user set it.

`fine_tune` compiles each of its two stages again (for the stage's rate and
schedule): the loss, metrics and weight decay the user compiled with must
survive both stages, a save and `kt.load_model`. The learning-rate sweep
must leave the random state (torch's generator, the dropout layers' Keras
`SeedGenerator`s) as it found it, so that a `fit` after it is the `fit`
without it, bit for bit."""

import keras
import numpy as np
import pytest
from helpers import LABELS, TEXTS

import keras_transfer as kt
from keras_transfer import freezing

SEQUENCE_LENGTH = 16


def classifier(preset, freeze=True, seed=0, **kwargs):
    keras.utils.set_random_seed(seed)
    return kt.TextClassifier.from_preset(
        preset, num_classes=2, freeze=freeze, sequence_length=SEQUENCE_LENGTH, **kwargs
    )


def user_loss():
    return keras.losses.SparseCategoricalCrossentropy(from_logits=True, ignore_class=7, name="my_loss")


class StageRecorder(keras.callbacks.Callback):
    """What each stage's `fit` trains with: its loss and its weight decay."""

    def __init__(self):
        super().__init__()
        self.stages = []

    def on_train_begin(self, logs=None):
        optimizer = getattr(self.model.optimizer, "inner_optimizer", None) or self.model.optimizer
        self.stages.append(
            {
                "loss": self.model.loss.get_config(),
                "weight_decay": optimizer.weight_decay,
                "accumulation": optimizer.gradient_accumulation_steps,
            }
        )


def assert_users_loss(config):
    assert config["ignore_class"] == 7 and config["name"] == "my_loss"


def test_fine_tune_keeps_the_users_loss_metrics_and_weight_decay(bert_preset):
    model = classifier(bert_preset)
    model.compile(
        loss=user_loss(),
        metrics=[keras.metrics.SparseTopKCategoricalAccuracy(k=1, name="top1")],
        weight_decay=0.05,
        gradient_accumulation_steps=2,
    )
    recorder = StageRecorder()
    history = model.fine_tune(
        TEXTS, LABELS, validation_data=(TEXTS[:4], LABELS[:4]), head_epochs=1, epochs=1,
        batch_size=2, verbose=0, callbacks=[recorder],
    )
    assert len(recorder.stages) == 2  # stage 1 on cached features, stage 2 unfrozen
    for stage in recorder.stages:
        assert_users_loss(stage["loss"])
        assert stage["weight_decay"] == pytest.approx(0.05)
        assert stage["accumulation"] == 2
    # The user's metric in both stages, not the default "accuracy".
    assert history.history["stage"] == [1, 2]
    assert np.all(np.isfinite(history.history["top1"])) and np.all(np.isfinite(history.history["val_top1"]))
    assert "accuracy" not in history.history
    assert_users_loss(model.loss.get_config())
    # The stage rates are still fine_tune's: the default fine-tuning rate of stage 2.
    assert float(model.optimizer._learning_rate.peak_learning_rate) == pytest.approx(5e-5)


def test_fine_tune_keeps_them_through_save_and_load_model(bert_preset, tmp_path):
    model = classifier(bert_preset)
    model.compile(loss=user_loss(), metrics=[keras.metrics.SparseTopKCategoricalAccuracy(k=1, name="top1")],
                  weight_decay=0.05)
    model.fine_tune(TEXTS, LABELS, head_epochs=1, epochs=1, batch_size=5, verbose=0)
    path = str(tmp_path / "tuned.keras")
    model.save(path)
    reloaded = kt.load_model(path)
    assert_users_loss(reloaded.loss.get_config())
    assert reloaded.optimizer.weight_decay == pytest.approx(0.05)
    assert set(reloaded.evaluate(TEXTS, LABELS, batch_size=5, verbose=0, return_dict=True)) == {"loss", "top1"}
    # Fine-tuned again after the reload (its optimizer now a restored AdamW):
    # the same loss, metric and weight decay.
    recorder = StageRecorder()
    history = reloaded.fine_tune(TEXTS, LABELS, head_epochs=1, epochs=1, batch_size=5, verbose=0,
                                 callbacks=[recorder])
    assert "top1" in history.history and "accuracy" not in history.history
    for stage in recorder.stages:
        assert_users_loss(stage["loss"])
        assert stage["weight_decay"] == pytest.approx(0.05)


def test_fine_tune_takes_the_weight_decay_of_the_users_adamw(bert_preset):
    model = classifier(bert_preset)
    model.compile(optimizer=keras.optimizers.AdamW(1e-3, weight_decay=0.2), loss=user_loss())
    recorder = StageRecorder()
    model.fine_tune(TEXTS, LABELS, head_epochs=1, epochs=1, batch_size=5, verbose=0, callbacks=[recorder])
    assert [stage["weight_decay"] for stage in recorder.stages] == pytest.approx([0.2, 0.2])
    for stage in recorder.stages:
        assert_users_loss(stage["loss"])


def test_fine_tune_of_a_model_with_the_defaults_is_unchanged(bert_preset):
    """The two stages by hand, as `fine_tune` ran them before it kept the
    user's compile: the same weights, bit for bit."""
    tuned = classifier(bert_preset)
    tuned.fine_tune(TEXTS, LABELS, head_epochs=1, epochs=1, batch_size=5, seed=3, verbose=0)
    by_hand = classifier(bert_preset)
    freezing.freeze(by_hand)
    by_hand.compile()
    by_hand.fit(TEXTS, LABELS, epochs=1, batch_size=5, seed=3, verbose=0)
    freezing.unfreeze(by_hand)
    by_hand.compile(layer_decay=None)
    by_hand.fit(TEXTS, LABELS, epochs=1, batch_size=5, seed=3, verbose=0)
    assert tuned.optimizer.weight_decay == pytest.approx(0.01)
    assert tuned.loss.get_config() == by_hand.loss.get_config()
    for a, b in zip(tuned.weights, by_hand.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=a.path)


# ------------------------------------------------------------ the LR finder


def seed_dropouts(model):
    """Makes every dropout layer draw its masks from its Keras `SeedGenerator`,
    as `Dropout(seed=...)` does (an unseeded one uses torch's global
    generator instead): the generator's state variable, not a weight,
    advances on each call."""
    seeded = 0
    for layer in model._flatten_layers(include_self=False, recursive=True):
        if isinstance(layer, keras.layers.Dropout) and layer.rate > 0:
            layer.seed_generator._initial_seed = 11
            seeded += 1
    assert seeded


@pytest.mark.parametrize("freeze", [True, False])
@pytest.mark.parametrize("seeded_dropout", [False, True])
def test_find_learning_rate_then_fit_is_fit_alone(bert_preset, freeze, seeded_dropout):
    def train(sweep):
        model = classifier(bert_preset, freeze=freeze, dropout=0.3)
        if seeded_dropout:
            seed_dropouts(model)
        if sweep:
            model.find_learning_rate(TEXTS, LABELS, min_lr=1e-5, max_lr=1.0, steps=6, batch_size=2)
        model.fit(TEXTS, LABELS, epochs=2, batch_size=5, seed=1, verbose=0)
        return {v.path: v.numpy() for v in model.weights}

    alone, after_sweep = train(False), train(True)
    assert alone.keys() == after_sweep.keys()
    for path in alone:
        np.testing.assert_array_equal(alone[path], after_sweep[path], err_msg=path)
