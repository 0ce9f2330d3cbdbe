"""Data-parallel training on `torch.distributed`, launched by `torchrun`.

Keras' own distribution API serves JAX only; on the PyTorch backend the
engine is `torch.distributed`. The same script runs on one process or under

    torchrun --nproc_per_node=2 train.py                  # 2 processes, one machine
    torchrun --nnodes=2 --node_rank=0 --nproc_per_node=8 \\
        --master_addr=10.0.0.1 --master_port=29500 train.py  # on each machine

with no change to it: `kt` reads torchrun's variables (`RANK`,
`WORLD_SIZE`, `LOCAL_RANK`, `MASTER_ADDR`, `MASTER_PORT`) and joins the
process group on the first `fit` or `evaluate` of a task model (or at
`kt.distributed.initialize()`). Then:

- `batch_size` is the *global* batch, as in Keras' distribution API: each
  of the `N` processes takes every `N`-th row of each batch of the one
  batch plan they all share (same seed), so the global batches, their order
  and the learning-rate schedule are those of one process.
- After the backward pass the gradients are averaged across processes
  (weighted by each process's rows, so a last, short batch is averaged
  exactly), flattened into 25 MB buckets as torch DDP does, before
  `optimizer.apply`. Weights start from rank 0's at every `fit`.
- Feature caching (frozen backbone) is sharded: each process computes the
  backbone features of `1/N` of the texts; they are all-gathered, and the
  head trains data-parallel on them.
- Metrics are reduced across processes (their state variables summed)
  before `fit` and `evaluate` report them, so every process sees the same
  numbers; the running loss in the progress bar is the global one.
- Only rank 0 shows progress bars, runs `ModelCheckpoint`, `CSVLogger` and
  `TensorBoard`, and writes `model.save(...)` / `save_weights` (on the
  other processes they return at once: call `kt.distributed.barrier()`
  before those read the file). The saved model is an ordinary `.keras`
  file that loads in a single process.
- NCCL on GPUs (each process takes GPU `LOCAL_RANK`), gloo on CPUs, with a
  timeout (600 s, or `KERAS_TRANSFER_DIST_TIMEOUT`), so that a process
  that dies makes the others fail instead of waiting forever.

Example:
```python
import keras_transfer as kt

kt.distributed.initialize()            # optional: `fit` does it under torchrun
model = kt.TextClassifier.from_preset(preset, num_classes=2)
model.fit(train, batch_size=64)        # 64 per step in all, 32 per process on 2
model.save("model.keras")              # written once, by rank 0; the others go on
metrics = model.evaluate(test, return_dict=True)  # on every process: each evaluates its share
if kt.distributed.is_main_process():
    print(metrics)
```

`fit` and `evaluate` are collective: every process must call them (an
`evaluate` under `if is_main_process():` waits for the others until the
timeout). `predict` is not: it runs whole on the process that calls it.
"""

import copy
import datetime
import os

import keras
import numpy as np
import torch
import torch.distributed as dist

#: Seconds a collective waits for the other processes before failing.
DEFAULT_TIMEOUT = 600
TIMEOUT_VARIABLE = "KERAS_TRANSFER_DIST_TIMEOUT"
# torch DDP's default bucket: large enough to amortize each all-reduce's
# latency, small enough to keep several in flight.
BUCKET_BYTES = 25 * 2**20
_LAUNCH_VARIABLES = ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")

# --- Where this process stands ------------------------------------------------


def _env_int(name, default):
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"Expected the environment variable {name} to be an integer. Received: {name}={value!r}") from None


def launched():
    """Whether this process was started by torchrun with more than one process.

    Reads `WORLD_SIZE` from the environment; says nothing about whether
    the process group is up yet (see `is_distributed`).
    """
    return _env_int("WORLD_SIZE", 1) > 1


