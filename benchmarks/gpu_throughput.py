"""GPU throughput and MFU: keras_transfer vs HF transformers (eager), bf16.

BERT-base-sized and GPT-2-small-sized backbones with random weights (the
throughput does not depend on the weight values), sequences of 128 and 512,
three modes each:

- frozen: `kt.freeze(backbone)` + a linear head, `train_on_batch`; HF: the
  backbone under `torch.no_grad()` in eval mode, a Linear head, AdamW;
- finetune: every weight trains (dropout on); AdamW with warmup/decay;
- inference: forward only (keras_transfer `predict_on_batch` on the frozen
  model; HF eval mode under `torch.inference_mode()`).

Keras runs under the `mixed_bfloat16` dtype policy (the backbone's `dtype`
argument; the head follows it), HF under `torch.autocast(dtype=torch.bfloat16)`;
both keep float32 weights. Inputs are pre-built token tensors on the device
(no tokenization in the timed loop), full length, with an all-ones
padding/attention mask passed on both sides. BERT heads read the first token,
GPT-2 heads the last. `train_on_batch` returns its logs as NumPy, so the Keras
side synchronizes with the device every step; the HF loop does not.

MFU = achieved FLOP/s / the card's bf16 matmul FLOP/s measured here with one
large `torch.matmul`. FLOPs per token (PaLM appendix B / nanoGPT), N the
non-embedding parameters, L layers, d hidden size, T sequence length:
6N + 12·L·d·T when the backbone trains; 2N + 4·L·d·T for a forward pass (the
frozen mode too: only its head gets gradients).

    python benchmarks/gpu_throughput.py --out $OUT/gpu_throughput.md   # H100: ~3-5 min
    python benchmarks/gpu_throughput.py --compile ...   # adds jit_compile fine-tuning rows
    python benchmarks/gpu_throughput.py --smoke         # CPU, tiny configs, seconds

Imports: torch, numpy, keras, keras_hub (and what keras_transfer imports, from
this checkout), transformers unless --no-hf.
"""

import argparse
import gc
import os
import sys
import time

os.environ.setdefault("KERAS_BACKEND", "torch")  # before Keras is first imported

import common  # noqa: E402

common.use_repo()  # keras_transfer from this checkout on a machine without it installed

# name: (family, KerasHub / HF config). Sizes of bert_base_en_uncased and gpt2_base_en.
MODELS = {
    "BERT-base": ("bert", dict(vocabulary_size=30522, num_layers=12, num_heads=12,
                               hidden_dim=768, intermediate_dim=3072, max_sequence_length=512)),
    "GPT-2-small": ("gpt2", dict(vocabulary_size=50257, num_layers=12, num_heads=12,
                                 hidden_dim=768, intermediate_dim=3072, max_sequence_length=1024)),
}
# sequence length: batch size (the 512 batch is halved so full fine-tuning fits easily)
SHAPES = {128: 32, 512: 16}
MODES = ("frozen", "finetune", "inference")
WARMUP = 5  # untimed steps (the first builds the optimizer)
STEPS = 20  # timed steps per case ...
MAX_SECONDS = 6.0  # ... or fewer once this much time has passed (at least 3)
COMPILE_WARMUP = 3  # torch.compile traces on the first step(s)
DTYPE_POLICY = "mixed_bfloat16"  # Keras: float32 variables, bf16 compute
MATMUL_SIZE = 8192  # the peak FLOP/s probe: (n, n) @ (n, n) in bf16
SEED = 0

