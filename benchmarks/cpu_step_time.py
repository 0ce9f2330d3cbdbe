"""CPU step time: keras_transfer vs HuggingFace transformers, same model.

The pretrained all-MiniLM-L6-v2 (6-layer BERT, hidden 384) with a mean-pooling
linear head, the same batch of token ids (16 x 128, no padding), the same
torch thread count, three cases:

- frozen backbone: one training step of the head. keras_transfer:
  `model.train_on_batch` on a `TextClassifier.from_preset(..., freeze=True)`,
  so the backbone really runs every step (no feature cache). HF: `AutoModel`
  with `requires_grad_(False)`, eval mode, `torch.no_grad()` forward, a Linear
  head, AdamW (torch's fused kernel, HF Trainer's default), `loss.backward()`, `step()`.
- full fine-tuning: the same with every weight training (dropout on).
- inference: forward only. keras_transfer `predict_on_batch`; HF eval mode
  under `torch.inference_mode()`.

A third contender is the same keras_transfer model with `fused.unfuse`:
Keras' and KerasHub's own layer code and Keras' optimizer step, what the
toolkit's kernels save.

The stacks' steps alternate (one each per round, the order reversed every
other round) so that load from other processes falls on all alike. Warm-up
steps, then the median of the timed ones, the median of the per-round ratios
and the ratio of the fastest steps.

    python benchmarks/cpu_step_time.py                 # about 4 min on 2 cores
    python benchmarks/cpu_step_time.py --smoke         # tiny random model, seconds
    python benchmarks/cpu_step_time.py --jit-compile --no-keras-kernels   # adds compile(jit_compile=True)
"""

import argparse
import os

os.environ.setdefault("KERAS_BACKEND", "torch")  # before Keras is first imported

import common  # noqa: E402

BATCH_SIZE = 16
SEQUENCE_LENGTH = 128
THREADS = 2  # the machine's cores; the same for both stacks
WARMUP = 3  # untimed steps per stack and case (the first builds the optimizer)
STEPS = 30  # timed steps per stack and case; the median is reported
CASES = ("frozen", "finetune", "inference")
SEED = 0


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=None, help="HF-format BERT directory (default: MiniLM)")
    parser.add_argument("--batch-size", type=int, default=BATCH_SIZE)
    parser.add_argument("--sequence-length", type=int, default=SEQUENCE_LENGTH)
    parser.add_argument("--warmup", type=int, default=WARMUP)
    parser.add_argument("--steps", type=int, default=STEPS)
    parser.add_argument("--cases", default=",".join(CASES), help=f"comma-separated subset of {CASES}")
    parser.add_argument(
        "--dtype", default="float32", choices=("float32", "mixed_bfloat16"),
        help="compute precision of both sides: keras_transfer's dtype policy, HF under torch.autocast",
    )
    parser.add_argument(
        "--no-keras-kernels", action="store_true",
        help="skip the third contender: the same keras_transfer model on Keras' own kernels",
    )
    parser.add_argument(
        "--jit-compile", action="store_true",
        help="add the same keras_transfer model compiled with jit_compile=True (torch.compile of the "
             "step); its first step, tracing and compiling, is reported apart",
    )
    common.common_arguments(parser, threads=THREADS)
    args = parser.parse_args()
    common.resolve_threads(args, THREADS)
    args.cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    unknown = sorted(set(args.cases) - set(CASES))
    if unknown:
        parser.error(f"unknown cases {unknown}; choose from {CASES}")
    if args.smoke:
        args.batch_size, args.sequence_length, args.warmup, args.steps = 4, 16, 1, 2
    common.exit_without_hf(args)
    return args


def make_batch(tokenizer, batch_size, length, seed):
    """The same random token ids for both stacks: [CLS] ids [SEP], no padding."""
    import numpy as np

    rng = np.random.default_rng(seed)
    vocabulary_size = tokenizer.vocabulary_size()
    low = 1000 if vocabulary_size > 2000 else 5  # skip [PAD]/[UNK]/[CLS]/... and unused ids
    token_ids = rng.integers(low, vocabulary_size, size=(batch_size, length)).astype("int32")
    token_ids[:, 0], token_ids[:, -1] = tokenizer.cls_token_id, tokenizer.sep_token_id
    labels = rng.integers(0, 2, size=batch_size).astype("int32")
    return token_ids, labels


