"""The frozen feature pass: batches of fit's size vs batches of a token budget.

`fit` on a frozen backbone runs it once over every text, in batches sorted
by length, and trains the head on the cached features. On a GPU those
batches hold up to `kt.tasks.base.FEATURE_PASS_TOKENS` token positions
(more short texts than long ones) instead of `fit`'s batch size; on a CPU
they keep the batch size. This script times that one pass over the same
texts for each budget, on whichever device Keras uses, so the choice is
measured, not assumed:

- texts: synthetic, with IMDB-like lengths (log-normal, median 230 tokens,
  capped at the sequence length), default 2,048 of them;
- model: a frozen `kt.TextClassifier` over a random BERT-base-sized
  backbone (mixed bfloat16 on a GPU, float32 on a CPU), its pooled features
  computed by the library's own feature pass (`_features_in_order`);
- each budget: one untimed pass, then the median of `--repeats` passes.

    python benchmarks/feature_pass.py --out $OUT/feature_pass.md   # H100: about 1 min
    python benchmarks/feature_pass.py --smoke                      # CPU, tiny model, seconds
"""

import argparse
import os
import time

os.environ.setdefault("KERAS_BACKEND", "torch")  # before Keras is first imported

import common  # noqa: E402

common.use_repo()  # keras_transfer from this checkout on a machine without it installed

TEXTS = 2048
SEQUENCE_LENGTH = 512
BATCH_SIZE = 32
BUDGETS = (None, 16384, 32768, 65536)  # None: fit's batch size
REPEATS = 3
MEDIAN_TOKENS = 230  # IMDB reviews under WordPiece: median about 230 tokens
SEED = 0
BERT_BASE = dict(vocabulary_size=30522, num_layers=12, num_heads=12, hidden_dim=768,
                 intermediate_dim=3072, max_sequence_length=512)
TINY_BERT = dict(vocabulary_size=100, num_layers=2, num_heads=2, hidden_dim=32,
                 intermediate_dim=64, max_sequence_length=64)
VOCABULARY = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "film", "plot", "good", "bad"]


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=None, help="also write the Markdown table to this file")
    parser.add_argument("--texts", type=int, default=TEXTS)
    parser.add_argument("--sequence-length", type=int, default=SEQUENCE_LENGTH)
    parser.add_argument("--batch-size", type=int, default=BATCH_SIZE)
    parser.add_argument("--budgets", default=",".join("batch" if b is None else str(b) for b in BUDGETS),
                        help="comma-separated token budgets; 'batch' is fit's batch size")
    parser.add_argument("--repeats", type=int, default=REPEATS)
    common.common_arguments(parser)  # --threads (CPU only), --smoke; --no-hf: there is no HF side
    args = parser.parse_args()
    common.resolve_threads(args, 2)
    try:
        args.budgets = [None if b.strip() == "batch" else int(b) for b in args.budgets.split(",") if b.strip()]
    except ValueError:
        parser.error(f"--budgets: expected integers or 'batch', got {args.budgets!r}")
    if args.smoke:
        args.texts, args.sequence_length, args.batch_size, args.repeats = 96, 64, 8, 1
        args.budgets = [None, 256]
    return args


def median_tokens(sequence_length):
    return min(MEDIAN_TOKENS, sequence_length // 2)


def synthetic_texts(count, sequence_length):
    """Texts whose token counts follow IMDB's log-normal shape."""
    import numpy as np

    rng = np.random.default_rng(SEED)
    median = median_tokens(sequence_length)
    lengths = np.clip(rng.lognormal(np.log(median), 0.6, size=count).astype(int), 3, sequence_length)
    words = np.array(VOCABULARY[5:])
    return [" ".join(rng.choice(words, size=n)) for n in lengths]


def main():
    args = parse_args()
    import keras
    import keras_hub
    import numpy as np
    import torch

    import keras_transfer as kt
    from keras_transfer.tasks import base

    device = base._device_type()
    if device == "cpu":
        common.set_threads(args.threads)
    config = dict(TINY_BERT if args.smoke else BERT_BASE)
    config["max_sequence_length"] = max(config["max_sequence_length"], args.sequence_length)
    dtype = "mixed_bfloat16" if device == "cuda" else "float32"
    keras.utils.set_random_seed(SEED)
    backbone = keras_hub.models.BertBackbone(**config, dtype=dtype)
    tokenizer = keras_hub.models.BertTokenizer(vocabulary=VOCABULARY, lowercase=True)
    preprocessor = kt.TextPreprocessor(tokenizer, "BertBackbone", sequence_length=args.sequence_length)
    model = kt.TextClassifier(backbone, num_classes=2, preprocessor=preprocessor, pooling="mean")
    kt.freeze(model)
    trunk = keras.Model(model.inputs, model.get_layer("pooling").output)
    texts = synthetic_texts(args.texts, args.sequence_length)
    batches = model._as_batches(texts, None, args.batch_size, shuffle=True, seed=SEED)[0]
    tokens = int(batches.lengths.sum())

    def one_pass():
        with base._FeatureStorage(base.FEATURE_CACHE_MEMORY_LIMIT, None) as storage:
            start = time.perf_counter()
            features = base._features_in_order(trunk, batches, 0, storage)
            seconds = time.perf_counter() - start
            assert features.shape[0] == len(texts)
        return seconds

    saved = dict(base.FEATURE_PASS_TOKENS)
    rows, baseline = [], None
    try:
        for budget in args.budgets:
            base.FEATURE_PASS_TOKENS.clear()
            if budget is not None:
                base.FEATURE_PASS_TOKENS[device] = budget
            plan = base._feature_plan(batches)
            one_pass()  # warm-up: kernels, allocator
            seconds = float(np.median([one_pass() for _ in range(args.repeats)]))
            baseline = seconds if baseline is None else baseline
            sizes = [len(rows_) for rows_ in plan]
            rows.append([
                f"fit's batch size ({args.batch_size})" if budget is None else f"{budget:,} positions",
                f"{len(plan):,}",
                f"{min(sizes)}-{max(sizes)}",
                f"{kt.batching.padding_share(batches.lengths, plan):.1%}",
                f"{seconds:.3f}",
                f"{len(texts) / seconds:,.0f}",
                f"{tokens / seconds:,.0f}",
                f"{baseline / seconds:.2f}x",
            ])
    finally:
        base.FEATURE_PASS_TOKENS.clear()
        base.FEATURE_PASS_TOKENS.update(saved)
    default = saved.get(device)
    common.report(
        "Frozen feature pass: fit's batch size vs a token budget",
        ["batches of", "batches", "texts per batch", "padding", "seconds", "texts/s", "tokens/s",
         "speed-up"],
        rows,
        notes=[
            f"model: random {'tiny ' if args.smoke else ''}BERT{'' if args.smoke else '-base'} "
            f"({config['num_layers']} layers, hidden {config['hidden_dim']}), frozen, {dtype}, mean pooling",
            f"texts: {len(texts):,} synthetic, log-normal lengths (median {median_tokens(args.sequence_length)} tokens, cap "
            f"{args.sequence_length}), {tokens:,} tokens in all",
            f"the library's default on this device ({device}): "
            + ("fit's batch size" if default is None else f"{default:,} positions"),
            f"median of {args.repeats} passes after one untimed pass; torch {torch.__version__}",
        ],
        out=args.out,
    )


if __name__ == "__main__":
    main()
