"""Processes under torchrun agree: they stop together, run the same steps,
and share one backup (`kt.distributed`, `kt.callbacks.BackupAndRestore`).

Every training step all-reduces gradients, so a process that stops alone,
or runs fewer steps, leaves the others in a collective that never
completes (gloo aborts on the mismatch; NCCL may hang or mix buffers).
One launch of two CPU processes, with the helpers of
`tests/test_distributed.py`, runs every check; a `QuestionAnswerer`'s
windows are split among the processes as texts are.
"""

import json

import numpy as np
import pytest
import test_distributed as launching

# The tiny, dropout-free BERT preset of tests/test_distributed.py.
dropout_free_preset = launching.dropout_free_preset

WORKER = r'''
import json
import os
import sys

import keras_transfer as kt
import keras
import numpy as np

TEXTS = [
    "good film", "awful film", "a great movie , really great !", "bad plot",
    "loved it", "boring acting , very boring", "fun", "the worst film ever",
    "a good story and good acting",
]
LABELS = [1, 0, 1, 0, 1, 0, 1, 0, 1]


def same_everywhere(model):
    """Whether every process holds rank 0's weights."""
    mine = np.concatenate([np.ravel(v.numpy()) for v in model.weights])
    gathered = kt.distributed.all_gather_rows(mine[None, :])
    return bool(np.array_equal(gathered[0], gathered[1]))


def question_answering(preset, out, tag):
    """Fits a QuestionAnswerer with no seed of its own; saves its weights."""
    from keras_transfer.datasets.squad import QAData

    rank = kt.distributed.rank()
    context = "the film was good and the plot was very boring , the acting was fun"
    data = QAData(["what was the plot ?"] * 6, [context] * 6, ["very boring"] * 6)
    keras.utils.set_random_seed(rank)  # rank 0's batch plan must serve all
    model = kt.QuestionAnswerer.from_preset(preset, sequence_length=24, stride=6, max_question_length=8)
    # SGD, not Adam: the span layer's bias gets no gradient (a softmax over
    # positions ignores it), and Adam would blow its float noise up to steps.
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.5))
    # The windows each process trains on at each step (train_step counts them).
    rows, count = [], kt.distributed._rows
    kt.distributed._rows = lambda x: rows.append(count(x)) or rows[-1]
    model.fit(data, batch_size=4, epochs=2, verbose=0)
    kt.distributed._rows = count
    np.savez(
        os.path.join(out, f"{tag}_qa_rank{rank}.npz"),
        **{v.path.replace("/", "|"): np.asarray(v.numpy()) for v in model.weights},
    )
    return rows


if __name__ == "__main__":
    preset, out, mode = sys.argv[1:4]
    kt.distributed.initialize()
    rank = kt.distributed.rank()
    results = {"qa_rows": question_answering(preset, out, "ddp")}

    # A callback stops training on rank 1 only, after its first batch:
    # fine-tuning on the token batches, then a frozen backbone (cached
    # features, the callback holding the task model).
    def stop_on_rank_1(model):
        def stop(batch, logs):
            if rank == 1:
                model.stop_training = True
        return keras.callbacks.LambdaCallback(on_train_batch_end=stop)

    for freeze in (False, True):
        model = kt.TextClassifier.from_preset(preset, num_classes=2, freeze=freeze, sequence_length=16)
        history = model.fit(
            TEXTS, LABELS, batch_size=4, epochs=3, verbose=0, validation_data=(TEXTS, LABELS),
            cache_features=freeze, callbacks=[stop_on_rank_1(model)],
        )
        results[f"stopped_epochs_freeze_{freeze}"] = len(history.history["loss"])
        results[f"stop_training_freeze_{freeze}"] = bool(model.stop_training)
        results[f"same_weights_freeze_{freeze}"] = same_everywhere(model)

    # Arrays the user split by rank, unevenly: 5 and 4 rows in batches of
    # 2 are 3 and 2 steps. `fit` must refuse on every process, at once.
    inputs = keras.Input((3,))
    plain = kt.distributed.DataParallelModel(inputs, keras.layers.Dense(1)(inputs))
    plain.compile(optimizer="sgd", loss="mse")
    x = np.arange(27, dtype="float32").reshape(9, 3) / 27
    try:
        plain.fit(x[rank::2], x[rank::2].sum(1), batch_size=2, verbose=0)
        results["uneven_error"] = None
    except ValueError as error:
        results["uneven_error"] = str(error)
    # Shares of the same length train.
    plain.fit(x[rank:8:2], x[rank:8:2].sum(1), batch_size=2, epochs=2, verbose=0)
    results["even_same_weights"] = same_everywhere(plain)

    # A backup written under torchrun, then resumed from on every process.
    backup = os.path.join(out, "backup")
    model = kt.TextClassifier.from_preset(preset, num_classes=2, freeze=False, sequence_length=16)
    model.fit(
        TEXTS, LABELS, batch_size=4, epochs=1, seed=1, verbose=0, cache_features=False,
        callbacks=[kt.callbacks.BackupAndRestore(backup, delete_checkpoint=False)],
    )
    kt.distributed.barrier()
    with open(os.path.join(backup, "training_state.json")) as f:
        named = json.load(f)["weights"]
    results["backup_files"] = sorted(os.listdir(backup))
    results["backup_weights_named"] = named
    kt.distributed.barrier()  # all have read it before the resume rewrites it
    restore = kt.callbacks.BackupAndRestore(backup)
    model = kt.TextClassifier.from_preset(preset, num_classes=2, freeze=False, sequence_length=16)
    history = model.fit(
        TEXTS, LABELS, batch_size=4, epochs=2, seed=1, verbose=0, cache_features=False, callbacks=[restore],
    )
    results["resumed_from"] = list(restore.resumed_from)
    results["resumed_epochs"] = len(history.history["loss"])
    results["resumed_same_weights"] = same_everywhere(model)
    results["backup_left"] = os.path.exists(backup)
    with open(os.path.join(out, f"audit_rank{rank}.json"), "w") as f:
        json.dump(results, f)
'''


