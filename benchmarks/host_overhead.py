"""Host overhead per step: keras_transfer vs Keras' own layer code vs HF transformers.

The layer structure of BERT-base and GPT-2-small (12 blocks, 12 heads) at a
width so small (hidden 48, batch 2 x 16) that the arithmetic takes
microseconds: what is left is the Python and dispatch work around it, which
on a GPU decides the throughput whenever the kernels are shorter than their
launches (the H100 run in `results/gpu_throughput_h100_2026-11-26.md`: a
BERT-base forward took 35 ms at 128 tokens and at 512). This measures that
work on any CPU, one thread, under the same `mixed_bfloat16` policy and
`torch.autocast` as the GPU script (the same models and steps:
`gpu_throughput.build_kt`, `kt_cases`, `build_hf`, `hf_cases`).

Three contenders per case, their steps alternating (order reversed every
other round): keras_transfer; the same model after `fused.unfuse` (Keras'
and KerasHub's own layer code and Keras' optimizer step: a plain KerasHub
model); HF transformers eager. Medians and the median of per-round ratios.

    python benchmarks/host_overhead.py             # about 1 min
    python benchmarks/host_overhead.py --smoke     # seconds
    python benchmarks/host_overhead.py --cuda-paths  # the paths a CUDA step takes
    python benchmarks/host_overhead.py --padded      # with padding, as real batches have
    python benchmarks/host_overhead.py --block 20 --steps 10  # 20 steps in a row per contender and round

On a CPU, keras_transfer keeps Keras' unfused attention for training with
dropout in bf16 (torch's CPU kernel is slower there), and three query, key
and value products where weights train; on a GPU it takes the fused kernel
and one joint product. `--cuda-paths` makes the CPU run take the GPU's
paths, so the host work timed is the one a CUDA training step does.
"""

import argparse
import os

os.environ.setdefault("KERAS_BACKEND", "torch")  # before Keras is first imported

import common  # noqa: E402

common.use_repo()

import gpu_throughput  # noqa: E402  (its model builders and step functions)

# The layer counts and head counts of the real models, tiny widths.
WIDTHS = dict(hidden_dim=48, intermediate_dim=192, num_heads=12, num_layers=12)
MODELS = {
    "BERT-base layout": ("bert", dict(vocabulary_size=1000, max_sequence_length=64, **WIDTHS)),
    "GPT-2-small layout": ("gpt2", dict(vocabulary_size=1000, max_sequence_length=64, **WIDTHS)),
}
BATCH, LENGTH = 2, 16
PADDED = 4  # --padded: positions of the second row that are padding
MODES = ("inference", "frozen", "finetune")
WARMUP = 5
STEPS = 40


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=None, help="also write the Markdown table to this file")
    parser.add_argument("--warmup", type=int, default=WARMUP)
    parser.add_argument("--steps", type=int, default=STEPS)
    parser.add_argument("--no-keras-kernels", action="store_true", help="skip the fused.unfuse contender")
    parser.add_argument(
        "--cuda-paths", action="store_true",
        help="take the paths a CUDA device takes (the fused attention kernel with dropout in bf16, "
             "one joint query/key/value product in training)",
    )
    parser.add_argument(
        "--padded", action="store_true",
        help=f"pad the last {PADDED} positions of one row of each batch (real batches have padding, "
             "and a mask to build); without it every position attends",
    )
    parser.add_argument(
        "--block", type=int, default=1,
        help="steps each contender runs in a row per round (default 1: one step each, alternating, "
             "every step after another contender's; a training loop runs its own steps in a row)",
    )
    common.common_arguments(parser, threads=1)
    args = parser.parse_args()
    common.resolve_threads(args, 1)
    if args.smoke:
        args.warmup, args.steps = 1, 3
    common.exit_without_hf(args)
    return args


