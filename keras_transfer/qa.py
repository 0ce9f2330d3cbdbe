"""The machinery of extractive question answering: windows, labels, decoding.

- `token_offsets(preprocessor, texts)`: token ids with the character span of
  each token in the original text, from HuggingFace `tokenizers` (the
  preprocessor's fast WordPiece path, or the `tokenizers` object inside
  KerasHub's byte-pair tokenizer).
- `make_windows(...)`: packs `question + context` like the family packs a
  text pair (`[CLS] q [SEP] c [SEP]` with segment ids for BERT,
  `<|endoftext|> q <|endoftext|> c <|endoftext|>` for GPT-2) and splits a
  context longer than the sequence into overlapping windows, `stride`
  tokens shared by consecutive windows (HuggingFace's `stride`). Each
  window knows the character span of each of its context tokens, and, for
  training, where the answer starts and ends in it (position 0, the
  first token, when the window does not hold the whole answer).
- `QABatches`: a `keras.utils.PyDataset` of padded windows.
- `decode(...)`: the best valid span of each question over its windows
  (start and end inside the context, end not before start, at most
  `max_answer_length` tokens), mapped back to the context's characters,
  and the null answer for SQuAD 2.0-style unanswerable questions.
"""

import dataclasses

import keras
import keras_hub
import numpy as np

from keras_transfer.batching import plan_batches
from keras_transfer.preprocessing import _typed_special_pieces, _typed_specials, _valid_unicode
from keras_transfer.schedules import _is_integer as is_integer

#: Position of the "no answer in this window" label (the CLS / start token).
NULL_POSITION = 0


def plain_answers(answers):
    """`answers` with NumPy integer `answer_start` values as Python ints.

    Answers read with pandas or NumPy carry `np.int64` offsets; SQuAD dicts
    hold plain ints. A single text or start of another type becomes a list
    of one, so that the answer checks name it. Anything else is left for
    those checks to judge.
    """
    if answers is None or isinstance(answers, (str, dict)):
        return answers
    plain = []
    for answer in answers:
        if isinstance(answer, dict) and "text" in answer and "answer_start" in answer:
            texts, starts = answer["text"], answer["answer_start"]
            if not isinstance(texts, (str, list, tuple, np.ndarray)):
                texts = [texts]
            if not isinstance(starts, (list, tuple, np.ndarray)):
                starts = [starts]
            starts = [int(s) if is_integer(s) else s for s in list(starts)]
            answer = {**answer, "text": texts, "answer_start": starts}
        plain.append(answer)
    return plain


def token_offsets(preprocessor, texts):
    """Token ids and their character spans in the original texts.

    Args:
        preprocessor: a `kt.TextPreprocessor` with a WordPiece (BERT family)
            or byte-level BPE (GPT-2 family) tokenizer.
        texts: a list of strings.

    Returns:
        A list of `(ids, offsets)`: int32 arrays of shape `(n,)` and
        `(n, 2)`, `offsets[i] = (start, end)` with `text[start:end]` the
        characters token `i` came from (surrounding whitespace trimmed).
    """
    tokenizer = preprocessor.tokenizer
    specials = []  # special tokens the tokenizer would read in the text itself
    if isinstance(tokenizer, keras_hub.tokenizers.WordPieceTokenizer):
        fast = preprocessor._fast_wordpiece()
    elif isinstance(tokenizer, keras_hub.tokenizers.BytePairTokenizer) and hasattr(
        tokenizer, "_maybe_initialized_tokenizers"
    ):
        tokenizer._maybe_initialized_tokenizers()
        fast = getattr(tokenizer, "_tokenizer", None)
        if fast is None or not hasattr(fast, "encode_batch"):
            fast = None
        specials = _typed_specials(tokenizer)
    else:
        fast = None
    if fast is None:
        raise _no_offsets(type(tokenizer))
    # Lone surrogates become U+FFFD, one character for one: offsets still
    # index the original texts.
    texts = [_valid_unicode(text) for text in texts]
    pieces, owners, shifts = _typed_special_pieces(texts, specials)
    encodings = fast.encode_batch(pieces, add_special_tokens=False)
    parts = [[] for _ in texts]
    for owner, shift, encoding in zip(owners, shifts, encodings):
        offsets = np.asarray(encoding.offsets, dtype="int32").reshape(-1, 2) + shift
        parts[owner].append((np.asarray(encoding.ids, dtype="int32"), offsets))
    out = []
    for text, pieces_of_text in zip(texts, parts):
        ids = np.concatenate([np.zeros(0, "int32")] + [i for i, _ in pieces_of_text])
        offsets = np.concatenate([np.zeros((0, 2), "int32")] + [o for _, o in pieces_of_text])
        # Byte-level BPE folds the space before a word into its token; keep
        # spans to the word itself so answers never start with a space.
        for row in range(len(offsets)):
            start, end = offsets[row]
            while start < end and text[start].isspace():
                start += 1
            while end > start and text[end - 1].isspace():
                end -= 1
            offsets[row] = (start, end)
        out.append((ids, offsets))
    return out