def is_distributed():
    """Whether the process group is up and has more than one process."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank():
    """This process's rank among all processes: 0 to `world_size() - 1`.

    The process group's answer once it is up, torchrun's `RANK` before,
    and 0 in a plain single-process run.
    """
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank()
    return _env_int("RANK", 0)


def world_size():
    """How many processes train together (1 in a plain run)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size()
    return _env_int("WORLD_SIZE", 1)


def local_rank():
    """This process's rank on its machine (torchrun's `LOCAL_RANK`; 0 in a plain run)."""
    return _env_int("LOCAL_RANK", 0)


def is_main_process():
    """Whether this is rank 0: the process that logs and writes files."""
    return rank() == 0


def _pin_local_gpu():
    # Keras' torch backend puts tensors on "cuda", which is the current
    # device; under torchrun each process must own GPU LOCAL_RANK before
    # the first model is built.
    if "LOCAL_RANK" in os.environ and torch.cuda.is_available():
        try:
            index = local_rank()
        except ValueError:
            return  # `initialize` reports it
        if 0 <= index < torch.cuda.device_count():
            torch.cuda.set_device(index)


_pin_local_gpu()


# --- The process group ---------------------------------------------------------


def initialize(backend=None, timeout=None):
    """Joins the torchrun process group; a no-op in a single-process run.

    Called by a task model's `fit` and `evaluate` under torchrun, so user
    scripts need not call it; call it yourself to pick the backend or the
    timeout, or to use `barrier` and `rank` before the first `fit`.

    Args:
        backend: `"nccl"`, `"gloo"` or another backend torch supports.
            Defaults to `None`: NCCL when CUDA is available, else gloo.
        timeout: seconds a collective (all-reduce, barrier) waits for the
            other processes before it raises, so that a process that died
            makes the others fail. Defaults to `None`: the
            `KERAS_TRANSFER_DIST_TIMEOUT` environment variable, else 600.

    Returns:
        `True` if this process now trains with others, `False` in a
        single-process run.

    Example:
    ```python
    # torchrun --nproc_per_node=2 script.py
    kt.distributed.initialize(timeout=120)
    print(kt.distributed.rank(), "of", kt.distributed.world_size())
    ```
    """
    if timeout is None:
        timeout = os.environ.get(TIMEOUT_VARIABLE, DEFAULT_TIMEOUT)
        name = TIMEOUT_VARIABLE
    else:
        name = "timeout"
    try:
        seconds = float(timeout)
    except (TypeError, ValueError):
        seconds = -1.0
    if isinstance(timeout, bool) or not seconds > 0:
        raise ValueError(f"Expected `{name}` to be a positive number of seconds. Received: {name}={timeout!r}")
    if backend is not None and (not isinstance(backend, str) or not backend):
        raise ValueError(f"Expected `backend` to be a name such as 'nccl' or 'gloo'. Received: backend={backend!r}")
    if dist.is_available() and dist.is_initialized():
        return is_distributed()
    if not launched():
        return False
    missing = [name for name in _LAUNCH_VARIABLES if name not in os.environ]
    if missing:
        raise ValueError(
            f"WORLD_SIZE={os.environ['WORLD_SIZE']} says this process trains with others, "
            f"but {', '.join(missing)} {'is' if len(missing) == 1 else 'are'} not set. "
            "Start the script with torchrun (`torchrun --nproc_per_node=N script.py`), "
            "which sets them all."
        )
    if not dist.is_available():
        raise RuntimeError("This build of PyTorch has no torch.distributed; data-parallel training needs it.")
    if backend is None:
        backend = "nccl" if torch.cuda.is_available() else "gloo"
    if backend == "nccl":
        if not torch.cuda.is_available():
            raise ValueError("backend='nccl' needs CUDA GPUs, and none is available. Use backend='gloo' on CPUs.")
        torch.cuda.set_device(local_rank())
    dist.init_process_group(backend=backend, timeout=datetime.timedelta(seconds=seconds))
    return is_distributed()


