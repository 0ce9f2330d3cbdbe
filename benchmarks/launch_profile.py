"""What one step asks of the host: ops, kernel launches, copies and syncs, kt vs HF.

On a GPU where kernels are shorter than their launches (the 2026-11-26 H100
run: a BERT-base forward took the same 35 ms at 128 tokens and at 512), the
step time is the host's time to issue its work, and any synchronization
stops the host from queuing ahead. This profiles single steps of
`gpu_throughput.py`'s models and loops (same builders, same steps) with
`torch.profiler` and counts, per step:

- dispatched ops (top-level `aten::` calls) and host time inside them;
- on a CUDA device: kernel launches, host-device copies, and
  synchronizations (`cudaStreamSynchronize` and the like), and the Python
  lines that synchronized (`torch.cuda.set_sync_debug_mode("warn")`).

    python benchmarks/launch_profile.py --out $OUT/launch_profile.md   # GPU, ~1 min
    python benchmarks/launch_profile.py --smoke                         # CPU, tiny, seconds
"""

import argparse
import collections
import os
import time
import traceback
import warnings

os.environ.setdefault("KERAS_BACKEND", "torch")  # before Keras is first imported

import common  # noqa: E402

common.use_repo()

import gpu_throughput  # noqa: E402  (its model builders and step functions)

MODES = ("inference", "frozen", "finetune")
WARMUP = 3
PROFILED = 3  # steps profiled per case (counts are per step)
SYNC_SITES = 8  # distinct synchronizing lines listed per case


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=None, help="also write the Markdown table to this file")
    parser.add_argument("--models", default="BERT-base", help="comma-separated gpu_throughput model names")
    parser.add_argument("--length", type=int, default=128)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--smoke", action="store_true", help="tiny model, CPU, seconds")
    parser.add_argument("--no-hf", action="store_true", help="skip the transformers side")
    args = parser.parse_args()
    table = gpu_throughput.SMOKE_MODELS if args.smoke else gpu_throughput.MODELS
    if args.smoke:
        args.models, args.length, args.batch = ",".join(table), 16, 2
    names = [n.strip() for n in args.models.split(",")]
    unknown = [n for n in names if n not in table]
    if unknown:
        parser.error(f"unknown models {unknown}; choose from {list(table)}")
    args.model_table = {n: table[n] for n in names}
    common.exit_without_hf(args)
    return args


SYNC_NAMES = ("cudaStreamSynchronize", "cudaDeviceSynchronize", "cudaEventSynchronize")
COPY_NAMES = ("cudaMemcpyAsync", "cudaMemcpy")
LAUNCH_PREFIXES = ("cudaLaunchKernel", "cuLaunchKernel", "cudaLaunchCooperativeKernel")


def profile_counts(torch, step, steps):
    """Per-step counts from `torch.profiler` over `steps` calls of `step`."""
    activities = [torch.profiler.ProfilerActivity.CPU]
    if torch.cuda.is_available():
        activities.append(torch.profiler.ProfilerActivity.CUDA)
    common.sync_cuda()
    with torch.profiler.profile(activities=activities) as profiler:
        for _ in range(steps):
            step()
        common.sync_cuda()
    ops = launches = copies = syncs = 0
    op_us = 0.0
    for event in profiler.events():
        name = event.name
        if name.startswith("aten::") and event.cpu_parent is None:
            ops += 1
            op_us += event.cpu_time_total
        elif name.startswith(LAUNCH_PREFIXES):
            launches += 1
        elif name in COPY_NAMES:
            copies += 1
        elif name in SYNC_NAMES:
            syncs += 1
    return dict(ops=ops / steps, op_ms=op_us / 1000 / steps, launches=launches / steps,
                copies=copies / steps, syncs=syncs / steps)


