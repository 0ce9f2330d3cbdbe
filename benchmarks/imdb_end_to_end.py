"""End to end on real IMDB, frozen backbone: keras_transfer vs a plain HF loop.

Both train a mean-pooling linear head on the frozen all-MiniLM-L6-v2 for
3 epochs over the same class-balanced subset of the training reviews, with
AdamW (peak rate 3e-3, 10% linear warmup, linear decay to zero, weight decay
0.01), then evaluate on the same test subset.

- keras_transfer: `TextClassifier.from_preset(path, freeze=True,
  pooling="mean")` then `fit(train, epochs=3)` on the raw `TextData`, with the
  library's defaults: tokenized once, length-bucketed batches, and the frozen
  backbone's features computed once and reused every epoch
  (`cache_features="auto"`). `evaluate(test)` on raw text.
- HF: the loop people write: `AutoTokenizer(..., padding="max_length",
  truncation=True)`, `AutoModel` frozen (eval, `requires_grad_(False)`,
  `torch.no_grad()`), mean pooling, dropout, Linear; the backbone recomputed
  every epoch.

Train time includes tokenization on both sides (and, for keras_transfer, the
feature pass); load time (reading the checkpoint) is reported apart. Each
side runs in its own child process, so peak memory is per side and neither
inherits the other's allocator state.

    python benchmarks/imdb_end_to_end.py                       # see README for the duration
    python benchmarks/imdb_end_to_end.py --side kt             # one side only
    python benchmarks/imdb_end_to_end.py --smoke               # synthetic data, tiny model
"""

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile

os.environ.setdefault("KERAS_BACKEND", "torch")  # before Keras is first imported

import common  # noqa: E402

MAX_TRAIN = 2000  # class-balanced subset of the 25k training reviews
MAX_TEST = 2000
SEQUENCE_LENGTH = 256
BATCH_SIZE = 32
EPOCHS = 3
THREADS = 2
LEARNING_RATE = 3e-3  # Task.compile()'s default for a frozen backbone
SEED = 0


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=None, help="HF-format BERT directory (default: MiniLM)")
    parser.add_argument("--data", default=str(common.IMDB_PATH), help="aclImdb.tar.gz or aclImdb/")
    parser.add_argument("--max-train", type=int, default=MAX_TRAIN)
    parser.add_argument("--max-test", type=int, default=MAX_TEST)
    parser.add_argument("--sequence-length", type=int, default=SEQUENCE_LENGTH)
    parser.add_argument("--batch-size", type=int, default=BATCH_SIZE)
    parser.add_argument("--epochs", type=int, default=EPOCHS)
    parser.add_argument("--side", choices=("both", "kt", "hf"), default="both")
    parser.add_argument(
        "--dtype", default="float32", choices=("float32", "auto", "mixed_bfloat16"),
        help="keras_transfer's dtype policy (the HF loop stays float32, as people write it)",
    )
    parser.add_argument(
        "--seeds", type=int, default=1,
        help="train and evaluate this many times per side, training seeds 0..N-1 (same data subset)",
    )
    parser.add_argument(
        "--first-seed", type=int, default=0,
        help="start the training seeds here (to add seeds to an earlier run)",
    )
    parser.add_argument("--json-out", default=None, help=argparse.SUPPRESS)  # a child's result
    common.common_arguments(parser, threads=THREADS)
    args = parser.parse_args()
    common.resolve_threads(args, THREADS)
    if args.smoke:
        args.max_train, args.max_test = min(args.max_train, 64), min(args.max_test, 32)
        args.sequence_length, args.batch_size, args.epochs = 32, 8, min(args.epochs, 2)
    common.exit_without_hf(args)
    if args.side == "hf" and args.no_hf:
        parser.error("--side hf needs transformers")
    return args


def load_data(args):
    if args.smoke:
        return common.synthetic_reviews(args.max_train, seed=1), common.synthetic_reviews(args.max_test, seed=2)
    return (
        common.imdb("train", args.max_train, path=args.data),
        common.imdb("test", args.max_test, path=args.data),
    )