def shutdown():
    """Leaves the process group (torchrun's processes also do so at exit)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier():
    """Waits until every process reaches this point; a no-op in a single process."""
    if is_distributed():
        if dist.get_backend() == "nccl":
            dist.barrier(device_ids=[torch.cuda.current_device()])
        else:
            dist.barrier()


def _device():
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def broadcast_seed(seed=None):
    """Rank 0's `seed` (or a fresh random one) on every process.

    Args:
        seed: a non-negative integer, or `None` for one drawn on rank 0
            from NumPy's global generator. Defaults to `None`.
    """
    if seed is None:
        seed = int(np.random.randint(0, 2**31 - 1))
    if not is_distributed():
        return seed
    value = torch.tensor([int(seed)], dtype=torch.int64, device=_device())
    dist.broadcast(value, src=0)
    return int(value.item())


# --- Collectives on Keras variables -----------------------------------------


def _buckets(indices, tensors):
    """Groups tensor indices by dtype into lists of at most BUCKET_BYTES."""
    by_dtype = {}
    for i in indices:
        by_dtype.setdefault(tensors[i].dtype, []).append(i)
    for group in by_dtype.values():
        bucket, size = [], 0
        for i in group:
            nbytes = tensors[i].numel() * tensors[i].element_size()
            if bucket and size + nbytes > BUCKET_BYTES:
                yield bucket
                bucket, size = [], 0
            bucket.append(i)
            size += nbytes
        if bucket:
            yield bucket


def sync_model(model):
    """Gives every process rank 0's weights (and optimizer state, once built).

    `fit` calls it, as torch DDP does when it wraps a module, so that a
    head initialized differently on each process (no common seed) still
    trains as one model.
    """
    if not is_distributed():
        return
    variables = list(model.weights)
    optimizer = getattr(model, "optimizer", None)
    if getattr(optimizer, "built", False):
        variables += list(optimizer.variables)
    broadcast_variables(variables)
    # Dropout: from rank 0's random state, each process then draws its own
    # masks (the same seed everywhere would drop the same units on every
    # process's rows).
    seeds = [v for v in model.variables if v.path.endswith("seed_generator_state")]
    broadcast_variables(seeds)
    with torch.no_grad():
        for state in seeds:
            state.value[0] = (state.value[0] + 7919 * rank()) % (2**31 - 1)


def broadcast_variables(variables, src=0):
    """Copies rank `src`'s values of Keras `variables` to every process."""
    if not is_distributed():
        return
    values = [v.value for v in variables]
    with torch.no_grad():
        for bucket in _buckets(range(len(values)), values):
            flat = torch.cat([values[i].detach().reshape(-1) for i in bucket]).to(_device())
            dist.broadcast(flat, src=src)
            offset = 0
            for i in bucket:
                n = values[i].numel()
                values[i].copy_(flat[offset : offset + n].view_as(values[i]))
                offset += n


