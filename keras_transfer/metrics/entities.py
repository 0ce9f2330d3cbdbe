"""Entity-level scores for sequence tagging (NER), as `seqeval` computes them.

A tagger predicts one tag per word (`B-PER`, `I-PER`, `O`, …); what a user
cares about is whether it found the entities: "John Smith" as one `PER`
from word 0 to word 2. This module turns tag sequences into entities and
scores them, with exactly the rules and numbers of `seqeval` (the scorer
HF transformers' examples use), without depending on it:

- `get_entities(tags, scheme, mode)`: `(label, start, end)` spans, `end`
  exclusive. `mode="default"` follows conlleval (and seqeval's default
  mode): lenient, it reads IOB1, IOB2 and BIOES alike and an `I-PER` after
  `O` starts an entity. `mode="strict"` follows seqeval's strict mode: only
  entities well formed in `scheme` count, and a tag whose prefix the
  scheme lacks (`E-PER` in IOB2) is an error.
- `entity_scores(y_true, y_pred)`: precision, recall, F1 and support per
  entity type and their micro, macro and weighted averages, in seqeval's
  `classification_report(output_dict=True)` layout; `entity_report` prints
  the same table.
- `EntityF1` and `TokenAccuracy`: Keras metrics for `compile` /
  `evaluate` on token-level labels where `-100` marks positions that carry
  no label (padding, special tokens, non-first sub-tokens).

Schemes: `"IOB1"` (an entity starts with `I-` unless it follows one of
the same type: CoNLL-2003's original files), `"IOB2"` (every entity starts
with `B-`: CoNLL-2003 as most copies ship it), `"BIOES"` (also `E-` for
the last word and `S-` for single-word entities; `"IOBES"` is accepted as
another name).
"""

import collections

import keras
import numpy as np

from keras_transfer.wording import counted

SCHEMES = ("IOB1", "IOB2", "BIOES")
MODES = ("default", "strict")
IGNORE_CLASS = -100

_ALIASES = {"IOBES": "BIOES"}
_PREFIXES = {"IOB1": "IOB", "IOB2": "IOB", "BIOES": "IOBES"}
_READABLE = {"IOB1": "B-, I- and O", "IOB2": "B-, I- and O", "BIOES": "B-, I-, E-, S- and O"}


def check_scheme(scheme):
    """Returns the canonical name of a tag scheme, or raises a `ValueError`.

    Args:
        scheme: `"IOB1"`, `"IOB2"` or `"BIOES"` (any case; `"IOBES"` is
            read as `"BIOES"`).
    """
    name = scheme.upper() if isinstance(scheme, str) else scheme
    name = _ALIASES.get(name, name)
    if name not in SCHEMES:
        raise ValueError(
            f"Unknown tag scheme {scheme!r}. Expected one of {list(SCHEMES)}: "
            "'IOB2' when every entity starts with B- (CoNLL-2003 as usually "
            "shipped), 'IOB1' when entities start with I- and B- only "
            "separates two adjacent entities of one type, 'BIOES' with E- "
            "and S- tags as well."
        )
    return name


def _check_mode(mode):
    if mode not in MODES:
        raise ValueError(
            f"Unknown mode {mode!r}. Expected 'default' (lenient, as "
            "conlleval and seqeval's default) or 'strict' (only entities "
            "well formed in the tag scheme count, as seqeval's mode='strict')."
        )
    return mode


def split_tag(tag):
    """Splits a tag into `(prefix, label)`: `"B-PER"` → `("B", "PER")`.

    `"O"` gives `("O", "")`; a tag without a label, such as `"B"`, gives
    the label `"_"` (as seqeval does).
    """
    if tag == "O":
        return "O", ""
    return tag[:1], tag[1:].split("-", 1)[-1] or "_"


# Default (conlleval) mode: a direct port of seqeval's `end_of_chunk` and
# `start_of_chunk`, so that every edge case scores the same.


def _end_of_chunk(prev_tag, tag, prev_type, type_):
    if prev_tag in ("E", "S"):
        return True
    if prev_tag in ("B", "I") and tag in ("B", "S", "O"):
        return True
    return prev_tag not in ("O", ".") and prev_type != type_


