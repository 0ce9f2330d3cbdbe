"""Data-parallel training under torchrun (`kt.distributed`).

The multi-process tests launch two CPU processes with gloo on this machine
(`python -m torch.distributed.run --nproc_per_node=2`), train a tiny BERT
from a local preset, and compare with one process trained on the same
global batches, run inside the test with the same code.
"""

import json
import os
import re
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
from helpers import BERT_VOCAB, raises

import keras_transfer as kt
from keras_transfer import distributed

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# One process of a run. `run` is also executed in the test process for the
# single-process reference, so both sides run exactly the same code.
WORKER = r'''
import json
import os
import signal
import sys

import keras_transfer as kt
import keras
import numpy as np

# 9 texts in batches of 4: the last global batch has 1 row, so with two
# processes one of them gets an empty share of it.
TEXTS = [
    "good film", "awful film", "a great movie , really great !", "bad plot",
    "loved it", "boring acting , very boring", "fun", "the worst film ever",
    "a good story and good acting",
]
LABELS = [1, 0, 1, 0, 1, 0, 1, 0, 1]


def weights(model):
    return {v.path.replace("/", "|"): np.asarray(v.numpy()) for v in model.weights}


def run(preset, out, tag):
    rank = kt.distributed.rank()
    results = {"rank": rank, "world_size": kt.distributed.world_size()}
    # Fine-tuning everything on the token batches (no caching), shuffled.
    keras.utils.set_random_seed(rank)  # different per rank: fit syncs from rank 0
    model = kt.TextClassifier.from_preset(preset, num_classes=2, freeze=False, dropout=0.0, sequence_length=16)
    model.compile(learning_rate=1e-2)
    before = [v.numpy().copy() for v in model.backbone.trainable_weights]
    history = model.fit(
        TEXTS, LABELS, batch_size=4, epochs=2, seed=3,
        validation_data=(TEXTS, LABELS), cache_features=False, verbose=2,
    )
    results["backbone_weights_changed"] = sum(
        not np.allclose(a, v.numpy()) for a, v in zip(before, model.backbone.trainable_weights)
    )
    np.savez(os.path.join(out, f"{tag}_full_rank{rank}.npz"), **weights(model))
    results["full_history"] = history.history
    results["full_evaluate"] = model.evaluate(TEXTS, LABELS, batch_size=4, return_dict=True, verbose=0)
    model.save(os.path.join(out, f"{tag}_full.keras"))  # every process calls it; rank 0 writes
    if kt.distributed.is_main_process():  # the torch idiom must not hang either
        model.save_weights(os.path.join(out, f"{tag}_full.weights.h5"))
    kt.distributed.barrier()
    results["saved_files_there_after_barrier"] = all(
        os.path.exists(os.path.join(out, f"{tag}_full{suffix}")) for suffix in (".keras", ".weights.h5")
    )
    # A frozen backbone: features cached (sharded), the head data-parallel.
    feature_rows, subset = [], kt.distributed._text_subset
    kt.distributed._text_subset = lambda batches, rows: feature_rows.append(len(rows)) or subset(batches, rows)
    keras.utils.set_random_seed(0)
    model = kt.TextClassifier.from_preset(preset, num_classes=2, freeze=True, dropout=0.0, sequence_length=16)
    model.compile(learning_rate=1e-1)
    history = model.fit(
        TEXTS, LABELS, batch_size=4, epochs=3, seed=5,
        validation_data=(TEXTS, LABELS), cache_features=True, verbose=2,
    )
    np.savez(os.path.join(out, f"{tag}_cached_rank{rank}.npz"), **weights(model))
    results["cached_history"] = history.history
    results["feature_rows"] = feature_rows
    kt.distributed._text_subset = subset
    with open(os.path.join(out, f"{tag}_rank{rank}.json"), "w") as f:
        json.dump(results, f)


def run_and_die(preset):
    """Rank 1 kills itself mid-training; the launch must fail, not hang."""
    import time

    def die(batch, logs):
        if kt.distributed.rank() == 1 and batch == 2:
            os.kill(os.getpid(), signal.SIGKILL)

    model = kt.TextClassifier.from_preset(preset, num_classes=2, freeze=False, dropout=0.0, sequence_length=16)
    print(f"DYING RUN STARTS AT {time.time()}", flush=True)
    model.fit(
        TEXTS * 8, LABELS * 8, batch_size=4, epochs=100, verbose=0,
        callbacks=[keras.callbacks.LambdaCallback(on_train_batch_end=die)],
    )
    print("TRAINING FINISHED")


def stall():
    """Rank 1 hangs, alive and silent: rank 0 must give up after the timeout."""
    import time

    kt.distributed.initialize()
    if kt.distributed.rank() == 1:
        time.sleep(300)
    started = time.monotonic()
    try:
        kt.distributed.barrier()
    finally:
        print(f"rank {kt.distributed.rank()} waited {time.monotonic() - started:.1f} s", flush=True)


if __name__ == "__main__":
    preset, out, mode = sys.argv[1:4]
    if mode == "stall":
        stall()
    else:
        run(preset, out, "ddp")
        # Then, in the same launch (one start-up less), rank 1 dies.
        run_and_die(preset)
'''