def run_kt(args, train, test, seed):
    import keras

    import keras_transfer as kt

    keras.utils.set_random_seed(seed)
    with common.Timer() as load:
        model = kt.TextClassifier.from_preset(
            args.model, num_classes=2, freeze=True, pooling="mean", sequence_length=args.sequence_length,
            dtype=None if args.dtype == "float32" else args.dtype,
        )
    with common.Timer() as fit:
        history = model.fit(train, epochs=args.epochs, batch_size=args.batch_size, seed=seed, verbose=0)
    with common.Timer() as evaluate:
        result = model.evaluate(test, batch_size=args.batch_size, return_dict=True, verbose=0)
    return {
        "load": load.seconds,
        "train": fit.seconds,
        "eval": evaluate.seconds,
        "accuracy": float(result["accuracy"]),
        "train_loss": float(history.history["loss"][-1]),
        # With the feature cache, `fit` trains a head-only model named "<model>_head".
        "feature_cache": history.model is not model and history.model.name.endswith("_head"),
    }


def run_hf(args, train, test, seed):
    import numpy as np
    import torch

    transformers = common.hf_quiet()
    torch.manual_seed(seed)
    with common.Timer() as load:
        tokenizer = transformers.AutoTokenizer.from_pretrained(args.model)
        model = common.hf_classifier(transformers.AutoModel.from_pretrained(args.model), frozen=True)

    def encode(texts):
        return dict(tokenizer(
            list(texts), padding="max_length", truncation=True,
            max_length=args.sequence_length, return_tensors="pt",
        ))

    n, size = len(train), args.batch_size
    loss_fn = torch.nn.CrossEntropyLoss()
    with common.Timer() as fit:
        x = encode(train.texts)  # {name: (n, sequence_length)}
        y = torch.as_tensor(np.asarray(train.labels), dtype=torch.int64)
        optimizer, schedule = common.hf_adamw(model, LEARNING_RATE, total_steps=math.ceil(n / size) * args.epochs)
        order = torch.Generator().manual_seed(seed)
        model.train()
        for _ in range(args.epochs):
            permutation = torch.randperm(n, generator=order)
            for start in range(0, n, size):
                rows = permutation[start : start + size]
                loss = loss_fn(model({k: v[rows] for k, v in x.items()}), y[rows])
                loss.backward()
                optimizer.step()
                schedule.step()
                optimizer.zero_grad(set_to_none=True)
    with common.Timer() as evaluate:
        x = encode(test.texts)
        model.eval()
        predictions = []
        with torch.inference_mode():
            for start in range(0, len(test), size):
                logits = model({k: v[start : start + size] for k, v in x.items()})
                predictions.append(logits.argmax(-1))
        accuracy = float((torch.cat(predictions).numpy() == np.asarray(test.labels)).mean())
    return {
        "load": load.seconds,
        "train": fit.seconds,
        "eval": evaluate.seconds,
        "accuracy": accuracy,
        "train_loss": loss.item(),
    }


def accuracy_cell(accuracies):
    mean = statistics.mean(accuracies)
    if len(accuracies) == 1:
        return f"{100 * mean:.1f}%"
    sd = statistics.stdev(accuracies)
    each = ", ".join(f"{100 * a:.1f}" for a in accuracies)
    return f"{100 * mean:.1f}% ± {100 * sd:.1f} [{each}]"


def child(args):
    """Runs one side in this process and writes its result as JSON."""
    common.set_threads(args.threads)
    train, test = load_data(args)
    run = run_kt if args.side == "kt" else run_hf
    runs = [run(args, train, test, seed) for seed in range(args.first_seed, args.first_seed + args.seeds)]
    result = {key: common.median([r[key] for r in runs]) for key in ("load", "train", "eval")}
    result["accuracies"] = [r["accuracy"] for r in runs]
    result["feature_cache"] = all(r.get("feature_cache", False) for r in runs)
    result["peak_rss_mb"] = common.peak_rss_mb()
    result["examples"] = [len(train), len(test)]
    if args.json_out:
        common.dump_json(args.json_out, result)
    return result