SMOKE_MODELS = {
    "tiny-BERT": ("bert", dict(vocabulary_size=100, num_layers=2, num_heads=2,
                               hidden_dim=32, intermediate_dim=64, max_sequence_length=64)),
    "tiny-GPT-2": ("gpt2", dict(vocabulary_size=100, num_layers=2, num_heads=2,
                                hidden_dim=32, intermediate_dim=64, max_sequence_length=64)),
}
SMOKE_SHAPES = {16: 2}


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=None, help="also write the Markdown table to this file")
    parser.add_argument("--models", default=None, help="comma-separated subset of the model names")
    parser.add_argument("--lengths", default=None, help="comma-separated subset of 128,512")
    parser.add_argument("--shapes", default=None,
                        help="length:batch pairs instead of the defaults, e.g. 128:128,512:64")
    parser.add_argument("--modes", default=",".join(MODES), help=f"comma-separated subset of {MODES}")
    parser.add_argument("--warmup", type=int, default=WARMUP)
    parser.add_argument("--steps", type=int, default=STEPS)
    parser.add_argument("--max-seconds", type=float, default=MAX_SECONDS)
    parser.add_argument("--compile", action="store_true",
                        help="also time Keras compile(jit_compile=True) (torch.compile) fine-tuning")
    parser.add_argument("--smoke", action="store_true", help="CPU, tiny configs, 2 steps")
    parser.add_argument("--no-hf", action="store_true", help="skip the transformers side")
    args = parser.parse_args()
    args.model_table = SMOKE_MODELS if args.smoke else MODELS
    if args.models:
        names = [n.strip() for n in args.models.split(",")]
        unknown = [n for n in names if n not in args.model_table]
        if unknown:
            parser.error(f"unknown models {unknown}; choose from {list(args.model_table)}")
        args.model_table = {n: args.model_table[n] for n in names}
    if args.shapes:
        try:
            pairs = [item.split(":") for item in args.shapes.split(",") if item.strip()]
            args.shapes = {int(length): int(batch) for length, batch in pairs}
        except ValueError:
            parser.error(f"--shapes: expected length:batch pairs like 128:32,512:16, got {args.shapes!r}")
    else:
        args.shapes = SMOKE_SHAPES if args.smoke else SHAPES
    if args.lengths:
        lengths = [int(n) for n in args.lengths.split(",")]
        args.shapes = {n: args.shapes[n] for n in lengths if n in args.shapes}
        if not args.shapes:
            parser.error(f"no known length in {lengths}")
    args.modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    if not args.modes or set(args.modes) - set(MODES):
        parser.error(f"--modes: choose from {MODES}")
    if args.smoke:
        args.warmup, args.steps = 1, 2
    common.exit_without_hf(args)
    return args


def non_embedding_params(config):
    """N: parameters of the transformer blocks (attention, MLP, norms, biases)."""
    d, ff, layers = config["hidden_dim"], config["intermediate_dim"], config["num_layers"]
    per_layer = 4 * d * d + 4 * d + 2 * d * ff + ff + d + 4 * d
    return layers * per_layer


def flops_per_token(config, length, trains_backbone):
    n, layers, d = non_embedding_params(config), config["num_layers"], config["hidden_dim"]
    if trains_backbone:
        return 6 * n + 12 * layers * d * length
    return 2 * n + 4 * layers * d * length


def peak_matmul_flops(torch, device, size):
    """Measured bf16 matmul FLOP/s of this device (the MFU denominator)."""
    a = torch.randn(size, size, device=device, dtype=torch.bfloat16)
    b = torch.randn(size, size, device=device, dtype=torch.bfloat16)
    seconds, count = common.time_block(
        lambda: torch.matmul(a, b), warmup=3, steps=20, sync=common.sync_cuda, max_seconds=5
    )
    del a, b
    return 2 * size**3 / seconds


def make_inputs(torch, device, family, config, batch, length):
    """Random token ids and labels, as device tensors for both stacks."""
    generator = torch.Generator().manual_seed(SEED)
    ids = torch.randint(0, config["vocabulary_size"], (batch, length), generator=generator)
    labels = torch.randint(0, 2, (batch,), generator=generator)
    ones = torch.ones(batch, length, dtype=torch.int32)
    kt_x = {"token_ids": ids.to(torch.int32), "padding_mask": ones}
    hf_x = {"input_ids": ids, "attention_mask": ones.to(torch.int64)}
    if family == "bert":
        kt_x["segment_ids"] = torch.zeros(batch, length, dtype=torch.int32)
        hf_x["token_type_ids"] = torch.zeros(batch, length, dtype=torch.int64)
    move = lambda d: {k: v.to(device) for k, v in d.items()}  # noqa: E731
    return move(kt_x), labels.to(device, torch.int32), move(hf_x), labels.to(device)


# --- keras_transfer -----------------------------------------------------------


def build_kt(family, config):
    import keras
    import keras_hub

    import keras_transfer as kt

    cls = keras_hub.models.BertBackbone if family == "bert" else keras_hub.models.GPT2Backbone
    # The dtype argument, not the global policy: the head follows the backbone, and
    # keras.backend.clear_session() between models would reset a global policy.
    backbone = cls(**config, dtype=DTYPE_POLICY)  # random weights, float32 variables, bf16 compute
    pooling = "cls" if family == "bert" else "last"
    model = kt.TextClassifier(backbone, num_classes=2, pooling=pooling, compile=False)  # head follows
    policies = {
        layer.dtype_policy.name
        for layer in model._flatten_layers(include_self=False)
        if not isinstance(layer, keras.layers.InputLayer)
    }
    if policies != {DTYPE_POLICY}:
        raise RuntimeError(f"expected every layer under {DTYPE_POLICY!r}, found {sorted(policies)}")
    return model