@pytest.fixture(scope="module")
def dropout_free_preset(tmp_path_factory):
    """A tiny BERT preset with no dropout, so that runs can match exactly."""
    import keras
    import keras_hub

    from helpers import HIDDEN_DIM, MAX_SEQUENCE_LENGTH, NUM_LAYERS

    keras.utils.set_random_seed(7)
    path = str(tmp_path_factory.mktemp("tiny_bert_no_dropout"))
    backbone = keras_hub.models.BertBackbone(
        vocabulary_size=len(BERT_VOCAB),
        num_layers=NUM_LAYERS,
        num_heads=2,
        hidden_dim=HIDDEN_DIM,
        intermediate_dim=32,
        max_sequence_length=MAX_SEQUENCE_LENGTH,
        dropout=0.0,
    )
    backbone.save_to_preset(path)
    keras_hub.models.BertTokenizer(vocabulary=BERT_VOCAB, lowercase=True).save_to_preset(path)
    return path


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _launch(tmp_path, preset, mode, timeout, env=None):
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    environment = dict(os.environ)
    environment.update(
        {
            "KERAS_BACKEND": "torch",
            "KERAS_HOME": str(tmp_path / "keras_home"),
            "OMP_NUM_THREADS": "1",
            "PYTHONPATH": REPO + os.pathsep + environment.get("PYTHONPATH", ""),
            "PYTHONUNBUFFERED": "1",
        }
    )
    environment.update(env or {})
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
        "--master_addr=127.0.0.1", f"--master_port={_free_port()}",
        str(script), preset, str(tmp_path), mode,
    ]  # fmt: skip
    started = time.monotonic()
    result = subprocess.run(command, env=environment, capture_output=True, text=True, timeout=timeout)
    return result, time.monotonic() - started


def _load(path):
    with np.load(path) as data:
        return {k: data[k] for k in data.files}


def _assert_weights_close(actual, expected, atol):
    assert actual.keys() == expected.keys()
    for name in expected:
        np.testing.assert_allclose(actual[name], expected[name], atol=atol, rtol=0, err_msg=name)