def _start_of_chunk(prev_tag, tag, prev_type, type_):
    if tag in ("B", "S"):
        return True
    if prev_tag in ("E", "S", "O") and tag in ("E", "I"):
        return True
    return tag not in ("O", ".") and prev_type != type_


def _default_entities(tags):
    chunks = []
    prev_tag, prev_type, begin = "O", "", 0
    for i, chunk in enumerate(list(tags) + ["O"]):
        tag = chunk[0]
        type_ = chunk[1:].split("-", 1)[-1] or "_"
        if _end_of_chunk(prev_tag, tag, prev_type, type_):
            chunks.append((prev_type, begin, i))
        if _start_of_chunk(prev_tag, tag, prev_type, type_):
            begin = i
        prev_tag, prev_type = tag, type_
    return chunks


# Strict mode: seqeval's `scheme.Tokens` rules, as (previous prefixes,
# current prefixes, same label?) patterns; None means any label.

_ANY = "IOBES"
_RULES = {
    "IOB1": {
        "start": [("O", "I", None), ("I", "I", False), ("B", "I", None), ("I", "B", True), ("B", "B", True)],
        "inside": [("B", "I", True), ("I", "I", True)],
        "end": [
            ("I", "I", False), ("I", "O", None), ("I", "B", None),
            ("B", "O", None), ("B", "I", False), ("B", "B", True),
        ],
    },
    "IOB2": {
        "start": [(_ANY, "B", None)],
        "inside": [("B", "I", True), ("I", "I", True)],
        "end": [
            ("I", "O", None), ("I", "I", False), ("I", "B", None),
            ("B", "O", None), ("B", "I", False), ("B", "B", None),
        ],
    },
    "BIOES": {
        "start": [(_ANY, "B", None), (_ANY, "S", None)],
        "inside": [("B", "I", True), ("B", "E", True), ("I", "I", True), ("I", "E", True)],
        "end": [("S", _ANY, None), ("E", _ANY, None)],
    },
}


def _matches(rules, prev, current):
    for prev_prefixes, current_prefixes, same in rules:
        if prev[0] in prev_prefixes and current[0] in current_prefixes:
            if same is None or (prev[1] == current[1]) == same:
                return True
    return False


def _strict_entities(tags, scheme):
    allowed = _PREFIXES[scheme]
    tokens = []
    for position, tag in enumerate(tags):
        prefix = tag[:1]
        if prefix not in allowed:
            raise ValueError(
                f"Tag {tag!r} at position {position} is not {'an' if scheme.startswith('I') else 'a'} {scheme} tag: "
                f"its tags are {_READABLE[scheme]}. Pass the scheme the tags "
                "are written in (`scheme=`)."
            )
        tokens.append((prefix, tag[1:].strip("-") or "_"))
    tokens.append(("O", "_"))
    rules = _RULES[scheme]
    entities, i, prev = [], 0, ("O", "_")
    while i < len(tokens):
        token = tokens[i]
        if _matches(rules["start"], prev, token):
            end, inner = i + 1, token
            while end < len(tokens) and _matches(rules["inside"], inner, tokens[end]):
                inner = tokens[end]
                end += 1
            if _matches(rules["end"], tokens[end - 1], tokens[end]):
                entities.append((token[1], i, end))
            i = end
        else:
            i += 1
        prev = tokens[i - 1]
    return entities


def get_entities(tags, scheme="IOB2", mode="default"):
    """The entities in one sequence of tags.

    Args:
        tags: a list of tag strings, one per word.
        scheme: the tag scheme, `"IOB1"`, `"IOB2"` or `"BIOES"`; only
            strict mode reads it. Defaults to `"IOB2"`.
        mode: `"default"` (lenient, conlleval's rules) or `"strict"`.
            Defaults to `"default"`.

    Returns:
        A list of `(label, start, end)` tuples, `end` exclusive, in order.

    Example:
    ```python
    get_entities(["B-PER", "I-PER", "O", "B-LOC"])
    # [("PER", 0, 2), ("LOC", 3, 4)]
    get_entities(["I-PER", "I-PER"], mode="strict")  # IOB2: no B-, no entity
    # []
    ```
    """
    scheme = check_scheme(scheme)
    _check_mode(mode)
    tags = list(tags)
    for position, tag in enumerate(tags):
        if not isinstance(tag, str) or not tag:
            raise ValueError(
                f"Expected tags to be non-empty strings such as 'B-PER' or "
                f"'O'. Received {tag!r} at position {position}."
            )
    if mode == "strict":
        return _strict_entities(tags, scheme)
    return _default_entities(tags)


