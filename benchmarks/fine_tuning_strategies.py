"""Fine-tuning strategies on real IMDB: which parts train, and at what rate.

The same class-balanced subset of IMDB, the same pretrained all-MiniLM-L6-v2
(mean pooling, linear head), the same length, batch size and number of
epochs for every strategy; only what trains and its learning rates change:

- frozen backbone: only the head trains (on features computed once);
- top-2 blocks: `freeze=2`;
- gradual unfreezing: starts frozen, `kt.callbacks.GradualUnfreezing`
  unfreezes one more block from the top at even intervals over the run
  (`unit="step"`), so the whole backbone trains by the end;
- full fine-tuning, one learning rate;
- full fine-tuning with discriminative rates: the head at a larger rate,
  the top block at the fine-tuning rate, each block below at 0.8 of the
  one above (`compile(learning_rate=…, backbone_learning_rate=…,
  layer_decay=0.8)`);
- LoRA rank 8 on the attention's query and value (`model.enable_lora(8)`).

Every strategy uses the library's default schedule (AdamW, 10% linear
warmup, linear decay). They run one after the other in one process, on
data read once; train time includes tokenization. The table is printed
(and written to --out) again after each strategy, so an interrupted run
still reports what it finished. One more row gives the frozen backbone the
epochs it needs (cheap, on cached features).

    nice -n 10 python benchmarks/fine_tuning_strategies.py     # an estimated 8-10 min on 2 idle cores
    python benchmarks/fine_tuning_strategies.py --only lora,full
    python benchmarks/fine_tuning_strategies.py --smoke        # tiny random model
"""

import argparse
import os

os.environ.setdefault("KERAS_BACKEND", "torch")  # before Keras is first imported

import common  # noqa: E402

MAX_TRAIN = 256  # class-balanced subsets of the 25k train / 25k test reviews
MAX_TEST = 256
SEQUENCE_LENGTH = 128
BATCH_SIZE = 16
EPOCHS = 2
THREADS = 2
SEED = 0
HEAD_RATE = 3e-3  # the library's default while the backbone is frozen
FINE_TUNING_RATE = 1e-4  # one rate for the whole model
LORA_RATE = 1e-3  # adapters are small and start at zero: a larger step
LAYER_DECAY = 0.8
FROZEN_LONG_EPOCHS = 20  # the frozen head's own budget, on cached features

# name: (table label, learning-rate note), in the order they run
STRATEGIES = {
    "frozen": ("frozen backbone (head only)", f"{HEAD_RATE:g}"),
    "full": ("full fine-tuning", f"{FINE_TUNING_RATE:g}"),
    "layerwise": (
        f"full fine-tuning, layer-wise decay {LAYER_DECAY}",
        f"head {HEAD_RATE:g}, top block {FINE_TUNING_RATE:g}, x{LAYER_DECAY} per block down",
    ),
    "lora": ("LoRA rank 8 (query, value)", f"{LORA_RATE:g}"),
    "top2": ("top-2 blocks unfrozen", f"{FINE_TUNING_RATE:g}"),
    "gradual": ("gradual unfreezing (+1 block every 1/(blocks+1) of the steps)", f"{FINE_TUNING_RATE:g}"),
    "frozen_long": (f"frozen backbone, {FROZEN_LONG_EPOCHS} epochs (cached features)", f"{HEAD_RATE:g}"),
}


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=None, help="HF-format BERT directory (default: MiniLM)")
    parser.add_argument("--data", default=str(common.IMDB_PATH), help="aclImdb.tar.gz or aclImdb/")
    parser.add_argument("--max-train", type=int, default=MAX_TRAIN)
    parser.add_argument("--max-test", type=int, default=MAX_TEST)
    parser.add_argument("--sequence-length", type=int, default=SEQUENCE_LENGTH)
    parser.add_argument("--batch-size", type=int, default=BATCH_SIZE)
    parser.add_argument("--epochs", type=int, default=EPOCHS)
    parser.add_argument("--only", default=",".join(STRATEGIES), help="comma-separated strategies to run")
    parser.add_argument("--out", default=None, help="also write the report to this Markdown file")
    common.common_arguments(parser, threads=THREADS)
    args = parser.parse_args()
    common.resolve_threads(args, THREADS)
    args.no_hf = True  # keras_transfer only
    unknown = sorted(set(args.only.split(",")) - set(STRATEGIES))
    if unknown:
        parser.error(f"unknown strategies {unknown}; choose from {list(STRATEGIES)}")
    if args.smoke:
        args.max_train, args.max_test = min(args.max_train, 48), min(args.max_test, 32)
        args.sequence_length, args.batch_size, args.epochs = 32, 8, min(args.epochs, 2)
    return args