def average_gradients(gradients, variables, rows, loss):
    """Averages this step's gradients over all processes, in place of DDP.

    Process `r` computed `gradients` as the mean over its `rows` examples;
    the global mean gradient is `sum_r rows_r * g_r / sum_r rows_r`, which
    equals one process's gradient on the whole batch, short batches and
    empty shares included.

    Args:
        gradients: one tensor (or `None`: no gradient) per variable.
        variables: the trainable Keras variables, in the same order on
            every process.
        rows: this process's examples in the batch (may be 0).
        loss: this process's mean loss on them (ignored when `rows` is 0).

    Returns:
        `(total_rows, global_loss, gradients)`, the same on every process;
        a gradient is `None` where no process had one.
    """
    device = _device()
    # One small all-reduce first: the row counts, the loss and which
    # variables got a gradient on any process.
    head = torch.zeros(2 + len(gradients), dtype=torch.float64, device=device)
    head[0] = rows
    if rows:
        head[1] = rows * torch.as_tensor(loss, dtype=torch.float64).to(device)
    for i, g in enumerate(gradients):
        if g is not None:
            head[2 + i] = 1
    dist.all_reduce(head)
    head = head.cpu()
    total_rows = float(head[0])
    global_loss = torch.as_tensor(float(head[1]) / max(total_rows, 1.0), dtype=torch.float32)
    present = [i for i in range(len(gradients)) if head[2 + i] > 0]
    averaged = [None] * len(gradients)
    if not present or total_rows == 0:
        return total_rows, global_loss, averaged
    share = rows / total_rows
    values = [v.value for v in variables]
    pending = []
    for bucket in _buckets(present, values):
        parts = []
        for i in bucket:
            if gradients[i] is None:
                parts.append(torch.zeros(values[i].numel(), dtype=values[i].dtype, device=device))
            else:
                parts.append(gradients[i].detach().reshape(-1).to(device=device, dtype=values[i].dtype) * share)
        flat = torch.cat(parts)
        pending.append((bucket, flat, dist.all_reduce(flat, async_op=True)))
    for bucket, flat, work in pending:
        work.wait()
        offset = 0
        for i in bucket:
            n = values[i].numel()
            averaged[i] = flat[offset : offset + n].view_as(values[i]).to(values[i].device)
            offset += n
    return total_rows, global_loss, averaged


def reduce_metrics(metrics):
    """Sums the state variables of Keras `metrics` over all processes.

    Every built-in Keras metric keeps sums and counts (a mean's total and
    count, a confusion matrix's cells), so after this `result()` is the
    metric over every process's examples.
    """
    if not is_distributed():
        return
    # Metrics whose state is not a plain sum until aligned (Pearson's
    # shifted sums) align it first, once each, in the same order everywhere.
    aligned = set()
    for metric in _every_metric(metrics):
        if hasattr(metric, "align_for_sum") and id(metric) not in aligned:
            aligned.add(id(metric))
            metric.align_for_sum(_sum_over_processes)
    seen, variables = set(), []
    for metric in metrics:
        for variable in metric.variables:
            if id(variable) not in seen:
                seen.add(id(variable))
                variables.append(variable)
    values = [v.value for v in variables]
    with torch.no_grad():
        for bucket in _buckets(range(len(values)), values):
            flat = torch.cat([values[i].detach().reshape(-1) for i in bucket]).to(_device())
            dist.all_reduce(flat)
            offset = 0
            for i in bucket:
                n = values[i].numel()
                values[i].copy_(flat[offset : offset + n].view_as(values[i]).to(values[i].device))
                offset += n


def _every_metric(metrics):
    """`metrics` and the metrics inside them (a compiled model's container)."""
    for metric in metrics:
        yield metric
        inner = getattr(metric, "metrics", None)
        if isinstance(inner, (list, tuple)):
            yield from _every_metric(inner)


def _sum_over_processes(tensor):
    """`tensor` summed over every process (a new tensor, on its device)."""
    total = tensor.detach().clone().to(_device())
    dist.all_reduce(total)
    return total.to(tensor.device)


def all_gather_rows(array):
    """Every process's `array` (rows may differ in number), concatenated by rank."""
    array = np.asarray(array)
    if not is_distributed():
        return array
    device = _device()
    counts = torch.zeros(world_size(), dtype=torch.int64, device=device)
    counts[rank()] = len(array)
    dist.all_reduce(counts)
    longest = int(counts.max().item())
    padded = torch.zeros((longest,) + array.shape[1:], dtype=torch.from_numpy(array[:0]).dtype, device=device)
    padded[: len(array)] = torch.from_numpy(np.ascontiguousarray(array)).to(device)
    parts = [torch.empty_like(padded) for _ in range(world_size())]
    dist.all_gather(parts, padded)
    return np.concatenate([p[: int(c)].cpu().numpy() for p, c in zip(parts, counts.tolist())])