def _check_sequences(y_true, y_pred):
    if isinstance(y_true, str) or isinstance(y_pred, str):
        raise ValueError("Expected lists of tag sequences, got a string.")
    y_true, y_pred = list(y_true), list(y_pred)
    if y_true and isinstance(y_true[0], str):
        raise ValueError(
            "Expected a list of tag sequences (one list per sentence), got a "
            "flat list of tags. For one sentence, wrap it: [tags]."
        )
    if len(y_true) != len(y_pred):
        raise ValueError(
            f"Got {counted(len(y_true), 'true tag sequence')} but "
            f"{len(y_pred)} predicted {'ones' if len(y_pred) != 1 else 'one'}. "
            "Give one predicted sequence per sentence."
        )
    for index, (true, pred) in enumerate(zip(y_true, y_pred)):
        if len(true) != len(pred):
            raise ValueError(
                f"Sentence {index} has {len(true)} true tags but {len(pred)} "
                "predicted ones. Give one predicted tag per word."
            )
    return y_true, y_pred


def count_entities(y_true, y_pred, scheme="IOB2", mode="default"):
    """Per entity type: how many are true, predicted, and correct.

    An entity is correct when a predicted one has the same type, sentence,
    start and end as a true one.

    Returns:
        `{label: (true, predicted, correct)}`, labels sorted.
    """
    y_true, y_pred = _check_sequences(y_true, y_pred)
    true_set, pred_set = set(), set()
    for sentence, (true, pred) in enumerate(zip(y_true, y_pred)):
        true_set.update((sentence,) + e for e in get_entities(true, scheme, mode))
        pred_set.update((sentence,) + e for e in get_entities(pred, scheme, mode))
    counts = collections.defaultdict(lambda: [0, 0, 0])
    for entity in true_set:
        counts[entity[1]][0] += 1
    for entity in pred_set:
        counts[entity[1]][1] += 1
    for entity in true_set & pred_set:
        counts[entity[1]][2] += 1
    return {label: tuple(counts[label]) for label in sorted(counts)}


def _divide(numerator, denominator):
    return numerator / denominator if denominator else 0.0


def _prf(true, pred, correct):
    precision = _divide(correct, pred)
    recall = _divide(correct, true)
    f1 = _divide(2 * precision * recall, precision + recall)
    return {"precision": precision, "recall": recall, "f1-score": f1, "support": true}


def scores_from_counts(counts):
    """seqeval's report dictionary from `count_entities`' counts."""
    report = {label: _prf(*c) for label, c in counts.items()}
    per_type = list(report.values())
    total_true = sum(c[0] for c in counts.values())
    micro = _prf(total_true, sum(c[1] for c in counts.values()), sum(c[2] for c in counts.values()))
    macro = {
        key: float(np.mean([r[key] for r in per_type])) if per_type else 0.0
        for key in ("precision", "recall", "f1-score")
    }
    if total_true:
        weighted = {
            key: float(np.average([r[key] for r in per_type], weights=[r["support"] for r in per_type]))
            for key in ("precision", "recall", "f1-score")
        }
    else:  # seqeval: zero division gives 0 (or, with no predictions either, 0 too)
        weighted = {"precision": 0.0, "recall": 0.0, "f1-score": 0.0}
    report["micro avg"] = micro
    report["macro avg"] = dict(macro, support=total_true)
    report["weighted avg"] = dict(weighted, support=total_true)
    return report


