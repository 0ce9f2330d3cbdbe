"""Metrics checked against independent computations: the cases an audit of
the scores found wrong (each test fails without its fix)."""

import threading

import numpy as np
import pytest
import torch

import keras_transfer as kt
from keras_transfer import distributed

from helpers import raises


def test_confusion_matrix_refuses_negative_class_ids_given_as_floats():
    # Labels read as floats ("-1" marking an unlabelled row) were taken as
    # ids without the sign check: NumPy's indexing counted -1 as the last
    # class, so the matrix and every score from it were silently wrong.
    with raises(ValueError, "must be >= 0", "-1"):
        kt.metrics.confusion_matrix([0.0, 1.0, -1.0], [0, 1, 1])
    with raises(ValueError, "must be >= 0"):
        kt.metrics.confusion_matrix([0, 1, 1], np.array([0.0, -1.0, 1.0]))
    # Whole floats are still class ids.
    assert kt.metrics.confusion_matrix([0.0, 1.0, 1.0], [0, 1, 1]).tolist() == [[1, 0], [0, 2]]


class _ThreadProcessGroup:
    """`dist.all_reduce` for processes played by threads: sums in place."""

    def __init__(self, size):
        self.size = size
        self.barrier = threading.Barrier(size)
        self.slots = [None] * size
        self.local = threading.local()

    def all_reduce(self, tensor, *args, **kwargs):
        self.slots[self.local.rank] = tensor.clone()
        self.barrier.wait()
        total = sum(self.slots[1:], self.slots[0].clone())
        self.barrier.wait()
        tensor.copy_(total)


def _reduce_in_threads(monkeypatch, metrics):
    group = _ThreadProcessGroup(len(metrics))
    monkeypatch.setattr(distributed, "is_distributed", lambda: True)
    monkeypatch.setattr(distributed, "_device", lambda: torch.device("cpu"))
    monkeypatch.setattr(distributed.dist, "all_reduce", group.all_reduce)
    errors = []

    def run(rank, metric):
        group.local.rank = rank
        try:
            distributed.reduce_metrics([metric])
        except BaseException as error:  # reported below, not lost in the thread
            errors.append(error)
            group.barrier.abort()

    threads = [threading.Thread(target=run, args=(r, m)) for r, m in enumerate(metrics)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors, errors


def test_pearson_metric_summed_over_processes_is_the_whole_set_correlation(monkeypatch):
    # Under torchrun `reduce_metrics` sums every metric variable over the
    # processes. Pearson's sums are shifted by each process's first-batch
    # mean, so summed as they were they mixed different shifts: 0.81
    # instead of 0.90 here, where the two shares' means differ.
    rng = np.random.default_rng(0)
    y = rng.normal(5, 2, 40)
    p = y + rng.normal(0, 1, 40)
    y[20:] += 3
    p[20:] += 3
    weights = rng.random(40)
    shares = [
        kt.metrics.PearsonCorrelation(),
        kt.metrics.PearsonCorrelation(),
        kt.metrics.PearsonCorrelation(),
    ]
    shares[0].update_state(y[:8], p[:8], sample_weight=weights[:8])
    shares[0].update_state(y[8:20], p[8:20], sample_weight=weights[8:20])
    shares[1].update_state(y[20:], p[20:], sample_weight=weights[20:])
    shares[2].update_state(y[:2], p[:2], sample_weight=np.zeros(2))  # a share that counts for nothing
    _reduce_in_threads(monkeypatch, shares)

    def weighted_correlation(x, z, w):
        x, z = x - np.average(x, weights=w), z - np.average(z, weights=w)
        return (w * x * z).sum() / np.sqrt((w * x * x).sum() * (w * z * z).sum())

    expected = weighted_correlation(y, p, weights)
    for metric in shares:  # every process reports the same, whole-set value
        assert float(metric.result()) == pytest.approx(expected, abs=1e-5)


def test_reduce_metrics_reaches_the_pearson_metric_of_a_compiled_model(bert_preset):
    # `reduce_metrics` gets the model's `metrics`: the loss tracker and
    # Keras' container of the compiled ones, inside which Pearson sits.
    model = kt.TextRegressor.from_preset(bert_preset, sequence_length=16, standardize=False)
    model.evaluate(["good film", "bad plot"], [1.0, 0.0], verbose=0)
    found = [m for m in distributed._every_metric(model.metrics) if isinstance(m, kt.metrics.PearsonCorrelation)]
    assert len(found) == 1