# --- Data ------------------------------------------------------------------------


class ShardedBatches(keras.utils.PyDataset):
    """This process's share of each batch of a dataset every process shares.

    Every process builds the same batches (same data, same seed); process
    `r` of `N` keeps rows `r, r + N, r + 2N, …` of each, so the global
    batches and their order are those of one process. A batch with fewer
    rows than processes leaves some with an empty share, which
    `DataParallel.train_step` handles exactly.

    Args:
        dataset: a `keras.utils.PyDataset` whose items are (nested)
            arrays with the batch on the first axis, the same on every
            process.
        index: this process's share. Defaults to `None` (its rank).
        count: the number of shares. Defaults to `None` (the world size).
    """

    def __init__(self, dataset, index=None, count=None):
        super().__init__(
            workers=getattr(dataset, "workers", 1),
            use_multiprocessing=getattr(dataset, "use_multiprocessing", False),
            max_queue_size=getattr(dataset, "max_queue_size", 10),
        )
        self.dataset = dataset
        self.index = rank() if index is None else index
        self.count = world_size() if count is None else count
        if not 0 <= self.index < self.count:
            raise ValueError(f"Expected 0 <= index < count. Received: index={self.index}, count={self.count}")

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, index):
        batch = self.dataset[index]
        return keras.tree.map_structure(
            lambda a: a if a is None else a[self.index :: self.count], batch
        )

    def on_epoch_begin(self):
        self.dataset.on_epoch_begin()

    def on_epoch_end(self):
        self.dataset.on_epoch_end()


def shard(dataset):
    """`ShardedBatches` of `dataset` under torchrun; `dataset` itself otherwise."""
    if not is_distributed():
        return dataset
    return ShardedBatches(dataset)


def check_batch_size(batch_size):
    """Raises unless every process gets at least one row of a full batch."""
    if is_distributed() and batch_size < world_size():
        raise ValueError(
            f"batch_size={batch_size} is the global batch, split over {world_size()} "
            f"processes, so some would get no rows. Use batch_size >= {world_size()} "
            f"(for example {32 * world_size()}: 32 per process)."
        )


def _text_subset(batches, indices):
    """A `TextBatches` over some of another's examples, in order, unshuffled."""
    part = copy.copy(batches)
    part.packed = [batches.packed[i] for i in indices]
    part.labels = None if batches.labels is None else batches.labels[indices]
    part.sample_weight = None if batches.sample_weight is None else batches.sample_weight[indices]
    part.lengths = batches.lengths[indices]
    part.shuffle = False
    part._batches = part._plan()
    return part


def sharded_features(compute, batches):
    """Features of every example of `batches`, each process computing `1/N`.

    Args:
        compute: a function from `TextBatches` to an array with one row per
            example, in input order.
        batches: the `TextBatches` of all examples.

    Returns:
        The features of all examples, in input order, on every process.
    """
    if not is_distributed():
        return compute(batches)
    mine = np.array_split(np.arange(len(batches.packed)), world_size())[rank()]
    local = compute(_text_subset(batches, mine)) if len(mine) else None
    if local is None:
        # An empty share still takes part in the gather, with zero rows of
        # the right width (computed on one example and dropped).
        local = compute(_text_subset(batches, np.arange(1)))[:0]
    return all_gather_rows(local)


# --- Training ---------------------------------------------------------------------

#: Callbacks that write files or draw: only rank 0 runs them.
MAIN_PROCESS_CALLBACKS = (
    keras.callbacks.ModelCheckpoint,
    keras.callbacks.CSVLogger,
    keras.callbacks.TensorBoard,
    keras.callbacks.ProgbarLogger,
)