def main():
    args = parse_args()
    threads = common.set_threads(args.threads)
    import keras
    import torch

    from keras_transfer import fused, fused_blocks

    device = torch.device("cpu")
    if args.cuda_paths:
        fused._UNFUSED_HALF_DROPOUT_DEVICES = ()
        fused_blocks._JOINT_QKV_DEVICES = ("cpu", "cuda")
    names = {
        "inference": "inference (forward only)",
        "frozen": "frozen backbone, head training step",
        "finetune": "full fine-tuning step",
    }
    rows = []
    for model_name, (family, config) in MODELS.items():
        kt_x, kt_y, hf_x, hf_y = gpu_throughput.make_inputs(torch, device, family, config, BATCH, LENGTH)
        if args.padded:
            kt_x["padding_mask"][1, -PADDED:] = 0
            hf_x["attention_mask"][1, -PADDED:] = 0
        for mode in MODES:
            keras.utils.set_random_seed(0)
            steps = {"kt": gpu_throughput.kt_cases(gpu_throughput.build_kt(family, config), mode, (kt_x, kt_y))}
            if not args.no_keras_kernels:
                plain = gpu_throughput.build_kt(family, config)
                fused.unfuse(plain)
                steps["keras"] = gpu_throughput.kt_cases(plain, mode, (kt_x, kt_y))
                # compile() gives an unfused model Keras' own optimizer step too.
                optimizer = getattr(plain, "optimizer", None)
                assert optimizer is None or "_parallel_update_step" not in vars(optimizer)
            if not args.no_hf:
                backbone, head = gpu_throughput.build_hf(torch, family, config, device)
                steps["hf"] = gpu_throughput.hf_cases(torch, backbone, head, family, mode, (hf_x, hf_y), device)
            print(f"timing {model_name} {mode}: {args.warmup} warm-up + {args.steps} steps each", flush=True)
            times = common.time_interleaved(steps, args.warmup, args.steps, block=args.block)
            vs_hf = common.paired_ratio(times["kt"], times["hf"]) if "hf" in times else (None, None)
            vs_keras = common.paired_ratio(times["kt"], times["keras"]) if "keras" in times else (None, None)
            rows.append([
                model_name,
                names[mode],
                common.ms_cell(times["kt"], digits=2),
                common.ms_cell(times.get("keras"), digits=2),
                common.ms_cell(times.get("hf"), digits=2),
                common.ratio_cell(*vs_hf),
                common.ratio_cell(*vs_keras),
            ])
    common.report(
        "Host overhead per step: keras_transfer vs Keras' own kernels vs HF transformers",
        ["model", "case", "keras_transfer ms", "Keras' kernels ms", "HF ms", "per-round kt/HF",
         "per-round kt/Keras' kernels"],
        rows,
        notes=[
            f"models: the layer layout of BERT-base / GPT-2-small ({WIDTHS['num_layers']} blocks, "
            f"{WIDTHS['num_heads']} heads) at hidden {WIDTHS['hidden_dim']}, intermediate "
            f"{WIDTHS['intermediate_dim']}, random weights; batch {BATCH} x {LENGTH}; torch threads {threads}",
            "precision: Keras mixed_bfloat16 policy, HF torch.autocast(bfloat16), as benchmarks/gpu_throughput.py",
            (f"padding: the last {PADDED} positions of the second row (--padded)" if args.padded
             else "padding: none, every position attends (--padded for a padded row)"),
            "attention in training: "
            + ("the fused kernel with dropout and one joint query/key/value product, as on CUDA (--cuda-paths)"
               if args.cuda_paths
               else "Keras' unfused path in bf16, as on a CPU (--cuda-paths for CUDA's)"),
            "steps: gpu_throughput.kt_cases / hf_cases (train_on_batch / predict_on_batch; HF eager loop, "
            "fused AdamW)",
            (f"median of {args.steps} timed steps after {args.warmup} warm-up, contenders alternating; "
             if args.block == 1 else
             f"median over {args.steps} rounds of the mean step time of a block of {args.block} steps in a "
             f"row (--block), after {args.warmup} warm-up steps, contenders alternating by block; ")
            + "± is half the interquartile range",
            "Keras' kernels: the same keras_transfer model after `keras_transfer.fused.unfuse` "
            "(Keras' and KerasHub's layer code, Keras' optimizer step)",
        ],
        out=args.out,
    )


if __name__ == "__main__":
    main()