def kt_cases(model, mode, inputs, compile_jit=False):
    """Prepares `model` for `mode` and returns its step function."""
    import keras_transfer as kt

    x, y = inputs
    if mode == "inference":
        kt.freeze(model)
        return lambda: model.predict_on_batch(x)
    if mode == "frozen":
        kt.freeze(model)
    else:
        kt.unfreeze(model)
    model.compile(jit_compile=compile_jit)  # AdamW + warmup/decay, the task defaults
    return lambda: model.train_on_batch(x, y)


# --- HuggingFace -----------------------------------------------------------------


def build_hf(torch, family, config, device):
    import transformers

    if family == "bert":
        hf_config = transformers.BertConfig(
            vocab_size=config["vocabulary_size"], hidden_size=config["hidden_dim"],
            num_hidden_layers=config["num_layers"], num_attention_heads=config["num_heads"],
            intermediate_size=config["intermediate_dim"],
            max_position_embeddings=config["max_sequence_length"],
        )
        backbone = transformers.BertModel(hf_config)
    else:
        hf_config = transformers.GPT2Config(
            vocab_size=config["vocabulary_size"], n_embd=config["hidden_dim"],
            n_layer=config["num_layers"], n_head=config["num_heads"],
            n_inner=config["intermediate_dim"], n_positions=config["max_sequence_length"],
        )
        backbone = transformers.GPT2Model(hf_config)
    head = torch.nn.Sequential(torch.nn.Dropout(0.1), torch.nn.Linear(config["hidden_dim"], 2))
    return backbone.to(device), head.to(device)


def hf_cases(torch, backbone, head, family, mode, inputs, device):
    x, y = inputs
    autocast = lambda: torch.autocast(device_type=device.type, dtype=torch.bfloat16)  # noqa: E731

    def features():
        hidden = backbone(**x).last_hidden_state  # (B, T, d)
        return hidden[:, 0] if family == "bert" else hidden[:, -1]  # (B, d); no padding

    if mode == "inference":
        backbone.eval()
        head.eval()

        def infer():
            with torch.inference_mode(), autocast():
                return head(features())

        return infer
    trains = mode == "finetune"
    backbone.requires_grad_(trains)
    backbone.train(trains)
    head.train()
    model = torch.nn.ModuleDict({"backbone": backbone, "head": head})
    optimizer, schedule = common.hf_adamw(model, 5e-5 if trains else 3e-3, total_steps=1000)

    def train_step():
        with autocast():
            if trains:
                pooled = features()
            else:
                with torch.no_grad():
                    pooled = features()
            logits = head(pooled)
        loss = torch.nn.functional.cross_entropy(logits.float(), y)
        loss.backward()
        optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)

    return train_step


# --- Main ---------------------------------------------------------------------------


