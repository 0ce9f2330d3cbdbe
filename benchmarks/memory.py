"""Peak memory of the frozen-backbone path against the number of reviews.

For each subset size (default 200, 400, 800 IMDB training reviews) a fresh
process loads the pretrained MiniLM (frozen, length 128), then runs the
three stages a user runs, and records its peak RSS (`ru_maxrss`) after each:

- tokenize: `kt.TextBatches` tokenizes every review once (unpadded ids);
- fit: `model.fit(..., epochs=1)` computes the backbone's features once
  and trains the head on them (`cache_features="auto"`);
- predict: `model.predict` on the same reviews.

What must be held grows with the data: the token ids (about 4 bytes a
token) and the features (384 floats a review). What must not: padded
batches of all reviews at once, or the backbone's activations of more than
one batch. The table shows the slope (MiB per 1,000 reviews) between the
smallest and the largest subset; an extrapolation to 25,000 reviews uses
that measured slope and says so.

    python benchmarks/memory.py                  # 12 min on 2 busy shared cores
    python benchmarks/memory.py --smoke          # tiny random model, synthetic text
"""

import argparse
import json
import os
import subprocess
import sys

os.environ.setdefault("KERAS_BACKEND", "torch")  # before Keras is first imported

import common  # noqa: E402

SIZES = (200, 400, 800)  # reviews per run; each runs in its own process
SEQUENCE_LENGTH = 128
BATCH_SIZE = 32
THREADS = 2
FULL_SPLIT = 25_000


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=None, help="HF-format BERT directory (default: MiniLM)")
    parser.add_argument("--data", default=str(common.IMDB_PATH), help="aclImdb.tar.gz or aclImdb/")
    parser.add_argument("--sizes", type=int, nargs="+", default=list(SIZES))
    parser.add_argument("--out", default=None, help="also write the Markdown report here")
    parser.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    common.common_arguments(parser, threads=THREADS)
    return parser.parse_args()


def measure(args, size):
    """One subset, in this process: peak RSS after each stage (MiB)."""
    import numpy as np

    import keras_transfer as kt

    common.set_threads(args.threads)
    rss = {"start": common.peak_rss_mb()}
    data = common.synthetic_reviews(size) if args.smoke else common.imdb("train", size, args.data)
    texts, labels = list(data.texts), np.asarray(data.labels)
    rss["data"] = common.peak_rss_mb()
    model = kt.TextClassifier.from_preset(
        common.model_path(args), num_classes=2, sequence_length=SEQUENCE_LENGTH
    )
    rss["model"] = common.peak_rss_mb()
    batches = kt.TextBatches(model.preprocessor, texts, labels, batch_size=BATCH_SIZE)
    tokens = int(batches.lengths.sum())
    rss["tokenize"] = common.peak_rss_mb()
    model.fit(texts, labels, batch_size=BATCH_SIZE, epochs=1, seed=0, verbose=0)
    rss["fit"] = common.peak_rss_mb()
    predictions = model.predict(texts, batch_size=BATCH_SIZE, verbose=0)
    rss["predict"] = common.peak_rss_mb()
    hidden = model.get_layer("pooling").output.shape[-1]
    return {
        "size": size,
        "rss": rss,
        "tokens": tokens,
        "token_mib": sum(t.nbytes + s.nbytes for t, s in batches.packed) / 2**20,
        "feature_mib": size * hidden * 4 / 2**20,
        "padded_all_mib": size * SEQUENCE_LENGTH * (4 + 4 + 1) / 2**20,
        "predictions": predictions.shape[0],
    }


def main():
    args = parse_args()
    common.resolve_threads(args, THREADS)
    if args.smoke:
        args.sizes = [64, 128]
    if args.child is not None:
        print(json.dumps(measure(args, args.child)))
        return
    results = []
    for size in args.sizes:
        command = [sys.executable, __file__, "--child", str(size), "--threads", str(args.threads), "--data", args.data]
        if args.smoke:
            command.append("--smoke")
        if args.model:
            command += ["--model", args.model]
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            sys.exit(f"run of {size} reviews failed:\n{done.stderr[-3000:]}")
        results.append(json.loads(done.stdout.strip().splitlines()[-1]))
        print(json.dumps(results[-1]), file=sys.stderr, flush=True)  # progress
    rows = []
    for r in results:
        rss = r["rss"]
        rows.append(
            [
                f"{r['size']:,}",
                f"{r['tokens']:,}",
                common.fmt(rss["model"], 0),
                common.fmt(rss["tokenize"], 0),
                common.fmt(rss["fit"], 0),
                common.fmt(rss["predict"], 0),
                common.fmt(r["token_mib"], 2),
                common.fmt(r["feature_mib"], 2),
                common.fmt(r["padded_all_mib"], 2),
            ]
        )
    first, last = results[0], results[-1]
    span = (last["size"] - first["size"]) / 1000
    notes = [
        f"MiniLM frozen, sequence_length {SEQUENCE_LENGTH}, batch {BATCH_SIZE}; "
        "one process per subset; RSS columns are the process's peak after each stage"
        if not args.smoke
        else "smoke run: tiny random model, synthetic reviews",
    ]
    if span > 0:
        slopes = {
            stage: (last["rss"][stage] - first["rss"][stage]) / span for stage in ("tokenize", "fit", "predict")
        }
        extra = (FULL_SPLIT - last["size"]) / 1000
        notes.append(
            "measured slope of peak RSS between the smallest and largest subset, MiB per 1,000 reviews: "
            + ", ".join(f"{k} {v:+.1f}" for k, v in slopes.items())
        )
        notes.append(
            f"extrapolated (measured slope, not measured) to {FULL_SPLIT:,} reviews: peak after predict "
            f"≈ {last['rss']['predict'] + slopes['predict'] * extra:,.0f} MiB"
        )
    common.report(
        "Peak memory against data size (frozen backbone)",
        [
            "reviews",
            "tokens",
            "model MiB",
            "+tokenize MiB",
            "+fit MiB",
            "+predict MiB",
            "token ids MiB",
            "features MiB",
            "all padded to 128 MiB",
        ],
        rows,
        notes=notes,
        out=args.out,
    )


if __name__ == "__main__":
    main()