def main():
    args = parse_args()
    threads = common.set_threads(args.threads)

    import keras
    import numpy as np
    import torch

    import keras_transfer as kt

    keras.utils.set_random_seed(SEED)
    path = common.model_path(args)

    # keras_transfer: one model per case, each compiled with the task defaults;
    # and the same model on Keras' own kernels (`fused.unfuse`), unless skipped.
    from keras_transfer import fused

    kt_models, keras_models, jit_models = {}, {}, {}
    for case in args.cases:
        freeze = case != "finetune"

        def build():
            return kt.TextClassifier.from_preset(
                path, num_classes=2, freeze=freeze, pooling="mean", sequence_length=args.sequence_length,
                dtype=args.dtype,
            )

        kt_models[case] = build()
        if not args.no_keras_kernels:
            keras_models[case] = build()
            fused.unfuse(keras_models[case])
        if args.jit_compile:
            jit_models[case] = build()
            jit_models[case].compile(jit_compile=True)  # the task defaults, traced
    tokenizer = next(iter(kt_models.values())).preprocessor.tokenizer
    token_ids, labels = make_batch(tokenizer, args.batch_size, args.sequence_length, SEED)
    kt_x = {
        "token_ids": token_ids,
        "segment_ids": np.zeros_like(token_ids),
        "padding_mask": np.ones_like(token_ids, dtype=bool),
    }

    steps = {case: {} for case in args.cases}
    for name, models in (("kt", kt_models), ("keras", keras_models), ("jit", jit_models)):
        for case, model in models.items():
            if case == "inference":
                steps[case][name] = lambda model=model: model.predict_on_batch(kt_x)
            else:
                steps[case][name] = lambda model=model: model.train_on_batch(kt_x, labels)

    attention = None
    if not args.no_hf:
        transformers = common.hf_quiet()
        torch.manual_seed(SEED)
        hf_x = {
            "input_ids": torch.from_numpy(token_ids.astype("int64")),
            "token_type_ids": torch.zeros(token_ids.shape, dtype=torch.int64),
            "attention_mask": torch.ones(token_ids.shape, dtype=torch.int64),
        }
        hf_y = torch.from_numpy(labels.astype("int64"))
        loss_fn = torch.nn.CrossEntropyLoss()

        def autocast():
            return torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.dtype == "mixed_bfloat16")

        for case in args.cases:
            backbone = transformers.AutoModel.from_pretrained(path)
            attention = backbone.config._attn_implementation
            model = common.hf_classifier(backbone, frozen=case != "finetune")
            if case == "inference":
                model.eval()

                def infer(model=model):
                    with torch.inference_mode(), autocast():
                        return model(hf_x)

                steps[case]["hf"] = infer
                continue
            model.train()
            rate = 5e-5 if case == "finetune" else 3e-3  # Task.compile()'s defaults
            optimizer, schedule = common.hf_adamw(model, rate, total_steps=1000)

            def train_step(model=model, optimizer=optimizer, schedule=schedule):
                with autocast():
                    loss = loss_fn(model(hf_x), hf_y)
                loss.backward()
                optimizer.step()
                schedule.step()
                optimizer.zero_grad(set_to_none=True)

            steps[case]["hf"] = train_step

    names = {
        "frozen": "frozen backbone, head training step",
        "finetune": "full fine-tuning step",
        "inference": "inference (forward only)",
    }
    first_steps = {}  # jit_compile: the first step traces and compiles
    for case in args.cases:
        if "jit" in steps[case]:
            print(f"compiling {case} (jit_compile=True) ...", flush=True)
            with common.Timer() as timer:
                steps[case]["jit"]()
            first_steps[case] = timer.seconds
    rows = []
    for case in args.cases:
        print(f"timing {case}: {args.warmup} warm-up + {args.steps} timed steps per stack", flush=True)
        times = common.time_interleaved(steps[case], args.warmup, args.steps)
        kt_t = common.median(times["kt"])
        hf_t = common.median(times["hf"]) if "hf" in times else None
        paired, paired_spread = common.paired_ratio(times["kt"], times["hf"]) if hf_t else (None, None)
        own, own_spread = common.paired_ratio(times["kt"], times["keras"]) if "keras" in times else (None, None)
        jit_cells = []
        if args.jit_compile:
            jit_cells = [common.ms_cell(times["jit"]), common.ratio_cell(*common.paired_ratio(times["jit"], times["kt"]))]
        rows.append([
            names[case],
            common.ms_cell(times["kt"]),
            common.ms_cell(times.get("keras")),
            common.ms_cell(times.get("hf")),
            common.ratio(kt_t, hf_t),
            common.ratio_cell(paired, paired_spread),
            common.ratio(min(times["kt"]), min(times["hf"])) if hf_t else "—",
            common.ratio_cell(own, own_spread),
            *jit_cells,
        ])

    common.report(
        "CPU step time: keras_transfer vs HF transformers",
        ["case", "keras_transfer ms/step", "Keras' kernels ms/step", "HF ms/step", "kt/HF", "per-round kt/HF",
         "fastest kt/HF", "per-round kt/Keras' kernels"]
        + (["jit_compile ms/step", "per-round jit_compile/kt"] if args.jit_compile else []),
        rows,
        notes=[
            f"model: {'tiny random BERT (smoke)' if args.smoke else path}",
            f"batch {args.batch_size} x length {args.sequence_length} (random ids, no padding), "
            f"torch threads {threads} for both stacks",
            f"precision: {args.dtype}" + (
                " (keras_transfer dtype policy; HF float32 weights under torch.autocast(bfloat16))"
                if args.dtype != "float32" else " on both sides"
            ),
            f"median of {args.steps} timed steps after {args.warmup} warm-up steps, stacks alternating "
            "(order reversed every other round); ± is half the interquartile range",
            "ratio kt/HF: of the two medians; per-round kt/HF: median over rounds of the ratio of the "
            "round's two steps, which cancels load that drifts between rounds; fastest kt/HF: of the two "
            "fastest steps (noise only ever adds time)",
            "keras_transfer: TextClassifier.from_preset(pooling='mean'), train_on_batch / predict_on_batch "
            "on token dicts (no feature cache)",
            "Keras' kernels: the same keras_transfer model after `keras_transfer.fused.unfuse` (Keras' and "
            "KerasHub's own layer code and Keras' optimizer step, as a plain KerasHub model runs)"
            if not args.no_keras_kernels else "Keras' kernels: skipped (--no-keras-kernels)",
            f"HF: AutoModel (attention {attention}) + mean pooling + Linear, fused AdamW (the Trainer default) with warmup/decay"
            if not args.no_hf else "HF side skipped (--no-hf)",
        ] + ([
            "jit_compile: the same keras_transfer model after compile(jit_compile=True) (Keras traces the "
            "step with torch.compile); its first step (tracing and compiling): "
            + ", ".join(f"{case} {seconds:.1f} s" for case, seconds in first_steps.items())
        ] if args.jit_compile else []),
    )


if __name__ == "__main__":
    main()