def load_data(args):
    if args.smoke:
        return common.synthetic_reviews(args.max_train, seed=1), common.synthetic_reviews(args.max_test, seed=2)
    return (
        common.imdb("train", args.max_train, path=args.data),
        common.imdb("test", args.max_test, path=args.data),
    )


def run_strategy(args, name, train, test):
    import keras

    import keras_transfer as kt

    keras.utils.set_random_seed(SEED)
    freeze = {"frozen": True, "frozen_long": True, "top2": 2, "gradual": True}.get(name, False)
    epochs = FROZEN_LONG_EPOCHS if name == "frozen_long" else args.epochs
    with common.Timer() as load:
        model = kt.TextClassifier.from_preset(
            args.model, num_classes=2, freeze=freeze, sequence_length=args.sequence_length, compile=False
        )
    callbacks = []
    if name in ("frozen", "frozen_long"):
        model.compile(learning_rate=HEAD_RATE)
    elif name == "layerwise":
        model.compile(learning_rate=HEAD_RATE, backbone_learning_rate=FINE_TUNING_RATE, layer_decay=LAYER_DECAY)
    elif name == "lora":
        model.enable_lora(rank=8)
        model.compile(learning_rate=LORA_RATE)
    else:
        model.compile(learning_rate=FINE_TUNING_RATE)
    if name == "gradual":
        steps = -(-len(train) // args.batch_size) * epochs
        blocks = model.backbone.num_layers
        # Head alone for the first share, then one more block per share.
        callbacks.append(kt.callbacks.GradualUnfreezing(every=max(steps // (blocks + 1), 1), unit="step", verbose=0))
    trainable, frozen = kt.count_params(model)
    with common.Timer() as fit:
        history = model.fit(
            train, epochs=epochs, batch_size=args.batch_size, seed=SEED, verbose=0, callbacks=callbacks
        )
    with common.Timer() as evaluate:
        result = model.evaluate(test, batch_size=args.batch_size, return_dict=True, verbose=0)
    trainable_end, _ = kt.count_params(model)
    return {
        "load": load.seconds,
        "train": fit.seconds,
        "eval": evaluate.seconds,
        "accuracy": float(result["accuracy"]),
        "train_loss": float(history.history["loss"][-1]),
        "trainable": trainable,
        "trainable_end": trainable_end,
        "total": trainable + frozen,
        "epochs": epochs,
    }


def report(args, results, examples):
    rows = []
    for name, r in results.items():
        label, rate = STRATEGIES[name]
        trains = f"{r['trainable']:,}"
        if r["trainable_end"] != r["trainable"]:
            trains += f" → {r['trainable_end']:,}"
        rows.append([
            label, rate, trains, r["epochs"], common.fmt(r["train"], 1), common.fmt(r["eval"], 1),
            f"{100 * r['accuracy']:.1f}%", common.fmt(r["train_loss"], 3),
        ])
    pending = [name for name in args.only.split(",") if name not in results]
    common.report(
        "Fine-tuning strategies on IMDB",
        ["strategy", "peak learning rate", "trainable params", "epochs", "train s", "eval s",
         "test accuracy", "last train loss"],
        rows,
        notes=[
            f"model: {'tiny random BERT (smoke), synthetic reviews' if args.smoke else args.model}",
            f"data: {'synthetic' if args.smoke else args.data}; {examples[0]} train / "
            f"{examples[1]} test reviews (class-balanced, seed {SEED})",
            f"length {args.sequence_length}, batch {args.batch_size}, mean pooling + dropout 0.1 + Linear; "
            "AdamW (weight decay 0.01) with 10% linear warmup and linear decay over each run",
            f"torch threads {args.threads}; strategies run one after the other in one process, one run "
            "each (no seed spread); the process's peak RSS is the largest strategy's",
        ] + ([f"not run yet: {', '.join(pending)}"] if pending else []),
        out=args.out,
    )


def main():
    args = parse_args()
    args.model = common.model_path(args)
    common.set_threads(args.threads)
    train, test = load_data(args)
    results = {}
    for name in args.only.split(","):
        print(f"running {name} ...", flush=True)
        results[name] = run_strategy(args, name, train, test)
        report(args, results, (len(train), len(test)))


if __name__ == "__main__":
    main()