def free_memory(torch):
    import keras

    keras.backend.clear_session()
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def main():
    args = parse_args()
    started = time.perf_counter()
    import torch

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if args.smoke and device.type == "cpu":
        torch.set_num_threads(1)  # tiny ops; a second thread only waits (see common.resolve_threads)
    if device.type != "cuda" and not args.smoke:
        print("No CUDA device: the numbers below are CPU numbers (use --smoke for a quick check).")
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True

    import keras

    keras.utils.set_random_seed(SEED)
    peak = peak_matmul_flops(torch, device, 256 if args.smoke else MATMUL_SIZE)
    print(f"measured bf16 matmul peak: {peak / 1e12:.3g} TFLOP/s", flush=True)

    sync = common.sync_cuda
    results = []  # (model, length, batch, mode, stack, seconds per step)
    notes = []

    def measure(model_name, length, batch, mode, stack, make_step, warmup):
        try:
            step = make_step()
            seconds, count = common.time_block(step, warmup, args.steps, sync, args.max_seconds)
        except Exception as error:  # report it in the table, go on with the rest
            print(f"{model_name} {length} {mode} {stack}: {type(error).__name__}: {error}", file=sys.stderr)
            results.append((model_name, length, batch, mode, stack, None))
            notes.append(f"{model_name} T={length} {mode} {stack} failed: {type(error).__name__}: "
                         f"{str(error).splitlines()[0][:200] if str(error) else ''}")
            return
        print(f"{model_name:12s} T={length:4d} B={batch:3d} {mode:18s} {stack:3s} "
              f"{1000 * seconds:8.1f} ms/step ({count} steps)", flush=True)
        results.append((model_name, length, batch, mode, stack, seconds))

    modes = [m for m in MODES if m in args.modes] + (["finetune+jit"] if args.compile else [])
    for model_name, (family, config) in args.model_table.items():
        inputs = {
            length: make_inputs(torch, device, family, config, batch, length)
            for length, batch in args.shapes.items()
        }
        # keras_transfer: one backbone for every mode, in the order of `modes`.
        model = build_kt(family, config)
        for mode in modes:
            for length, batch in args.shapes.items():
                kt_inputs = inputs[length][:2]
                if mode == "finetune+jit":
                    with common.Timer(sync) as compiling:
                        measure(model_name, length, batch, mode, "kt",
                                lambda: kt_cases(model, "finetune", kt_inputs, compile_jit=True),
                                COMPILE_WARMUP)
                    notes.append(f"{model_name} T={length}: jit_compile warm-up + timed steps took "
                                 f"{compiling.seconds:.1f} s in all (tracing and compiling included)")
                else:
                    measure(model_name, length, batch, mode, "kt",
                            lambda: kt_cases(model, mode, kt_inputs), args.warmup)
        del model
        free_memory(torch)

        if not args.no_hf:
            common.hf_quiet()
            torch.manual_seed(SEED)
            backbone, head = build_hf(torch, family, config, device)
            for mode in [m for m in MODES if m in args.modes or (m == "finetune" and args.compile)]:
                for length, batch in args.shapes.items():
                    hf_inputs = inputs[length][2:]
                    measure(model_name, length, batch, mode, "hf",
                            lambda: hf_cases(torch, backbone, head, family, mode, hf_inputs, device),
                            args.warmup)
            del backbone, head
        del inputs
        free_memory(torch)

    # --- Table ---
    by_key = {(m, t, mode, s): sec for m, t, _, mode, s, sec in results}
    mode_names = {
        "frozen": "frozen backbone + head",
        "finetune": "full fine-tuning",
        "inference": "inference",
        "finetune+jit": "full fine-tuning, jit_compile",
    }
    rows = []
    for model_name, (family, config) in args.model_table.items():
        for mode in modes:
            for length, batch in args.shapes.items():
                kt_s = by_key.get((model_name, length, mode, "kt"))
                hf_s = by_key.get((model_name, length, "finetune" if mode == "finetune+jit" else mode, "hf"))
                flops = flops_per_token(config, length, trains_backbone=mode.startswith("finetune"))

                def rates(seconds):
                    if seconds is None:
                        return None, None, None
                    samples = batch / seconds
                    return samples, samples * length, 100 * samples * length * flops / peak

                kt_r, hf_r = rates(kt_s), rates(hf_s)
                rows.append([
                    model_name, length, batch, mode_names[mode],
                    common.fmt(kt_r[0], 1), common.fmt(hf_r[0], 1),
                    common.fmt(kt_r[1], 0), common.fmt(hf_r[1], 0),
                    common.fmt(kt_r[2], 1, "%"), common.fmt(hf_r[2], 1, "%"),
                    common.ratio(kt_r[0], hf_r[0]),
                ])
    header_notes = [
        "bf16: Keras dtype policy mixed_bfloat16, HF torch.autocast(bfloat16); float32 weights; TF32 allowed",
        f"MFU denominator: measured bf16 matmul {peak / 1e12:.3g} TFLOP/s "
        f"({'256' if args.smoke else MATMUL_SIZE}² @ same, this device)",
        "FLOPs/token: 6N + 12·L·d·T (full fine-tuning), 2N + 4·L·d·T (inference, frozen); "
        "N = non-embedding params: " + ", ".join(
            f"{name} {non_embedding_params(cfg) / 1e6:.1f}M" for name, (_, cfg) in args.model_table.items()),
        f"{args.warmup} warm-up steps, then up to {args.steps} timed steps or {args.max_seconds:g} s; "
        "time of the block / steps, device synchronized at its ends",
        "kt: kt.TextClassifier over a random KerasHub backbone, train_on_batch / predict_on_batch on "
        "device tensors; inference on the frozen model (kt.freeze turns dropout off)",
        "HF: BertModel / GPT2Model (default attention implementation) + Dropout + Linear, eager, "
        "AdamW (fused, the Trainer default) with warmup/decay" if not args.no_hf else "HF side skipped (--no-hf)",
        f"whole script: {time.perf_counter() - started:.0f} s",
    ]
    common.report(
        "GPU throughput: keras_transfer vs HF transformers (eager, bf16)",
        ["model", "T", "batch", "mode", "kt samples/s", "HF samples/s", "kt tokens/s", "HF tokens/s",
         "kt MFU", "HF MFU", "kt/HF throughput"],
        rows,
        notes=header_notes + notes,
        out=args.out,
    )


if __name__ == "__main__":
    main()