def entity_scores(y_true, y_pred, scheme="IOB2", mode="default"):
    """Entity-level precision, recall, F1 and support, as seqeval reports them.

    Args:
        y_true: the true tags, a list of tag lists (one per sentence).
        y_pred: the predicted tags, the same shape.
        scheme: `"IOB1"`, `"IOB2"` or `"BIOES"`; read in strict mode.
            Defaults to `"IOB2"`.
        mode: `"default"` (conlleval, seqeval's default) or `"strict"`.
            Defaults to `"default"`.

    Returns:
        A dictionary with one entry per entity type (sorted) and then
        `"micro avg"`, `"macro avg"` and `"weighted avg"`, each a dictionary
        of `precision`, `recall`, `f1-score` and `support` (the number of
        true entities): seqeval's `classification_report(output_dict=True)`.
        A ratio with a zero denominator is 0, as in seqeval.

    Example:
    ```python
    y_true = [["O", "B-MISC", "I-MISC", "O"], ["B-PER", "I-PER", "O"]]
    y_pred = [["B-MISC", "I-MISC", "I-MISC", "O"], ["B-PER", "I-PER", "O"]]
    entity_scores(y_true, y_pred)["micro avg"]["f1-score"]  # 0.5
    ```
    """
    return scores_from_counts(count_entities(y_true, y_pred, scheme, mode))


def entity_report(y_true, y_pred, scheme="IOB2", mode="default", digits=4):
    """`entity_scores` as a printable table, laid out like seqeval's report.

    Args:
        y_true: the true tags, a list of tag lists.
        y_pred: the predicted tags.
        scheme: the tag scheme. Defaults to `"IOB2"`.
        mode: `"default"` or `"strict"`. Defaults to `"default"`.
        digits: decimals shown. Defaults to `4`.
    """
    return format_report(entity_scores(y_true, y_pred, scheme, mode), digits)


def format_report(scores, digits=4):
    """Formats an `entity_scores` dictionary as a table."""
    width = max([len(name) for name in scores] + [len("weighted avg"), digits])
    header = f"{'':>{width}} {'precision':>9} {'recall':>9} {'f1-score':>9} {'support':>9}"
    lines = [header, ""]
    for name, row in scores.items():
        if name == "micro avg":
            lines.append("")
        lines.append(
            f"{name:>{width}} {row['precision']:>9.{digits}f} {row['recall']:>9.{digits}f} "
            f"{row['f1-score']:>9.{digits}f} {row['support']:>9}"
        )
    return "\n".join(lines) + "\n"


# Keras metrics -------------------------------------------------------------------


@keras.saving.register_keras_serializable(package="keras_transfer")
class TokenAccuracy(keras.metrics.Metric):
    """Accuracy over the labelled positions of token-level labels.

    Positions whose label is `ignore_class` (padding, special tokens,
    non-first sub-tokens of a word) are left out; with a `sample_weight`
    (a translator's target mask), each position counts by its weight.
    Correct and counted positions are summed over every batch.

    Args:
        ignore_class: the label of positions to skip. Defaults to `-100`.
        name: the metric's name. Defaults to `"accuracy"`.
    """

    def __init__(self, ignore_class=IGNORE_CLASS, name="accuracy", **kwargs):
        super().__init__(name=name, **kwargs)
        self.ignore_class = ignore_class
        self.correct = self.add_variable((), initializer="zeros", name="correct")
        self.count = self.add_variable((), initializer="zeros", name="count")

    def update_state(self, y_true, y_pred, sample_weight=None):
        y_true = keras.ops.cast(y_true, "int32")
        predicted = keras.ops.cast(keras.ops.argmax(y_pred, axis=-1), "int32")
        mask = keras.ops.cast(keras.ops.not_equal(y_true, self.ignore_class), self.dtype)
        if sample_weight is not None:
            weight = keras.ops.cast(sample_weight, self.dtype)
            for _ in range(len(y_true.shape) - len(weight.shape)):  # one weight per row
                weight = keras.ops.expand_dims(weight, -1)
            mask = mask * weight
        hits = mask * keras.ops.cast(keras.ops.equal(predicted, y_true), self.dtype)
        self.correct.assign_add(keras.ops.sum(hits))
        self.count.assign_add(keras.ops.sum(mask))

    def result(self):
        return keras.ops.divide_no_nan(self.correct, self.count)

    def get_config(self):
        return {**super().get_config(), "ignore_class": self.ignore_class}