def _no_offsets(tokenizer_class):
    return ValueError(
        f"Question answering needs the character offset of every token, "
        f"which {tokenizer_class.__name__} does not give. Supported: "
        "WordPiece tokenizers (BERT, DistilBERT, ELECTRA) and byte-level "
        "BPE tokenizers (GPT-2, RoBERTa) on HuggingFace `tokenizers` (as "
        "KerasHub runs them without TensorFlow); SentencePiece ones "
        "(ALBERT, DeBERTa, XLM-RoBERTa) are not supported yet."
    )


def check_tokenizer(tokenizer):
    """Raises `token_offsets`' `ValueError` for a tokenizer (or tokenizer
    class) of a kind that gives no character offsets, so that a model is
    refused when it is built rather than at its first `fit` or `answer`.
    """
    cls = tokenizer if isinstance(tokenizer, type) else type(tokenizer)
    if not issubclass(cls, (keras_hub.tokenizers.WordPieceTokenizer, keras_hub.tokenizers.BytePairTokenizer)):
        raise _no_offsets(cls)


@dataclasses.dataclass
class Window:
    """One packed window of a question and part of its context.

    Attributes:
        example: index of the question it belongs to.
        token_ids: the packed ids, special tokens included.
        segment_ids: 0 for the question part, 1 for the context part.
        offsets: `(len, 2)` character spans in the context for context
            tokens, `(-1, -1)` for the question and special tokens.
        start_position, end_position: token positions of the answer, or
            `NULL_POSITION` when the window does not hold it (or there is
            none); `-1` when unknown (no answers given).
    """

    example: int
    token_ids: np.ndarray
    segment_ids: np.ndarray
    offsets: np.ndarray
    start_position: int = -1
    end_position: int = -1

    @property
    def span_mask(self):
        """True where an answer may start or end: context tokens and the null position."""
        mask = self.offsets[:, 0] >= 0
        mask[NULL_POSITION] = True
        return mask


def _special(tokenizer, attribute):
    token_id = getattr(tokenizer, attribute, None) if attribute else None
    return [] if token_id is None else [int(token_id)]


def check_family(family):
    """Raises a `ValueError` for a family whose packing QA cannot use.

    Windows are `start question sep… context sep`, padded on the right,
    with the start token at position 0 standing for "no answer here".
    """
    problems = []
    if family.start is None:
        problems.append("it has no start token to stand for 'no answer'")
    if getattr(family, "padding_side", "right") != "right":
        problems.append("it pads on the left")
    if getattr(family, "end", None) is not None:
        problems.append(f"it ends every text with {family.end}")
    if problems:
        raise ValueError(
            f"QuestionAnswerer does not support the {family.name!r} family: "
            + "; ".join(problems)
            + ". Use an encoder such as BERT, DistilBERT, ELECTRA or RoBERTa "
            "(or GPT-2)."
        )


def check_window_sizes(sequence_length, stride, max_question_length, specials=3):
    """Raises a `ValueError` unless windows can hold a context and advance."""
    for name, value, low in [
        ("stride", stride, 0),
        ("max_question_length", max_question_length, 1),
    ]:
        if not is_integer(value) or value < low:
            raise ValueError(
                f"Expected `{name}` to be an integer of at least {low}. Received: {name}={value!r}"
            )
    budget = sequence_length - max_question_length - specials
    if budget - stride < 1:
        raise ValueError(
            f"Windows of sequence_length={sequence_length} with a question of up "
            f"to max_question_length={max_question_length} tokens leave "
            f"{budget} tokens of context, which must exceed stride={stride} "
            "(the overlap between windows). Use a longer sequence_length, a "
            "smaller stride, or a smaller max_question_length."
        )


