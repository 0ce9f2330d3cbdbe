"""Padding on real IMDB: length bucketing vs padding to the maximum or per batch.

Three ways to batch the same tokenized reviews (MiniLM's WordPiece, capped at
512 tokens, batches of 32, shuffled as for a training epoch):

- bucketing: `kt.TextBatches(bucketing=True)`, what `Task.fit` uses;
- pad to max: every batch padded to 512, as `tokenizer(padding="max_length")`;
- pad to longest: `kt.TextBatches(bucketing=False)`, each batch padded to its
  longest review (dynamic padding without bucketing);
- sorted by length: `TextBatches.by_length()`, the batches in which `fit`
  computes a frozen backbone's features once (exact length order: the
  features do not depend on batch companions, the training batches do).

For each: positions processed per epoch (padding counted) and the padding
share over the whole set (default 5,000 training reviews); then the measured
forward time of one epoch of the frozen MiniLM (`TextClassifier`,
`predict_on_batch`) over a smaller subset (default 256 reviews), since cost
grows faster than the position count (attention is quadratic in length).

    python benchmarks/padding.py                   # about 2-4 min on 2 cores
    python benchmarks/padding.py --smoke           # synthetic data, tiny model
"""

import argparse
import os

os.environ.setdefault("KERAS_BACKEND", "torch")  # before Keras is first imported

import common  # noqa: E402

MAX_EXAMPLES = 5000  # training reviews for the position counts
SEQUENCE_LENGTH = 512  # BERT's maximum
BATCH_SIZE = 32
FORWARD_EXAMPLES = 256  # reviews in the timed forward epoch (8 batches of 32)
THREADS = 2
SEED = 0
SORTED = "sorted by length (frozen feature pass)"


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=None, help="HF-format BERT directory (default: MiniLM)")
    parser.add_argument("--data", default=str(common.IMDB_PATH), help="aclImdb.tar.gz or aclImdb/")
    parser.add_argument("--max-examples", type=int, default=MAX_EXAMPLES)
    parser.add_argument("--forward-examples", type=int, default=FORWARD_EXAMPLES,
                        help="reviews in the timed forward epoch; 0 skips the timing")
    parser.add_argument("--sequence-length", type=int, default=SEQUENCE_LENGTH)
    parser.add_argument("--batch-size", type=int, default=BATCH_SIZE)
    common.common_arguments(parser, threads=THREADS)
    args = parser.parse_args()
    common.resolve_threads(args, THREADS)
    if args.smoke:
        args.max_examples, args.forward_examples = 200, min(args.forward_examples, 32)
        args.sequence_length, args.batch_size = 64, 8
    return args


def pad_to(batch, length):
    """Pads every array of a collated batch on the right to `length` positions."""
    import numpy as np

    return {
        name: np.pad(array, ((0, 0), (0, length - array.shape[1])))  # zeros: [PAD], mask False
        for name, array in batch.items()
    }


def main():
    args = parse_args()
    threads = common.set_threads(args.threads)

    import keras
    import numpy as np

    import keras_transfer as kt
    from keras_transfer.batching import padding_share

    keras.utils.set_random_seed(SEED)
    path = common.model_path(args)
    if args.smoke:
        data = common.synthetic_reviews(args.max_examples, seed=1, mean_words=20)
    else:
        data = common.imdb("train", args.max_examples, path=args.data)
    backbone, preprocessor = kt.load_backbone(path, sequence_length=args.sequence_length)
    maximum = preprocessor.sequence_length  # capped at the backbone's maximum
    texts = list(data.texts)

    def batches(texts, bucketing):
        return kt.TextBatches(
            preprocessor, texts, batch_size=args.batch_size, shuffle=True, bucketing=bucketing, seed=SEED
        )

    # --- Positions per epoch, whole set ---
    with common.Timer() as tokenizing:
        bucketed = batches(texts, bucketing=True)
    longest = batches(texts, bucketing=False)
    lengths = bucketed.lengths
    real = int(lengths.sum())
    positions = {
        "bucketing (kt.TextBatches)": real / (1.0 - bucketed.padding_share()),
        f"pad to max ({maximum})": len(texts) * maximum,
        "pad to longest in batch": real / (1.0 - longest.padding_share()),
        SORTED: real / (1.0 - padding_share(lengths, bucketed.by_length())),
    }

    # --- Forward time of one epoch, subset ---
    seconds, subset_share = {}, {}
    if args.forward_examples:
        kt.freeze(backbone)
        model = kt.TextClassifier(backbone, num_classes=2, pooling="mean", compile=False)
        subset = texts[: args.forward_examples]
        sub_bucketed, sub_longest = batches(subset, True), batches(subset, False)
        plans = {
            "bucketing (kt.TextBatches)": [sub_bucketed[i][0] for i in range(len(sub_bucketed))],
            f"pad to max ({maximum})": [pad_to(sub_longest[i][0], maximum) for i in range(len(sub_longest))],
            "pad to longest in batch": [sub_longest[i][0] for i in range(len(sub_longest))],
            SORTED: [sub_bucketed.collate(rows) for rows in sub_bucketed.by_length()],
        }
        subset_share = {
            name: 1.0 - sum(int(x["padding_mask"].sum()) for x in plan) / sum(x["padding_mask"].size for x in plan)
            for name, plan in plans.items()
        }
        model.predict_on_batch(plans["pad to longest in batch"][0])  # warm-up: first-call setup
        for name, plan in plans.items():
            print(f"forward epoch, {name}: {len(plan)} batches", flush=True)
            with common.Timer() as timer:
                for x in plan:
                    model.predict_on_batch(x)
            seconds[name] = timer.seconds

    best = positions["bucketing (kt.TextBatches)"]
    fastest = seconds.get("bucketing (kt.TextBatches)")
    rows = []
    for name, count in positions.items():
        rows.append([
            name,
            f"{count:,.0f}",
            f"{100 * (1 - real / count):.1f}%",
            f"{count / best:.2f}×",
            f"{100 * subset_share[name]:.1f}%" if name in subset_share else "—",
            common.fmt(seconds.get(name), 2),
            common.ratio(seconds.get(name), fastest) if fastest else "—",
        ])
    common.report(
        "Padding per epoch: bucketing vs pad-to-max vs pad-to-longest",
        ["batching", "positions per epoch", "padding share", "positions vs bucketing",
         f"padding share, first {args.forward_examples}", f"forward s, first {args.forward_examples}",
         "time vs bucketing"],
        rows,
        notes=[
            f"model: {'tiny random BERT (smoke), synthetic reviews' if args.smoke else path}",
            f"data: {'synthetic' if args.smoke else args.data}; {len(texts):,} training reviews, "
            f"{real:,} real tokens (special tokens included), length cap {maximum}, batch {args.batch_size}; "
            f"lengths mean {lengths.mean():.0f}, median {np.median(lengths):.0f}, "
            f"p90 {np.percentile(lengths, 90):.0f}, {100 * np.mean(lengths >= maximum):.1f}% at the cap",
            f"tokenizing {len(texts):,} reviews (kt.TextBatches): {tokenizing.seconds:.1f} s",
            f"forward: frozen backbone, mean pooling, predict_on_batch over the first "
            f"{args.forward_examples} reviews, one epoch per strategy, torch threads {threads}"
            if args.forward_examples else "forward timing skipped",
        ],
    )


if __name__ == "__main__":
    main()