@pytest.fixture(scope="module")
def two_process_run(dropout_free_preset, tmp_path_factory):
    out = tmp_path_factory.mktemp("audit")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(launching, "WORKER", WORKER)
        result, _ = launching._launch(
            out, dropout_free_preset, "audit", timeout=240, env={"KERAS_TRANSFER_DIST_TIMEOUT": "60"}
        )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    return out, [json.loads((out / f"audit_rank{rank}.json").read_text()) for rank in (0, 1)]


def test_question_answerer_shards_its_windows_and_trains_as_one_process(
    two_process_run, dropout_free_preset, tmp_path
):
    out, ranks = two_process_run
    # Each process trained on its share of every batch of 4 windows, not
    # on the whole batch (in its own order: each drew its own seed).
    rows = [results["qa_rows"] for results in ranks]
    assert len(rows[0]) == len(rows[1]) > 0
    assert all(a + b <= 4 and a >= b for a, b in zip(*rows)), rows
    # And ended where one process does on the same batches (rank 0's seed).
    namespace = {"__name__": "reference_worker"}
    exec(compile(WORKER, "worker.py", "exec"), namespace)
    namespace["question_answering"](dropout_free_preset, str(tmp_path), "ref")
    reference = launching._load(tmp_path / "ref_qa_rank0.npz")
    for rank in (0, 1):
        weights = launching._load(out / f"ddp_qa_rank{rank}.npz")
        assert weights.keys() == reference.keys()
        for name in reference:  # float32 sums in another order, at a large rate
            np.testing.assert_allclose(weights[name], reference[name], rtol=1e-4, atol=1e-5, err_msg=name)


def test_processes_stop_together_run_the_same_steps_and_share_one_backup(two_process_run):
    _, ranks = two_process_run
    for results in ranks:
        # One process's callback stopped both, after the same (first) epoch,
        # with the same weights: on token batches and on cached features.
        for freeze in (False, True):
            assert results[f"stopped_epochs_freeze_{freeze}"] == 1, results
            assert results[f"stop_training_freeze_{freeze}"] is True
            assert results[f"same_weights_freeze_{freeze}"] is True
        # Uneven shares: a clear error on every process, not a hang or an abort.
        error = results["uneven_error"]
        assert error is not None
        assert "same number of training steps" in error
        assert "process 0: 3, process 1: 2" in error
        assert results["even_same_weights"] is True
        # The backup names the weights file that is there (rank 0's), and
        # no other process deleted it or pointed the state elsewhere.
        assert results["backup_files"] == sorted([results["backup_weights_named"], "training_state.json"])
        assert results["resumed_from"] == [1, 0]
        assert results["resumed_epochs"] == 1
        assert results["resumed_same_weights"] is True
        assert results["backup_left"] is False  # deleted once, by rank 0, after the resumed fit