def make_windows(
    preprocessor,
    questions,
    contexts,
    answers=None,
    stride=128,
    max_question_length=64,
):
    """Packs each question with its context, split into overlapping windows.

    Args:
        preprocessor: a `kt.TextPreprocessor`; its `sequence_length` is the
            window length and its family the packing.
        questions, contexts: lists of strings.
        answers: `None`, or SQuAD answer dicts (see
            `kt.datasets.QAData`); the first answer of each question is the
            training target.
        stride: tokens shared by consecutive windows. Defaults to `128`.
        max_question_length: longer questions keep their first tokens.
            Defaults to `64`.

    Returns:
        A list of `Window`s, every question's windows in context order.
    """
    family, tokenizer = preprocessor.family, preprocessor.tokenizer
    check_family(family)
    start = _special(tokenizer, family.start)
    sep = _special(tokenizer, family.sep)
    middle = sep * family.pair_sep_repeat
    specials = len(start) + len(middle) + len(sep)
    length = preprocessor.sequence_length
    check_window_sizes(length, stride, max_question_length, specials)
    question_tokens = token_offsets(preprocessor, questions)
    context_tokens = token_offsets(preprocessor, contexts)
    windows = []
    for i, ((q_ids, _), (c_ids, c_offsets)) in enumerate(zip(question_tokens, context_tokens)):
        if len(c_ids) == 0:
            raise ValueError(f"contexts[{i}] has no tokens: give a context with text in it.")
        q_ids = q_ids[:max_question_length]
        head = np.asarray(start + list(q_ids) + middle, dtype="int32")
        budget = length - len(head) - len(sep)
        step = budget - stride
        answer_span = None
        if answers is not None and answers[i]["text"]:
            a = answers[i]["answer_start"][0]
            answer_span = (a, a + len(answers[i]["text"][0]))
        first = 0
        while True:
            ids = c_ids[first : first + budget]
            offsets = c_offsets[first : first + budget]
            token_ids = np.concatenate([head, ids, sep]).astype("int32")
            segment_ids = np.concatenate(
                [np.zeros(len(head), "int32"), np.ones(len(ids) + len(sep), "int32")]
            )
            all_offsets = np.full((len(token_ids), 2), -1, dtype="int32")
            all_offsets[len(head) : len(head) + len(ids)] = offsets
            window = Window(i, token_ids, segment_ids, all_offsets)
            if answers is not None:
                window.start_position, window.end_position = _label(
                    answer_span, offsets, len(head)
                )
            windows.append(window)
            if first + budget >= len(c_ids):
                break
            first += step
    return windows


def _label(answer_span, offsets, shift):
    """Token positions of the answer in a window, or the null position."""
    if answer_span is None:
        return NULL_POSITION, NULL_POSITION
    a, b = answer_span
    if offsets[0, 0] > a or offsets[-1, 1] < b:
        return NULL_POSITION, NULL_POSITION  # not wholly inside this window
    start = int(np.argmax(offsets[:, 1] > a))  # first token ending after a
    end = int(len(offsets) - 1 - np.argmax(offsets[::-1, 0] < b))  # last starting before b
    if end < start:
        return NULL_POSITION, NULL_POSITION
    return start + shift, end + shift


class QABatches(keras.utils.PyDataset):
    """Padded batches of `Window`s for `fit`, `evaluate` and inference.

    Each batch is `(inputs, targets)`: `inputs` holds the backbone's inputs
    and `span_mask`; `targets` is `{"start_logits": ..., "end_logits": ...}`
    of answer positions (left out when the windows carry no labels).

    Args:
        preprocessor: the `kt.TextPreprocessor` the windows came from.
        windows: a list of `Window`s.
        batch_size: windows per batch. Defaults to `32`.
        shuffle: reshuffle the batches every epoch. Defaults to `False`.
        seed: seed of the shuffling. Defaults to `None` (drawn from NumPy's
            generator, so `keras.utils.set_random_seed` makes it repeatable).
    """

    def __init__(self, preprocessor, windows, batch_size=32, shuffle=False, seed=None, **kwargs):
        super().__init__(**kwargs)
        if not is_integer(batch_size) or batch_size < 1:
            raise ValueError(
                f"Expected `batch_size` to be a positive integer. Received: batch_size={batch_size!r}"
            )
        batch_size = int(batch_size)
        if not windows:
            raise ValueError("There are no windows to batch: give at least one question.")
        self.preprocessor = preprocessor
        self.windows = windows
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.rng = np.random.default_rng(np.random.randint(0, 2**31 - 1) if seed is None else seed)
        self.labelled = all(w.start_position >= 0 for w in windows)
        self.lengths = np.array([len(w.token_ids) for w in windows])
        self._batches = self._plan()

    def _plan(self):
        # Windows of similar length together, as `TextBatches` groups texts.
        return plan_batches(self.lengths, self.batch_size, self.rng, self.shuffle)

    def __len__(self):
        return len(self._batches)

    def inputs(self, rows):
        """The model inputs of the windows at `rows`, padded together."""
        windows = [self.windows[i] for i in rows]
        x = self.preprocessor.collate([(w.token_ids, w.segment_ids) for w in windows])
        span_mask = np.zeros(x["token_ids"].shape, dtype="bool")
        for row, w in enumerate(windows):
            span_mask[row, : len(w.token_ids)] = w.span_mask
        x["span_mask"] = span_mask
        return x

    def __getitem__(self, index):
        rows = self._batches[index]
        x = self.inputs(rows)
        if not self.labelled:
            return (x,)
        y = {
            "start_logits": np.array([self.windows[i].start_position for i in rows], "int32"),
            "end_logits": np.array([self.windows[i].end_position for i in rows], "int32"),
        }
        return x, y

    def on_epoch_end(self):
        if self.shuffle:
            self._batches = self._plan()


