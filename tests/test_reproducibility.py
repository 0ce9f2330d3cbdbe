"""The same seed gives the same run: data order, initial head weights,
dropout, metrics and final weights.

The documented recipe: `keras.utils.set_random_seed(s)` before building
the model (initial weights, dropout), and `fit(..., seed=s)` (the order
of the batches, a pure function of `(seed, epoch)`).
"""

import keras
import numpy as np
import pytest

import keras_transfer as kt
from helpers import LABELS, TEXTS, raises

TEXTS_20 = TEXTS * 2
LABELS_20 = LABELS * 2


def _run(preset, seed, freeze=True, fit_seed=None):
    keras.utils.set_random_seed(seed)
    model = kt.TextClassifier.from_preset(preset, num_classes=2, sequence_length=16, freeze=freeze, hidden_units=(8,))
    initial = [v.numpy().copy() for v in model.trainable_variables]
    order = []
    original = kt.TextBatches.set_epoch

    def spy(self, epoch):  # records the batches every epoch is served
        original(self, epoch)
        order.append([tuple(rows) for rows in self._batches])

    kt.TextBatches.set_epoch = spy
    try:
        history = model.fit(TEXTS_20, LABELS_20, batch_size=4, epochs=2, seed=seed if fit_seed is None else fit_seed, verbose=0)
    finally:
        kt.TextBatches.set_epoch = original
    final = [v.numpy() for v in model.trainable_variables]
    return initial, order, history.history, final


@pytest.mark.parametrize("freeze", [True, False], ids=["cached-features", "fine-tuning"])
def test_same_seed_same_run(bert_preset, freeze):
    a = _run(bert_preset, 3, freeze)
    b = _run(bert_preset, 3, freeze)
    for x, y in zip(a[0], b[0]):
        np.testing.assert_array_equal(x, y)  # initial weights, head included
    assert a[1] == b[1] and len(a[1]) >= 2  # the same batches in the same order
    assert a[2] == b[2]  # the same losses and metrics, every epoch
    for x, y in zip(a[3], b[3]):
        np.testing.assert_array_equal(x, y)
    # And the test can fail: another seed changes all of it.
    c = _run(bert_preset, 4, freeze)
    assert c[1] != a[1]
    assert any(not np.array_equal(x, y) for x, y in zip(c[0], a[0]))
    assert c[2] != a[2]


WORDS = [text.split() for text in TEXTS_20]
TASKS = {
    "pairs": (
        lambda preset: kt.TextPairClassifier.from_preset(preset, num_classes=2, sequence_length=32, freeze=False),
        lambda: (list(zip(TEXTS_20, TEXTS_20[::-1])), LABELS_20),
    ),
    "multi-label": (
        lambda preset: kt.MultiLabelClassifier.from_preset(preset, label_names=["a", "b"], sequence_length=16, freeze=False),
        lambda: (TEXTS_20, np.array([[label, 1 - label] for label in LABELS_20], "float32")),
    ),
    "regression": (
        lambda preset: kt.TextRegressor.from_preset(preset, sequence_length=16, freeze=False),
        lambda: (TEXTS_20, np.arange(len(TEXTS_20), dtype="float32")),
    ),
    "tagging": (
        lambda preset: kt.TokenClassifier.from_preset(preset, tag_names=["O", "B-X"], sequence_length=16, freeze=False),
        lambda: (WORDS, [["B-X" if len(w) > 3 else "O" for w in words] for words in WORDS]),
    ),
}


@pytest.mark.parametrize("task", sorted(TASKS))
def test_every_task_repeats_its_run_under_keras_random_seed(bert_preset, task):
    # `keras.utils.set_random_seed` alone (no `seed=` to fit) fixes every
    # task's run: its shuffles draw their seeds from NumPy's generator.
    build, data = TASKS[task]

    def run(seed):
        keras.utils.set_random_seed(seed)
        model = build(bert_preset)
        history = model.fit(*data(), batch_size=4, epochs=2, verbose=0)
        return history.history["loss"], [v.numpy().copy() for v in model.trainable_variables]

    losses, weights = run(5)
    again_losses, again_weights = run(5)
    assert again_losses == losses
    for a, b in zip(weights, again_weights):
        np.testing.assert_array_equal(a, b)
    assert run(6)[0] != losses  # and another seed changes the run


def test_fit_seed_alone_fixes_the_data_order(bert_preset):
    """Without set_random_seed in between, `seed=` still fixes the batches."""
    a = _run(bert_preset, 3, fit_seed=11)
    keras.utils.set_random_seed(99)
    b = _run(bert_preset, 5, fit_seed=11)
    assert a[1] == b[1]


def test_cached_features_train_on_the_same_batches_as_text(bert_preset):
    """With the head's dropout off, training on cached features and on the
    texts is the same computation, batch for batch."""
    results = []
    for cache in (True, False):
        keras.utils.set_random_seed(0)
        model = kt.TextClassifier.from_preset(bert_preset, num_classes=2, sequence_length=16, dropout=0.0)
        model.fit(TEXTS_20, LABELS_20, batch_size=4, epochs=2, seed=1, verbose=0, cache_features=cache)
        results.append([v.numpy() for v in model.trainable_variables])
    for x, y in zip(*results):
        np.testing.assert_allclose(x, y, rtol=1e-4, atol=1e-6)


def test_batch_order_is_a_pure_function_of_seed_and_epoch(bert_preset):
    _, preprocessor = kt.load_backbone(bert_preset, sequence_length=16)

    def plan(batches):
        return [tuple(rows) for rows in batches._batches]

    walked = kt.TextBatches(preprocessor, TEXTS_20, LABELS_20, batch_size=4, shuffle=True, bucketing=True, seed=5)
    orders = [plan(walked)]
    for _ in range(3):
        walked.on_epoch_end()
        orders.append(plan(walked))
    assert len(set(map(tuple, orders))) == 4  # every epoch differs
    jumped = kt.TextBatches(preprocessor, TEXTS_20, LABELS_20, batch_size=4, shuffle=True, bucketing=True, seed=5)
    jumped.set_epoch(3)
    assert plan(jumped) == orders[3]
    jumped.set_epoch(1)
    assert plan(jumped) == orders[1]
    other = kt.TextBatches(preprocessor, TEXTS_20, LABELS_20, batch_size=4, shuffle=True, bucketing=True, seed=6)
    assert plan(other) != orders[0]
    # `seed=None` draws from NumPy's global generator: set_random_seed fixes it.
    keras.utils.set_random_seed(1)
    first = plan(kt.TextBatches(preprocessor, TEXTS_20, batch_size=4, shuffle=True))
    keras.utils.set_random_seed(1)
    assert plan(kt.TextBatches(preprocessor, TEXTS_20, batch_size=4, shuffle=True)) == first


@pytest.mark.parametrize("seed", [-1, 1.5, "0", True])
def test_bad_seed(bert_preset, seed):
    _, preprocessor = kt.load_backbone(bert_preset, sequence_length=16)
    with raises(ValueError, "seed", repr(seed)):
        kt.TextBatches(preprocessor, TEXTS, shuffle=True, seed=seed)
