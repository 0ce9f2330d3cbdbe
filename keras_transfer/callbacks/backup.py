"""Backing up training so that a killed run resumes where it stopped.

`BackupAndRestore` is Keras' callback of that name (same arguments), made
to survive a kill at any instant and to resume in the middle of an epoch:

- Keras 3.15 writes the weights and then the metadata in place, so a kill
  during a backup can leave a half-written file or weights that do not
  match the recorded epoch. Here each backup is a new weights file, and a
  small JSON file naming it is swapped in atomically (`os.replace`) only
  once the weights are complete: at every instant the backup directory
  holds one consistent state.
- Keras 3.15 resumes a run killed mid-epoch at the start of that epoch,
  with weights that have already seen part of it, so those batches are
  trained on twice. Here the resumed run skips the batches the backup had
  already trained on.
- Keras restores the optimizer only into the variables it has when the run
  starts, so a run whose blocks were unfrozen before the backup (by
  `GradualUnfreezing`) would resume into a frozen model and drop the
  optimizer's state. Here the backup holds which blocks train, and they
  train again before the optimizer is restored; callbacks whose progress
  the resumed run needs (`GradualUnfreezing`'s stages) back it up too.

With `Task.fit` on raw text the batch order of every epoch is a pure
function of `(seed, epoch)` (`kt.TextBatches`), so a resumed run trains on
exactly the batches an uninterrupted one would have, and ends with the same
weights. With other data, resuming mid-epoch is exact only if the data order
of an epoch does not depend on what ran before.
"""

import json
import os
import random
import uuid

import keras
import numpy as np

from keras_transfer import distributed, freezing
from keras_transfer.optimizers import add_variables

_STATE = "training_state.json"

# Progress of other callbacks (`GradualUnfreezing`), shared through the
# model for one `fit` call: tagged with that call's `params`, the one dict
# Keras hands every callback of a call, so nothing carries over from another.
_PROGRESS = "_kt_progress"  # {key: state} published during this call
_RESUMED = "_kt_resumed_progress"  # {key: state} read from the backup


def publish_progress(callback, key, state):
    """Has `BackupAndRestore` back up `state` (plain data) with the training.

    A run resumed from that backup gets it back from `resumed_progress`.
    """
    if callback.params is None:
        return
    published = callback.model.__dict__.get(_PROGRESS)
    if published is None or published[0] is not callback.params:
        published = callback.model.__dict__[_PROGRESS] = (callback.params, {})
    published[1][key] = state


def resumed_progress(callback, key):
    """What `publish_progress` published under `key` before the backup this
    `fit` resumed from, or `None` (not resuming, or nothing published)."""
    resumed = callback.model.__dict__.get(_RESUMED)
    if callback.params is None or resumed is None or resumed[0] is not callback.params:
        return None
    return resumed[1].get(key)


def _progress_of(callback):
    published = callback.model.__dict__.get(_PROGRESS)
    if published is None or published[0] is not callback.params:
        return {}
    return published[1]