def best_span(start_logits, end_logits, window, max_answer_length=30):
    """The best-scoring valid span of one window.

    A span is valid when both ends are context tokens with text, the end is
    not before the start, and it is at most `max_answer_length` tokens
    long. Byte-level BPE has tokens of whitespace alone ("Ġ", "Ċ"), whose
    trimmed character spans are empty: a span of only those would answer
    `""` as if the question had none, and one starting or ending on one
    would answer with a space at its edge. Every such
    span is scored (`start_logits[s] + end_logits[e]`), which finds the
    exact best (HuggingFace's n-best over the top-k starts and ends
    approximates it).

    Returns:
        `(score, start, end)` token positions, or `None` when the window
        has no such span.
    """
    n = len(window.token_ids)
    start_logits = np.asarray(start_logits[:n], dtype="float64")
    end_logits = np.asarray(end_logits[:n], dtype="float64")
    context = window.offsets[:, 0] >= 0
    if not context.any():
        return None
    scores = start_logits[:, None] + end_logits[None, :]  # (start, end)
    s, e = np.indices((n, n))
    valid = context[:, None] & context[None, :] & (e >= s) & (e - s < max_answer_length)
    text = window.offsets[:, 1] > window.offsets[:, 0]  # not whitespace alone
    valid &= text[:, None] & text[None, :]
    if not valid.any():
        return None
    scores = np.where(valid, scores, -np.inf)
    flat = int(np.argmax(scores))
    start, end = divmod(flat, n)
    return float(scores[start, end]), start, end


def _softmax_at(logits, allowed, position):
    values = np.where(allowed, logits, -np.inf)
    values = values - values.max()
    weights = np.exp(values)
    return float(weights[position] / weights.sum())


def decode(
    start_logits,
    end_logits,
    windows,
    contexts,
    max_answer_length=30,
    allow_unanswerable=False,
    null_threshold=0.0,
):
    """Picks each question's answer from the logits of its windows.

    Args:
        start_logits, end_logits: per window, a 1-D array of logits over its
            tokens (padding may follow).
        windows: the `Window`s the logits belong to.
        contexts: the original context strings.
        max_answer_length: the longest answer, in tokens. Defaults to `30`.
        allow_unanswerable: answer `""` when the null score (start and end
            on the first token, the lowest over a question's windows) beats
            the best span's by more than `null_threshold`. Defaults to
            `False`.
        null_threshold: margin the null score needs over the best span.
            Defaults to `0.0`.

    Returns:
        One dict per question: `text`, `start` and `end` (character offsets
        in the context, `context[start:end] == text`; both `0` for `""`),
        and `score`, the probability of the chosen start times that of the
        end, each a softmax over the window's context tokens (and the first
        token, when unanswerable questions are allowed).
    """
    best = {}
    null = {}
    for logits_s, logits_e, window in zip(start_logits, end_logits, windows):
        n = len(window.token_ids)
        logits_s, logits_e = np.asarray(logits_s[:n], "float64"), np.asarray(logits_e[:n], "float64")
        i = window.example
        null_score = logits_s[NULL_POSITION] + logits_e[NULL_POSITION]
        if i not in null or null_score < null[i][0]:
            null[i] = (null_score, window, logits_s, logits_e)
        span = best_span(logits_s, logits_e, window, max_answer_length)
        if span is not None and (i not in best or span[0] > best[i][0]):
            best[i] = (*span, window, logits_s, logits_e)
    answers = []
    for i in range(len(contexts)):
        allowed_null = allow_unanswerable
        if i in best:
            score, s, e, window, logits_s, logits_e = best[i]
        if i not in best or (allow_unanswerable and null[i][0] - score > null_threshold):
            _, window, logits_s, logits_e = null[i]
            allowed = window.offsets[:, 0] >= 0
            allowed[NULL_POSITION] = True
            probability = _softmax_at(logits_s, allowed, NULL_POSITION) * _softmax_at(
                logits_e, allowed, NULL_POSITION
            )
            answers.append({"text": "", "start": 0, "end": 0, "score": probability})
            continue
        allowed = window.offsets[:, 0] >= 0
        allowed[NULL_POSITION] = allowed_null
        probability = _softmax_at(logits_s, allowed, s) * _softmax_at(logits_e, allowed, e)
        char_start, char_end = int(window.offsets[s, 0]), int(window.offsets[e, 1])
        answers.append(
            {
                "text": contexts[i][char_start:char_end],
                "start": char_start,
                "end": char_end,
                "score": probability,
            }
        )
    return answers