def sync_sites(torch, step):
    """The Python lines of one step that synchronized with the device."""
    if not torch.cuda.is_available():
        return collections.Counter()
    sites = collections.Counter()
    repo_parts = ("keras_transfer", "keras", "transformers", "benchmarks")

    def record(message, category, filename, lineno, file=None, line=None):
        frames = [f for f in traceback.extract_stack()[:-1] if "launch_profile" not in f.filename]
        frames = [f for f in frames if any(p in f.filename for p in repo_parts)][-3:]
        sites[" <- ".join(f"{_short(f.filename)}:{f.lineno} {f.name}" for f in reversed(frames))] += 1

    torch.cuda.set_sync_debug_mode("warn")
    try:
        with warnings.catch_warnings():  # restores `showwarning` on exit
            warnings.simplefilter("always")
            warnings.showwarning = record
            step()
            common.sync_cuda()
    finally:
        torch.cuda.set_sync_debug_mode("default")
    return sites


def _short(path):
    """A frame's file as `package/module.py` (site-packages) or `keras_transfer/...`."""
    if "site-packages/" in path:
        return path.split("site-packages/", 1)[1]
    for marker in ("keras_transfer/", "benchmarks/"):
        if marker in path:
            return marker + path.split(marker, 1)[1]
    return os.path.basename(path)


def main():
    args = parse_args()
    started = time.perf_counter()
    import torch

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.type == "cpu":
        torch.set_num_threads(1)
    import keras

    keras.utils.set_random_seed(0)
    rows, notes = [], []
    for model_name, (family, config) in args.model_table.items():
        kt_x, kt_y, hf_x, hf_y = gpu_throughput.make_inputs(
            torch, device, family, config, args.batch, args.length)
        model = gpu_throughput.build_kt(family, config)
        contenders = {"kt": lambda mode: gpu_throughput.kt_cases(model, mode, (kt_x, kt_y))}
        if not args.no_hf:
            common.hf_quiet()
            backbone, head = gpu_throughput.build_hf(torch, family, config, device)
            contenders["hf"] = lambda mode: gpu_throughput.hf_cases(
                torch, backbone, head, family, mode, (hf_x, hf_y), device)
        for mode in MODES:
            for stack, make in contenders.items():
                step = make(mode)
                for _ in range(WARMUP):
                    step()
                common.sync_cuda()
                begin = time.perf_counter()
                for _ in range(PROFILED):
                    step()
                host_ms = 1000 * (time.perf_counter() - begin) / PROFILED  # before the final sync
                common.sync_cuda()
                wall_ms = 1000 * (time.perf_counter() - begin) / PROFILED
                counts = profile_counts(torch, step, PROFILED)
                sites = sync_sites(torch, step)
                rows.append([model_name, mode, stack, common.fmt(wall_ms, 1), common.fmt(host_ms, 1),
                             common.fmt(counts["ops"], 0), common.fmt(counts["op_ms"], 1),
                             common.fmt(counts["launches"], 0), common.fmt(counts["copies"], 0),
                             common.fmt(counts["syncs"], 0)])
                print(" | ".join(str(c) for c in rows[-1]), flush=True)
                for site, count in sites.most_common(SYNC_SITES):
                    notes.append(f"{model_name} {mode} {stack}: {count}× sync at {site}")
                if len(sites) > SYNC_SITES:
                    notes.append(f"{model_name} {mode} {stack}: {len(sites) - SYNC_SITES} more sync sites")
    notes.insert(0, f"device: {device}; batch {args.batch} x {args.length}; {WARMUP} warm-up steps, then "
                    f"{PROFILED} timed steps and {PROFILED} profiled steps per case; whole script "
                    f"{time.perf_counter() - started:.0f} s")
    notes.insert(1, "wall ms: per step, synchronized at the end; host ms: the same before the final sync; "
                    "ops: top-level aten calls per step and the host ms inside them; launches/copies/syncs: "
                    "CUDA runtime calls per step (0 on a CPU)")
    common.report("What one step asks of the host: keras_transfer vs HF transformers",
                  ["model", "mode", "stack", "wall ms", "host ms", "ops", "op ms", "launches",
                   "copies", "syncs"], rows, notes=notes, out=args.out)


if __name__ == "__main__":
    main()