@keras.saving.register_keras_serializable(package="keras_transfer")
class EntityF1(keras.metrics.Metric):
    """Entity-level F1 (seqeval's) of a tagger, for `compile` and `evaluate`.

    Reads token-level labels where `ignore_class` marks unlabelled positions
    and logits (or probabilities) of shape `(batch, length, num_tags)`. The
    labelled positions of each row, in order, are its words; their true and
    predicted tags are turned into entities and counted over every batch.
    Each row is scored as a sentence (a sentence longer than the model's
    `sequence_length` is split into windows, each scored on its own; for
    scores over whole sentences use `TokenClassifier.report`). Runs eagerly
    (NumPy), so it does not suit `jit_compile=True`.

    Args:
        tag_names: the tags, index `i` naming tag `i`.
        scheme: `"IOB1"`, `"IOB2"` or `"BIOES"`. Defaults to `"IOB2"`.
        mode: `"default"` or `"strict"`. Defaults to `"default"`.
        average: `"micro"` (over all entities) or `"macro"` (mean over the
            entity types). Defaults to `"micro"`.
        ignore_class: the label of positions to skip. Defaults to `-100`.
        name: the metric's name. Defaults to `"entity_f1"`.

    Example:
    ```python
    metric = EntityF1(["O", "B-PER", "I-PER"])
    metric.update_state([[1, 2, 0]], keras.ops.one_hot([[1, 2, 0]], 3))
    float(metric.result())  # 1.0
    ```
    """

    def __init__(
        self,
        tag_names,
        scheme="IOB2",
        mode="default",
        average="micro",
        ignore_class=IGNORE_CLASS,
        name="entity_f1",
        **kwargs,
    ):
        super().__init__(name=name, **kwargs)
        self.tag_names = [str(tag) for tag in tag_names]
        self.scheme = check_scheme(scheme)
        self.mode = _check_mode(mode)
        if average not in ("micro", "macro"):
            raise ValueError(f"Expected `average` to be 'micro' or 'macro'. Received: average={average!r}")
        self.average = average
        self.ignore_class = ignore_class
        self.labels = sorted({split_tag(tag)[1] for tag in self.tag_names if tag != "O"})
        size = max(1, len(self.labels))
        self.counts = self.add_variable((3, size), initializer="zeros", name="counts")

    def update_state(self, y_true, y_pred, sample_weight=None):
        y_true = np.asarray(keras.ops.convert_to_numpy(y_true)).astype("int64")
        predicted = np.argmax(keras.ops.convert_to_numpy(y_pred), axis=-1)
        names = np.asarray(self.tag_names, dtype=object)
        true_tags, pred_tags = [], []
        for true_row, pred_row in zip(y_true, predicted):
            keep = true_row != self.ignore_class
            true_tags.append(list(names[true_row[keep]]))
            pred_tags.append(list(names[pred_row[keep]]))
        batch = np.zeros((3, max(1, len(self.labels))), dtype="float32")
        for label, counts in count_entities(true_tags, pred_tags, self.scheme, self.mode).items():
            batch[:, self.labels.index(label)] = counts
        self.counts.assign(keras.ops.convert_to_numpy(self.counts) + batch)

    def result(self):
        counts = keras.ops.convert_to_numpy(self.counts)
        if self.average == "micro":
            return _prf(*counts[:, : len(self.labels)].sum(axis=1))["f1-score"]
        present = [i for i in range(len(self.labels)) if counts[0, i] or counts[1, i]]
        if not present:
            return 0.0
        return float(np.mean([_prf(*counts[:, i])["f1-score"] for i in present]))

    def get_config(self):
        return {
            **super().get_config(),
            "tag_names": self.tag_names,
            "scheme": self.scheme,
            "mode": self.mode,
            "average": self.average,
            "ignore_class": self.ignore_class,
        }