class BackupAndRestore(keras.callbacks.BackupAndRestore):
    """Backs up training atomically and resumes mid-epoch after a kill.

    The backup holds the weights, the optimizer's state (its moments and
    step count, hence the learning-rate schedule's position), which blocks
    of the backbone train, the progress of `kt.callbacks.GradualUnfreezing`,
    and the random state that dropout draws from (the layers' seed
    generators and the global Python, NumPy and torch generators), which
    Keras' own backup leaves out. A resumed run trains the blocks that
    trained at the backup (the optimizer then has the variables its state
    was saved from), and gradual unfreezing goes on from its stage then.

    Args:
        backup_dir: directory for the backup; use it for nothing else.
        save_freq: `"epoch"` to back up after every epoch, or an integer N
            to back up every N batches as well (the mid-epoch backups a
            resumed run continues from). Defaults to `"epoch"`.
        double_checkpoint: accepted for compatibility with Keras; each
            backup here is complete before the previous one is removed, so
            there is always one readable state. Defaults to `False`.
        delete_checkpoint: delete the backup once `fit` completes.
            Defaults to `True`.

    Note: the loss and metrics logged for a resumed epoch cover the batches
    trained after the resume only.

    Example:
    ```python
    backup = kt.callbacks.BackupAndRestore("backup", save_freq=100)
    model.fit(texts, labels, epochs=3, seed=0, callbacks=[backup])
    # killed? run the same lines again: training goes on from the backup
    ```
    """

    def __init__(self, backup_dir, save_freq="epoch", double_checkpoint=False, delete_checkpoint=True):
        if isinstance(save_freq, bool) or (
            save_freq != "epoch" and (not isinstance(save_freq, int) or save_freq < 1)
        ):
            raise ValueError(
                "Expected `save_freq` to be 'epoch' or a positive number of "
                f"batches. Received: save_freq={save_freq!r}"
            )
        if not isinstance(backup_dir, (str, os.PathLike)):
            raise ValueError(
                "Expected `backup_dir` to be the path of a directory (a string or a "
                f"pathlib.Path) for the backup. Received: backup_dir={backup_dir!r}"
            )
        if os.path.isfile(backup_dir):
            # Checked here, not at the first save (a FileExistsError from
            # `os.makedirs`, after the first epoch's work).
            raise ValueError(
                f"`backup_dir` {os.fspath(backup_dir)!r} is a file; the backup needs a "
                "directory of its own. Give a path that does not exist yet (it is created) "
                "or an existing directory."
            )
        super().__init__(
            os.fspath(backup_dir),
            save_freq=save_freq,
            double_checkpoint=double_checkpoint,
            delete_checkpoint=delete_checkpoint,
        )
        self._state_path = os.path.join(self.backup_dir, _STATE)
        self._epoch = 0  # epochs completed
        self._step = 0  # batches completed in the current epoch
        self._since_backup = 0
        #: `(epoch, step)` the last `fit` resumed from, or `None`.
        self.resumed_from = None
        self._pending_random_state = None

    # Restoring ----------------------------------------------------------------

    def on_train_begin(self, logs=None):
        self.resumed_from = None
        self._pending_random_state = None
        self._epoch, self._step, self._since_backup = 0, 0, 0
        self.model.__dict__.pop(_RESUMED, None)
        state = self._read_state()
        if state is None:
            # Not resuming: start at `fit`'s `initial_epoch`, not at the
            # epoch an earlier resume of this model set.
            self.model._initial_epoch = None
            return
        if not self.model.built:
            raise ValueError(
                "BackupAndRestore needs a built model to restore into. Build "
                "it first, for example by calling it on one batch."
            )
        saved_shapes = state.get("shapes")
        if saved_shapes is not None and saved_shapes != _shapes(self.model):
            raise ValueError(
                f"The backup in {self.backup_dir!r} was written by a model with "
                f"other weights ({len(saved_shapes)} variables; this one has "
                f"{len(self.model.weights)}): another model, or the same task "
                "trained with feature caching switched (a frozen backbone backs "
                "up only the head). Resume with the same model and `fit` "
                "arguments, or delete the directory to start from scratch."
            )
        refrozen = self._restore_frozen_state(state.get("frozen_state"))
        optimizer = getattr(self.model, "optimizer", None)
        if optimizer is not None:
            # Its variables must be those its state was saved from: the
            # weights that trained at the backup, in the model's order.
            if optimizer.built:
                add_variables(optimizer, self.model.trainable_variables)
            else:
                optimizer.build(self.model.trainable_variables)
        self.model.load_weights(os.path.join(self.backup_dir, state["weights"]))
        if refrozen and getattr(self.model, "jit_compile", False):
            # A compiled step was traced for the old set of trainable weights.
            self.model.make_train_function(force=True)
        self._epoch, self._step = state["epoch"], state["step"]
        self.model._initial_epoch = self._epoch
        self.resumed_from = (self._epoch, self._step)
        self.model.__dict__[_RESUMED] = (self.params, state.get("progress", {}))
        self._pending_random_state = state
        if self._step:
            self._skip_batches(self._step)
        else:
            self._restore_random_state()

    def _restore_frozen_state(self, saved):
        """Trains what trained at the backup; True if that changed anything."""
        if saved is None or freezing._backbone_of(self.model) is self.model:
            return False
        if freezing.frozen_state(self.model) == saved:
            return False
        freezing.restore_frozen_state(self.model, saved)
        return True

    def on_train_batch_begin(self, batch, logs=None):
        # Mid-epoch, the random state is put back once the epoch's data
        # loader has started (it draws from torch's generator), as it had
        # when the backup was taken.
        self._restore_random_state()

    def _restore_random_state(self):
        state, self._pending_random_state = self._pending_random_state, None
        if state is None:
            return
        generators = _seed_generators(self.model)
        saved = state.get("seed_generators", [])
        if len(saved) == len(generators):
            for variable, value in zip(generators, saved):
                variable.assign(np.asarray(value, dtype=variable.dtype))
        if "random_state" in state:
            _set_random_state(state["random_state"])

    def _read_state(self):
        if not os.path.exists(self._state_path):
            return None
        try:
            with open(self._state_path) as f:
                state = json.load(f)
            weights = os.path.join(self.backup_dir, state["weights"])
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise ValueError(
                f"The backup in {self.backup_dir!r} is unreadable ({error}). "
                "Delete the directory to start training from scratch."
            ) from None
        if not os.path.exists(weights):
            raise ValueError(
                f"The backup in {self.backup_dir!r} names {state['weights']!r}, "
                "which is missing. Delete the directory to start training "
                "from scratch."
            )
        return state

    def _skip_batches(self, count):
        """Makes the next `count` train steps no-ops: their batches were
        trained on before the interruption."""
        model = self.model
        train_function = model.train_function
        remaining = [count]

        def skip(data):
            remaining[0] -= 1
            if remaining[0] == 0:
                model.train_function = train_function
            return {}

        model.train_function = skip

    # Backing up ---------------------------------------------------------------

    def on_train_batch_end(self, batch, logs=None):
        self._step = batch + 1
        if self.save_freq == "epoch":
            return
        self._since_backup += 1
        if self._since_backup >= self.save_freq:
            self._since_backup = 0
            self._save_model()

    def on_epoch_end(self, epoch, logs=None):
        self._epoch, self._step = epoch + 1, 0
        self._save_model()

    def _save_model(self):
        if not distributed.is_main_process():
            # Under torchrun the processes hold the same weights: rank 0
            # writes the backup (and `save_weights` writes only there), and
            # another process must not point the state at a file it never
            # wrote, nor delete rank 0's as "older".
            return
        os.makedirs(self.backup_dir, exist_ok=True)
        name = f"backup-{self._epoch}-{self._step}-{uuid.uuid4().hex[:8]}.weights.h5"
        self.model.save_weights(os.path.join(self.backup_dir, name), overwrite=True)
        partial = self._state_path + ".partial"
        has_backbone = freezing._backbone_of(self.model) is not self.model
        with open(partial, "w") as f:
            json.dump(
                {
                    "epoch": self._epoch,
                    "step": self._step,
                    "weights": name,
                    "shapes": _shapes(self.model),
                    # Which blocks train: the optimizer has state for those.
                    "frozen_state": freezing.frozen_state(self.model) if has_backbone else None,
                    "progress": _progress_of(self),
                    # Not among the weights Keras saves: dropout's randomness.
                    "seed_generators": [
                        np.asarray(v.numpy()).tolist() for v in _seed_generators(self.model)
                    ],
                    # Unseeded dropout draws from torch's global generator.
                    "random_state": _random_state(),
                },
                f,
            )
            f.flush()
            os.fsync(f.fileno())
        os.replace(partial, self._state_path)  # the backup becomes current
        # Older backups, and any a kill left half-written, are now garbage.
        for other in os.listdir(self.backup_dir):
            if other.startswith("backup-") and other != name:
                os.remove(os.path.join(self.backup_dir, other))

    def on_train_end(self, logs=None):
        # A later `fit` of this model starts where it is told to.
        self.model._initial_epoch = None
        self.model.__dict__.pop(_RESUMED, None)
        if self.delete_checkpoint and distributed.is_main_process() and os.path.isdir(self.backup_dir):
            for name in os.listdir(self.backup_dir):
                if name == _STATE or name.startswith("backup-") or name.endswith(".partial"):
                    os.remove(os.path.join(self.backup_dir, name))
            if not os.listdir(self.backup_dir):
                os.rmdir(self.backup_dir)
        # Under torchrun no process may start another `fit` (the next stage
        # of `fine_tune`) and read a backup that rank 0 is deleting.
        distributed.barrier()


def _seed_generators(model):
    """The state variables of the model's random generators, in layer order
    (names carry global counters, so they differ from process to process)."""
    return [
        generator.state
        for layer in model._flatten_layers(include_self=True, recursive=True)
        for generator in getattr(layer, "_seed_generators", [])
    ]


def _random_state():
    """Python's, NumPy's and torch's global random states, as JSON."""
    state = {"python": random.getstate(), "numpy": None, "torch": None}
    name, keys, position, has_gauss, gauss = np.random.get_state()
    state["numpy"] = [name, keys.tolist(), position, has_gauss, gauss]
    if keras.config.backend() == "torch":
        import torch

        state["torch"] = torch.get_rng_state().tolist()
    return state


def _set_random_state(state):
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, position, has_gauss, gauss = state["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype="uint32"), position, has_gauss, gauss))
    if state.get("torch") is not None and keras.config.backend() == "torch":
        import torch

        torch.set_rng_state(torch.tensor(state["torch"], dtype=torch.uint8))


def _shapes(model):
    """The shapes of the model's weights: a fingerprint of what was backed up."""
    return [list(v.shape) for v in model.weights]
