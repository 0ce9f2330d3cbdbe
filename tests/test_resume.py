"""A run killed mid-epoch resumes and ends exactly where an uninterrupted
run ends: `kt.callbacks.BackupAndRestore` with `Task.fit` on raw text.

The kill is a real SIGKILL of a child process that trains a tiny BERT
(every weight trains, dropout on) from the local preset fixture.
"""

import functools
import json
import os
import runpy
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from helpers import LABELS, TEXTS

SCRIPT = """
import json, os, sys, time
import numpy as np
import keras_transfer as kt
import keras


class StallMidEpoch(keras.callbacks.Callback):
    # Signals the parent, then waits to be killed, in the middle of epoch 1.
    def __init__(self, marker):
        super().__init__()
        self.marker = marker

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        if self.marker != "-" and self.epoch == 1 and batch == 6:
            with open(self.marker, "w") as f:
                f.write("backed up")
            time.sleep(120)


def train(preset, backup_dir, stall_marker="-"):
    keras.utils.set_random_seed(0)
    # Every weight trains, with dropout, so the test also checks the
    # optimizer state and the random state come back.
    model = kt.TextClassifier.from_preset(preset, num_classes=2, freeze=False, sequence_length=16)
    model.compile(learning_rate=1e-3)
    backup = kt.callbacks.BackupAndRestore(backup_dir, save_freq=3)
    history = model.fit({texts!r} * 4, {labels!r} * 4, batch_size=4, epochs=3, seed=7,
                        verbose=0, callbacks=[backup, StallMidEpoch(stall_marker)])
    report = {{"resumed_from": backup.resumed_from, "epochs_run": len(history.history["loss"]),
              "backup_left": os.path.exists(backup_dir)}}
    return [v.numpy() for v in model.weights], report


if __name__ == "__main__":
    preset, backup_dir, out, stall_marker = sys.argv[1:5]
    weights, report = train(preset, backup_dir, stall_marker)
    np.savez(out, *weights)
    with open(out + ".json", "w") as f:
        json.dump(report, f)
"""