def main_process_kwargs(kwargs):
    """`fit`/`evaluate` arguments for this process: silent and without writer callbacks off rank 0."""
    if not is_distributed() or is_main_process():
        return kwargs
    kwargs = dict(kwargs)
    kwargs["verbose"] = 0
    callbacks = kwargs.get("callbacks")
    if isinstance(callbacks, keras.callbacks.CallbackList):
        callbacks.callbacks = [c for c in callbacks.callbacks if not isinstance(c, MAIN_PROCESS_CALLBACKS)]
    elif callbacks:
        kwargs["callbacks"] = [c for c in callbacks if not isinstance(c, MAIN_PROCESS_CALLBACKS)]
    return kwargs


def save_on_main_process(save):
    """Runs `save()` on rank 0 only; the other processes return at once.

    No process waits: a save inside `fit` comes from a callback that only
    rank 0 runs, and scripts often save under `if is_main_process():`.
    Call `barrier()` before other processes read the file.
    """
    if is_distributed() and not is_main_process():
        return None
    return save()


def _rows(x):
    for value in keras.tree.flatten(x):
        if value is not None:
            return int(value.shape[0])
    return 0


class DataParallel:
    """Mixin for a `keras.Model` that trains data-parallel under torchrun.

    In a single process every method defers to Keras. Under torchrun:
    `train_step` averages the gradients over processes before the
    optimizer applies them; `test_step` skips an empty share; metrics are
    reduced across processes before `fit` and `evaluate` report them.
    """

    #: Whether `fit` gives every process rank 0's weights first. Task
    #: models do it themselves, earlier in their `fit`, and set it False.
    syncs_weights_in_fit = True

    def train_step(self, data):
        if not is_distributed():
            return super().train_step(data)
        from keras.src.trainers.data_adapters import data_adapter_utils

        x, y, sample_weight = data_adapter_utils.unpack_x_y_sample_weight(data)
        rows = _rows(x)
        trainable = self.trainable_weights[:]
        loss_value, y_pred = 0.0, None
        if rows:
            y_pred = self(x, training=True) if self._call_has_training_arg else self(x)
            self.zero_grad()
            loss = self._compute_loss(x=x, y=y, y_pred=y_pred, sample_weight=sample_weight, training=True)
            loss_value = loss.detach()
            if self.optimizer is not None:
                loss = self.optimizer.scale_loss(loss)
            if trainable:
                loss.backward()
        gradients = [v.value.grad if rows else None for v in trainable]
        total_rows, global_loss, gradients = average_gradients(gradients, trainable, rows, loss_value)
        # Every process tracks the global loss with weight rows / N, so the
        # progress bar shows the global running loss (and a NaN anywhere
        # stops every process at the same step); summed at the epoch's end
        # the tracker holds exactly the single-process sums.
        self._loss_tracker.update_state(global_loss, sample_weight=total_rows / world_size())
        if trainable:
            with torch.no_grad():
                self.optimizer.apply(gradients, trainable)
        if rows:
            return self.compute_metrics(x, y, y_pred, sample_weight=sample_weight)
        return self.get_metrics_result()

    def test_step(self, data):
        if is_distributed():
            from keras.src.trainers.data_adapters import data_adapter_utils

            x, _, _ = data_adapter_utils.unpack_x_y_sample_weight(data)
            if not _rows(x):
                return self.get_metrics_result()
        return super().test_step(data)

    def fit(self, x=None, y=None, batch_size=None, epochs=1, callbacks=None, **kwargs):
        """Keras' `fit`; under torchrun every process runs the same steps and stops together.

        Each training step all-reduces the gradients, so a process that
        ran fewer steps, or stopped when the others did not, would leave
        them waiting in a collective that never completes (or mixing it
        with another). So the processes first check that their data give
        the same number of steps per epoch, and after every batch and
        epoch they stop if any of them set `stop_training`. Training
        starts from rank 0's weights, as under torch DDP: a model built
        without a common seed is initialized differently on each process.
        """
        if is_distributed():
            check_same_steps(_steps_per_epoch(x, batch_size, kwargs))
            if self.syncs_weights_in_fit:
                sync_model(self)
            if isinstance(callbacks, keras.callbacks.CallbackList):
                callbacks.callbacks = [c for c in callbacks.callbacks if not isinstance(c, _StopTogether)]
                callbacks.callbacks.append(_StopTogether())  # last, once, however often fit reuses the list
            else:
                callbacks = list(callbacks or []) + [_StopTogether()]
        return super().fit(x, y, batch_size=batch_size, epochs=epochs, callbacks=callbacks, **kwargs)

    def _get_metrics_result_or_logs(self, logs):
        reduce_metrics(self.metrics)
        return super()._get_metrics_result_or_logs(logs)

    def save_weights(self, filepath, *args, **kwargs):
        """Keras' `save_weights`; under torchrun rank 0 alone writes."""
        return save_on_main_process(lambda: super(DataParallel, self).save_weights(filepath, *args, **kwargs))