@pytest.fixture(scope="module")
def two_process_run(dropout_free_preset, tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp")
    result, _ = _launch(out, dropout_free_preset, "train", timeout=240, env={"KERAS_TRANSFER_DIST_TIMEOUT": "60"})
    finished = time.time()
    # The training part must have completed on both processes ...
    assert all((out / f"ddp_rank{rank}.json").exists() for rank in (0, 1)), (
        result.stdout[-3000:] + result.stderr[-5000:]
    )
    return out, result, finished


@pytest.fixture(scope="module")
def reference_run(dropout_free_preset, tmp_path_factory):
    """The same `run` in this (single) process: the global batches on one worker."""
    out = tmp_path_factory.mktemp("reference")
    namespace = {"__name__": "reference_worker"}
    exec(compile(WORKER, "worker.py", "exec"), namespace)
    namespace["run"](dropout_free_preset, str(out), "ref")
    return out


def test_two_processes_match_one_process_on_the_global_batches(two_process_run, reference_run):
    out, _, _ = two_process_run
    reference = _load(reference_run / "ref_full_rank0.npz")
    rank0 = _load(out / "ddp_full_rank0.npz")
    rank1 = _load(out / "ddp_full_rank1.npz")
    # Both processes end with the same weights ...
    _assert_weights_close(rank1, rank0, atol=0)
    # ... which are those of one process (every backbone and head weight trained).
    _assert_weights_close(rank0, reference, atol=2e-5)
    results = [json.loads((out / f"ddp_rank{r}.json").read_text()) for r in (0, 1)]
    expected = json.loads((reference_run / "ref_rank0.json").read_text())
    assert [r["world_size"] for r in results] == [2, 2]
    assert expected["world_size"] == 1
    # The backbone trained (a run where nothing moved would match too).
    assert expected["backbone_weights_changed"] > 10
    assert [r["backbone_weights_changed"] for r in results] == [expected["backbone_weights_changed"]] * 2
    for result in results:
        # Losses and metrics are reduced over the processes: every process
        # reports those of one process on all the data.
        for key, values in expected["full_history"].items():
            np.testing.assert_allclose(result["full_history"][key], values, atol=1e-5, err_msg=key)
        for key, value in expected["full_evaluate"].items():
            np.testing.assert_allclose(result["full_evaluate"][key], value, atol=1e-5, err_msg=key)


def test_cached_features_path_matches_one_process(two_process_run, reference_run):
    out, result, _ = two_process_run
    reference = _load(reference_run / "ref_cached_rank0.npz")
    rank0 = _load(out / "ddp_cached_rank0.npz")
    rank1 = _load(out / "ddp_cached_rank1.npz")
    _assert_weights_close(rank1, rank0, atol=0)
    _assert_weights_close(rank0, reference, atol=2e-5)
    expected = json.loads((reference_run / "ref_rank0.json").read_text())["cached_history"]
    for rank in (0, 1):
        history = json.loads((out / f"ddp_rank{rank}.json").read_text())["cached_history"]
        for key, values in expected.items():
            np.testing.assert_allclose(history[key], values, atol=1e-5, err_msg=key)
    assert expected["loss"][-1] < expected["loss"][0]
    # Each process computed the backbone features of its share of the texts
    # only (training, then validation texts): 5 + 4 = 9.
    assert json.loads((reference_run / "ref_rank0.json").read_text())["feature_rows"] == []
    rows = [json.loads((out / f"ddp_rank{r}.json").read_text())["feature_rows"] for r in (0, 1)]
    assert rows == [[5, 5], [4, 4]]
    assert result.stdout.count("computing its features once for 9 texts") == 1  # rank 0 only


def test_only_rank_0_logs_and_writes_and_the_file_loads_in_one_process(two_process_run):
    out, result, _ = two_process_run
    # One progress log per epoch (rank 0's), not one per process.
    assert result.stdout.count("Epoch 1/2") == 1, result.stdout
    assert result.stdout.count("Epoch 3/3") == 1, result.stdout
    written = sorted(p.name for p in out.iterdir() if p.suffix in (".keras", ".h5") or ".partial" in p.name)
    assert written == ["ddp_full.keras", "ddp_full.weights.h5"]
    for rank in (0, 1):
        results = json.loads((out / f"ddp_rank{rank}.json").read_text())
        assert results["saved_files_there_after_barrier"], f"rank {rank} passed the barrier before the files existed"
    model = kt.load_model(str(out / "ddp_full.keras"))
    saved = {v.path.replace("/", "|"): v.numpy() for v in model.weights}
    _assert_weights_close(saved, _load(out / "ddp_full_rank0.npz"), atol=0)
    assert model.predict(["good film"], verbose=0).shape == (1, 2)


def test_a_killed_process_makes_the_launch_fail_quickly(two_process_run):
    # ... then rank 1 killed itself in a second `fit`. Without a clean
    # failure rank 0 would wait in its all-reduce forever (and
    # `subprocess.run` would time out).
    _, result, finished = two_process_run
    assert result.returncode != 0
    assert "TRAINING FINISHED" not in result.stdout
    assert "SIGKILL" in result.stderr
    started = float(re.search(r"DYING RUN STARTS AT ([0-9.]+)", result.stdout).group(1))
    assert finished - started < 60, f"the launch took {finished - started:.0f} s to fail"


def test_a_hung_process_makes_the_others_fail_after_the_timeout(dropout_free_preset, tmp_path):
    result, _ = _launch(tmp_path, dropout_free_preset, "stall", timeout=150, env={"KERAS_TRANSFER_DIST_TIMEOUT": "4"})
    assert result.returncode != 0
    waited = re.search(r"rank 0 waited ([0-9.]+) s", result.stdout)
    assert waited, result.stdout[-2000:] + result.stderr[-3000:]
    assert 3.5 < float(waited.group(1)) < 30
    assert "Timed out" in result.stderr


# --- In one process ----------------------------------------------------------


def test_single_process_defaults():
    assert not distributed.launched()
    assert not distributed.is_distributed()
    assert distributed.initialize() is False
    assert (distributed.rank(), distributed.world_size(), distributed.local_rank()) == (0, 1, 0)
    assert distributed.is_main_process()
    distributed.barrier()  # a no-op
    assert distributed.broadcast_seed(11) == 11
    assert distributed.save_on_main_process(lambda: "saved") == "saved"
    batches = object()
    assert distributed.shard(batches) is batches


def test_sharded_batches_split_each_global_batch_by_stride(bert_preset):
    from helpers import LABELS, TEXTS

    model = kt.TextClassifier.from_preset(bert_preset, num_classes=2)
    batches = kt.TextBatches(model.preprocessor, TEXTS[:9], LABELS[:9], batch_size=4, shuffle=True, bucketing=True, seed=1)
    shards = [distributed.ShardedBatches(batches, index, 2) for index in (0, 1)]
    assert [len(s) for s in shards] == [len(batches)] * 2 == [3, 3]
    for step in range(len(batches)):
        (x, y) = batches[step]
        parts = [s[step] for s in shards]
        for key in x:
            np.testing.assert_array_equal(parts[0][0][key], x[key][0::2])
            np.testing.assert_array_equal(parts[1][0][key], x[key][1::2])
        assert len(parts[0][1]) + len(parts[1][1]) == len(y)
    # The 1-row batch leaves the second process an empty share.
    short = [step for step in range(3) if len(batches[step][1]) == 1][0]
    assert len(shards[1][short][1]) == 0
    assert shards[1][short][0]["token_ids"].shape[0] == 0
    # Epoch ends reach the shared batch plan.
    before = [list(rows) for rows in batches._batches]
    shards[0].on_epoch_end()
    assert [list(rows) for rows in batches._batches] != before


def test_bad_arguments_and_launch_environment(monkeypatch):
    for timeout in (0, -5, "soon", True):
        with raises(ValueError, "positive number of seconds", repr(timeout)):
            distributed.initialize(timeout=timeout)
    monkeypatch.setenv("KERAS_TRANSFER_DIST_TIMEOUT", "never")
    with raises(ValueError, "KERAS_TRANSFER_DIST_TIMEOUT", "'never'"):
        distributed.initialize()
    monkeypatch.delenv("KERAS_TRANSFER_DIST_TIMEOUT")
    with raises(ValueError, "backend", "'nccl' or 'gloo'"):
        distributed.initialize(backend="")
    # torchrun's variables, half set: say what is missing and how to launch.
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    monkeypatch.delenv("MASTER_ADDR", raising=False)
    monkeypatch.delenv("MASTER_PORT", raising=False)
    assert distributed.launched()
    assert (distributed.rank(), distributed.world_size()) == (1, 2)
    with raises(ValueError, "MASTER_ADDR, MASTER_PORT are not set", "torchrun --nproc_per_node"):
        distributed.initialize()
    monkeypatch.setenv("WORLD_SIZE", "two")
    with raises(ValueError, "WORLD_SIZE", "'two'"):
        distributed.world_size()
    with raises(ValueError, "0 <= index < count"):
        distributed.ShardedBatches([], index=2, count=2)


def test_a_global_batch_smaller_than_the_processes_is_refused(monkeypatch):
    distributed.check_batch_size(1)  # one process: anything goes
    monkeypatch.setattr(distributed, "is_distributed", lambda: True)
    monkeypatch.setattr(distributed, "world_size", lambda: 4)
    distributed.check_batch_size(4)
    for batch_size in (1, 3):
        with raises(ValueError, f"batch_size={batch_size} is the global batch", "4 processes", "batch_size >= 4"):
            distributed.check_batch_size(batch_size)