def _start(script, preset, backup_dir, out, marker="-"):
    env = dict(os.environ, KERAS_BACKEND="torch", PYTHONHASHSEED="0")
    return subprocess.Popen(
        [sys.executable, str(script), preset, str(backup_dir), str(out), str(marker)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


def _finish(process, timeout=120):
    output, _ = process.communicate(timeout=timeout)
    assert process.returncode == 0, output.decode()[-3000:]


def _weights(out):
    with np.load(str(out)) as f:
        return [f[key] for key in sorted(f.files, key=lambda k: int(k.split("_")[1]))]


def test_a_run_killed_mid_epoch_resumes_to_the_same_weights(bert_preset, tmp_path):
    script = tmp_path / "train.py"
    script.write_text(SCRIPT.format(texts=TEXTS, labels=LABELS))
    marker = tmp_path / "stalled"
    killed_backup = tmp_path / "backup_killed"

    victim = _start(script, bert_preset, killed_backup, tmp_path / "victim.npz", marker)
    # Meanwhile, the same training uninterrupted, in this process.
    module = runpy.run_path(str(script))
    reference_weights, report = module["train"](bert_preset, str(tmp_path / "backup_ref"))
    assert report["resumed_from"] is None and report["epochs_run"] == 3

    deadline = time.monotonic() + 120
    while not marker.exists():
        assert victim.poll() is None, victim.communicate()[0].decode()[-3000:]
        assert time.monotonic() < deadline, "the training script never reached epoch 1"
        time.sleep(0.05)
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait()
    assert victim.returncode == -signal.SIGKILL
    state = json.loads((killed_backup / "training_state.json").read_text())
    # 10 batches an epoch, a backup every 3: the last one is mid-epoch 1.
    assert (state["epoch"], state["step"]) == (1, 5)

    # Run the same script again: it resumes from the backup.
    _finish(_start(script, bert_preset, killed_backup, tmp_path / "resumed.npz"))
    report = json.loads((tmp_path / "resumed.npz.json").read_text())
    assert report["resumed_from"] == [1, 5]
    assert report["epochs_run"] == 2  # epoch 0 was kept, not run again
    assert not report["backup_left"]  # removed once fit completed
    resumed_weights = _weights(tmp_path / "resumed.npz")
    assert len(reference_weights) == len(resumed_weights)
    for ref, got in zip(reference_weights, resumed_weights):
        np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-6)


def test_backup_is_atomic_and_names_its_weights(bert_preset, tmp_path):
    """A backup is complete before it becomes current, and older ones go."""
    import keras

    import keras_transfer as kt

    keras.utils.set_random_seed(0)
    model = kt.TextClassifier.from_preset(bert_preset, num_classes=2, sequence_length=16)
    backup_dir = tmp_path / "backup"
    backup = kt.callbacks.BackupAndRestore(backup_dir, save_freq=2, delete_checkpoint=False)

    class Interrupt(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if batch == 2:
                raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        model.fit(
            TEXTS, LABELS, batch_size=2, epochs=2, seed=0, verbose=0, cache_features=False, callbacks=[backup, Interrupt()]
        )
    files = sorted(os.listdir(backup_dir))
    state = json.loads((backup_dir / "training_state.json").read_text())
    assert (state["epoch"], state["step"]) == (0, 2)
    assert files == sorted(["training_state.json", state["weights"]])
    # A resumed fit trains the 3 remaining batches of epoch 0, then epoch 1.
    steps = []
    counter = keras.callbacks.LambdaCallback(on_train_batch_end=lambda b, logs: steps.append(b))
    model.fit(TEXTS, LABELS, batch_size=2, epochs=2, seed=0, verbose=0, cache_features=False, callbacks=[backup, counter])
    assert backup.resumed_from == (0, 2)
    assert len(steps) == 10  # every step is reported; the first 2 are skipped
    assert model.optimizer.iterations.numpy() == 2 + 3 + 5


def test_unreadable_backup_gets_a_clear_error(bert_preset, tmp_path):
    import keras_transfer as kt

    from helpers import raises

    model = kt.TextClassifier.from_preset(bert_preset, num_classes=2, sequence_length=16)
    backup_dir = tmp_path / "backup"
    backup_dir.mkdir()
    (backup_dir / "training_state.json").write_text("{not json")
    with raises(ValueError, "unreadable", "Delete the directory"):
        model.fit(TEXTS, LABELS, epochs=1, verbose=0, callbacks=[kt.callbacks.BackupAndRestore(backup_dir)])
    (backup_dir / "training_state.json").write_text('{"epoch": 1, "step": 0, "weights": "gone.weights.h5"}')
    with raises(ValueError, "gone.weights.h5", "missing"):
        model.fit(TEXTS, LABELS, epochs=1, verbose=0, callbacks=[kt.callbacks.BackupAndRestore(backup_dir)])


@pytest.mark.parametrize("save_freq", [0, -3, "batch", True, 2.5])
def test_bad_save_freq(save_freq, tmp_path):
    import keras_transfer as kt

    from helpers import raises

    with raises(ValueError, "save_freq", repr(save_freq)):
        kt.callbacks.BackupAndRestore(tmp_path, save_freq=save_freq)


def test_resume_on_cached_features_matches_an_uninterrupted_run(bert_preset, tmp_path):
    """Frozen backbone (the default): the backup holds the head and its
    optimizer, feature caching stays on, and a run interrupted mid-epoch
    resumes to the same weights (head dropout on)."""
    import keras

    import keras_transfer as kt

    def build():
        keras.utils.set_random_seed(0)
        return kt.TextClassifier.from_preset(bert_preset, num_classes=2, sequence_length=16, dropout=0.3)

    epoch = [0]

    def interrupt(batch, logs):
        if epoch[0] == 1 and batch == 3:
            raise KeyboardInterrupt

    # A LambdaCallback needs only the head, so feature caching stays on.
    Interrupt = functools.partial(
        keras.callbacks.LambdaCallback,
        on_epoch_begin=lambda e, logs: epoch.__setitem__(0, e),
        on_train_batch_end=interrupt,
    )

    def fit(model, backup, *extra):
        return model.fit(TEXTS * 2, LABELS * 2, batch_size=2, epochs=3, seed=3, verbose=0, callbacks=[backup, *extra])

    reference = build()
    history = fit(reference, kt.callbacks.BackupAndRestore(tmp_path / "ref"))
    assert history.model.name.endswith("_head")  # cached features were used

    model = build()
    with pytest.raises(KeyboardInterrupt):
        fit(model, kt.callbacks.BackupAndRestore(tmp_path / "run", save_freq=2), Interrupt())
    model = build()
    backup = kt.callbacks.BackupAndRestore(tmp_path / "run", save_freq=2)
    fit(model, backup)
    assert backup.resumed_from == (1, 4)  # backed up every 2 batches; stopped after the 4th
    for ref, got in zip(reference.trainable_variables, model.trainable_variables):
        np.testing.assert_allclose(got.numpy(), ref.numpy(), rtol=1e-5, atol=1e-7)


def test_a_backup_of_another_model_is_refused(bert_preset, tmp_path):
    """A backup of the whole model (caching off) does not load silently into
    the head alone (caching on), or into another architecture."""
    import keras

    import keras_transfer as kt

    from helpers import raises

    model = kt.TextClassifier.from_preset(bert_preset, num_classes=2, sequence_length=16)
    stop = keras.callbacks.Callback()  # an unknown callback: no caching
    stop.on_train_batch_end = lambda batch, logs=None: (_ for _ in ()).throw(KeyboardInterrupt) if batch == 1 else None
    backup = kt.callbacks.BackupAndRestore(tmp_path / "backup", save_freq=1)
    with pytest.raises(KeyboardInterrupt):
        model.fit(TEXTS, LABELS, batch_size=2, seed=0, verbose=0, callbacks=[backup, stop])
    with raises(ValueError, "written by a model with other weights", "feature caching"):
        model.fit(TEXTS, LABELS, batch_size=2, seed=0, verbose=0, callbacks=[backup])


@pytest.mark.parametrize("backup_first", [False, True], ids=["unfreezing_first", "backup_first"])
@pytest.mark.parametrize(
    "unit, every, save_freq, stop_at, resumed_from",
    [
        # Stopped once epoch 1 is backed up; epoch 2 unfreezes block 0.
        ("epoch", 1, "epoch", (1, None), (2, 0)),
        # 5 steps an epoch: block 1 trains from step 3, block 0 from step 6
        # (epoch 1's second); stopped after step 5, backed up, the one before.
        ("step", 3, 2, (1, 0), (1, 1)),
    ],
    ids=["epochs", "steps"],
)
def test_resume_with_gradual_unfreezing_matches_an_uninterrupted_run(
    bert_preset, tmp_path, unit, every, save_freq, stop_at, resumed_from, backup_first
):
    """Blocks unfrozen before the backup train again on resume, before the
    optimizer state (moments of those blocks, step count) is loaded, and the
    stages go on from where the run was: the same weights, optimizer state
    and frozen blocks as an uninterrupted run, in either callback order."""
    import warnings

    import keras

    import keras_transfer as kt

    def build():
        keras.utils.set_random_seed(0)
        model = kt.TextClassifier.from_preset(bert_preset, num_classes=2, sequence_length=16, freeze=True)
        model.compile(learning_rate=1e-3)
        return model

    class Interrupt(keras.callbacks.Callback):  # last: after the backup of the same step
        def on_epoch_begin(self, epoch, logs=None):
            self.epoch = epoch

        def on_train_batch_end(self, batch, logs=None):
            if (self.epoch, batch) == stop_at:
                raise KeyboardInterrupt

        def on_epoch_end(self, epoch, logs=None):
            if (epoch, None) == stop_at:
                raise KeyboardInterrupt

    def fit(model, backup_dir, *extra):
        unfreezing = kt.callbacks.GradualUnfreezing(every=every, unit=unit, verbose=0)
        backup = kt.callbacks.BackupAndRestore(backup_dir, save_freq=save_freq)
        callbacks = [backup, unfreezing] if backup_first else [unfreezing, backup]
        history = model.fit(
            TEXTS * 2, LABELS * 2, batch_size=4, epochs=3, seed=5, verbose=0, callbacks=[*callbacks, *extra]
        )
        return history, backup

    reference = build()
    history, _ = fit(reference, tmp_path / "ref")
    assert history.history["unfrozen_blocks"] == ([0, 1, 2] if unit == "epoch" else [1, 2, 2])

    model = build()
    with pytest.raises(KeyboardInterrupt):
        fit(model, tmp_path / "run", Interrupt())
    model = build()  # a fresh process would build the model frozen again
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message="Skipping variable loading")
        history, backup = fit(model, tmp_path / "run")
    assert backup.resumed_from == resumed_from
    assert history.history["unfrozen_blocks"] == [2] * (3 - resumed_from[0])
    assert kt.frozen_state(model) == kt.frozen_state(reference)
    assert [v.path for v in model.trainable_variables] == [v.path for v in reference.trainable_variables]
    assert int(model.optimizer.iterations.numpy()) == int(reference.optimizer.iterations.numpy()) == 15
    for ref, got in zip(reference.optimizer.variables, model.optimizer.variables):
        assert ref.path.split("/", 1)[1] == got.path.split("/", 1)[1]  # less the optimizer's name
        np.testing.assert_allclose(got.numpy(), ref.numpy(), rtol=1e-5, atol=1e-7)
    for ref, got in zip(reference.weights, model.weights):
        np.testing.assert_allclose(got.numpy(), ref.numpy(), rtol=1e-5, atol=1e-7, err_msg=ref.path)


def test_a_later_fit_of_a_resumed_model_starts_at_its_first_epoch(bert_preset, tmp_path):
    """Resuming sets the epoch Keras starts from; it must not stick to the
    model and cut short the epochs of the next `fit`."""
    import keras

    import keras_transfer as kt

    model = kt.TextClassifier.from_preset(bert_preset, num_classes=2, sequence_length=16)
    stop = keras.callbacks.LambdaCallback(
        on_epoch_end=lambda epoch, logs: (_ for _ in ()).throw(KeyboardInterrupt) if epoch == 0 else None
    )
    fit = functools.partial(model.fit, TEXTS, LABELS, batch_size=5, epochs=2, seed=0, verbose=0, cache_features=False)
    with pytest.raises(KeyboardInterrupt):
        fit(callbacks=[kt.callbacks.BackupAndRestore(tmp_path / "backup"), stop])
    backup = kt.callbacks.BackupAndRestore(tmp_path / "backup")
    assert len(fit(callbacks=[backup]).history["loss"]) == 1  # epoch 1 only
    assert backup.resumed_from == (1, 0)
    assert len(fit().history["loss"]) == 2
    assert len(fit(callbacks=[kt.callbacks.BackupAndRestore(tmp_path / "other")]).history["loss"]) == 2