class _StopTogether(keras.callbacks.Callback):
    """Makes `model.stop_training` the same on every process (set if any set it).

    Added last to `fit`'s callbacks, so it sees what the others decided;
    Keras reads the flag right after `on_train_batch_end` and
    `on_epoch_end`, where every process runs this all-reduce.
    """

    def _agree(self):
        flag = torch.tensor([1.0 if self.model.stop_training else 0.0], device=_device())
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        self.model.stop_training = bool(flag.item())

    def on_train_batch_end(self, batch, logs=None):
        self._agree()

    def on_epoch_end(self, epoch, logs=None):
        self._agree()


def _steps_per_epoch(x, batch_size, kwargs):
    """Training steps per epoch `fit` will run on `x`, or -1 if unknown (a generator)."""
    if kwargs.get("steps_per_epoch"):
        return int(kwargs["steps_per_epoch"])
    if isinstance(x, (keras.utils.PyDataset, torch.utils.data.DataLoader)):
        try:
            return len(x)
        except TypeError:  # a DataLoader over an iterable dataset
            return -1
    leaves = [value for value in keras.tree.flatten(x) if value is not None]
    if not leaves or not hasattr(leaves[0], "__len__"):
        return -1
    rows = len(leaves[0])
    split = kwargs.get("validation_split") or 0.0
    if split:
        rows = int(np.ceil(rows * (1.0 - split)))  # as Keras splits arrays
    return -(-rows // (batch_size or 32))


def check_same_steps(steps):
    """Raises on every process unless all run `steps` training steps per epoch."""
    if not is_distributed():
        return
    everyone = torch.zeros(world_size(), dtype=torch.int64, device=_device())
    everyone[rank()] = int(steps)
    dist.all_reduce(everyone)
    counts = everyone.tolist()
    if len(set(counts)) > 1:
        described = ", ".join(
            f"process {r}: {'unknown' if c < 0 else c}" for r, c in enumerate(counts)
        )
        raise ValueError(
            "Under torchrun every process must run the same number of training steps "
            f"per epoch (each step averages gradients over all of them), but their data "
            f"give {described}. Give every process a share of the same length (for "
            "example `x[kt.distributed.rank()::kt.distributed.world_size()]` after "
            "dropping the last `len(x) % world_size` rows), pass the same "
            "`steps_per_epoch` everywhere, or pass raw texts, a TextData or a "
            "TextBatches, which are split evenly for you."
        )


class DataParallelModel(DataParallel, keras.Model):
    """A functional `keras.Model` with `DataParallel` training (the cached-features head)."""


__all__ = [
    "DEFAULT_TIMEOUT",
    "DataParallel",
    "ShardedBatches",
    "all_gather_rows",
    "average_gradients",
    "barrier",
    "broadcast_seed",
    "broadcast_variables",
    "initialize",
    "is_distributed",
    "is_main_process",
    "launched",
    "local_rank",
    "rank",
    "reduce_metrics",
    "shutdown",
    "sync_model",
    "world_size",
]