def forwarded_arguments(args):
    return [
        "--model", args.model, "--data", args.data,
        "--max-train", str(args.max_train), "--max-test", str(args.max_test),
        "--sequence-length", str(args.sequence_length), "--batch-size", str(args.batch_size),
        "--epochs", str(args.epochs), "--threads", str(args.threads), "--seeds", str(args.seeds), "--first-seed", str(args.first_seed), "--dtype", args.dtype,
    ] + (["--smoke"] if args.smoke else [])


def main():
    args = parse_args()
    args.model = common.model_path(args)
    if args.json_out:
        child(args)
        return
    sides = ["kt", "hf"] if args.side == "both" else [args.side]
    if args.no_hf and "hf" in sides:
        sides.remove("hf")
    results = {}
    with tempfile.TemporaryDirectory(prefix="kt-bench-") as scratch:
        for side in sides:
            out = os.path.join(scratch, f"{side}.json")
            print(f"running the {side} side in a child process ...", flush=True)
            subprocess.run(
                [sys.executable, os.path.abspath(__file__), "--side", side, "--json-out", out]
                + forwarded_arguments(args),
                check=True,
            )
            with open(out) as file:
                results[side] = json.load(file)

    names = {"kt": "keras_transfer (bucketing + feature cache)", "hf": "HF loop (pad to max, recompute)"}
    rows = []
    for side, r in results.items():
        rows.append([
            names[side], common.fmt(r["load"], 1), common.fmt(r["train"], 1), common.fmt(r["eval"], 1),
            common.fmt(r["train"] + r["eval"], 1), accuracy_cell(r["accuracies"]), common.fmt(r["peak_rss_mb"], 0),
        ])
    if "kt" in results and "hf" in results:
        kt_r, hf_r = results["kt"], results["hf"]
        rows.append([
            "speed-up HF/kt", "", common.ratio(hf_r["train"], kt_r["train"]),
            common.ratio(hf_r["eval"], kt_r["eval"]),
            common.ratio(hf_r["train"] + hf_r["eval"], kt_r["train"] + kt_r["eval"]), "", "",
        ])
    first = next(iter(results.values()))
    cache_note = []
    if "kt" in results:
        used = results["kt"]["feature_cache"]
        cache_note = [f"keras_transfer feature cache used: {'yes' if used else 'NO (backbone ran every epoch)'}"]
    common.report(
        "IMDB end to end, frozen backbone: keras_transfer vs HF loop",
        ["stack", "load s", "train s", "eval s", "train+eval s", "test accuracy", "peak RSS MiB"],
        rows,
        notes=[
            f"model: {'tiny random BERT (smoke), synthetic reviews' if args.smoke else args.model}",
            f"data: {'synthetic' if args.smoke else args.data}; {first['examples'][0]} train / "
            f"{first['examples'][1]} test reviews (class-balanced, seed {SEED})",
            f"length {args.sequence_length}, batch {args.batch_size}, {args.epochs} epochs, mean pooling + "
            f"dropout 0.1 + Linear, AdamW {LEARNING_RATE:g} with 10% warmup and linear decay",
            f"keras_transfer dtype: {args.dtype}; the HF loop: float32",
            f"torch threads {args.threads} on both sides; each side in its own process "
            "(peak RSS per side; the line above is the parent's)",
            f"{args.seeds} training seed(s) per side, {args.first_seed} to {args.first_seed + args.seeds - 1} "
            "(head initialisation, dropout, data order): times are "
            "medians; accuracy is the mean, ± the standard deviation over seeds, each seed's in brackets"
            if args.seeds > 1 else f"one training seed ({args.first_seed}) per side",
        ] + cache_note,
    )


if __name__ == "__main__":
    main()
