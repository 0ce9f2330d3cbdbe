"""Corpus BLEU and chrF for generated text, computed by sacreBLEU.

sacreBLEU is the reference implementation the WMT shared tasks report with:
its default 13a tokenizer and exponential smoothing, so scores compare with
published ones.
"""

from keras_transfer.wording import counted


def _check(hypotheses, references):
    for value, name in ((hypotheses, "hypotheses"), (references, "references")):
        if isinstance(value, str):
            raise ValueError(f"Expected a list of strings for `{name}`, got a single string.")
    hypotheses, references = list(hypotheses), list(references)
    if len(hypotheses) != len(references):
        raise ValueError(
            f"Got {counted(len(hypotheses), 'hypothesis', 'hypotheses')} but "
            f"{counted(len(references), 'reference')}: "
            "give one reference per hypothesis."
        )
    if not hypotheses:
        raise ValueError("There is nothing to score: `hypotheses` is empty.")
    for i, (h, r) in enumerate(zip(hypotheses, references)):
        if not isinstance(h, str) or not isinstance(r, str):
            raise ValueError(
                f"Expected strings; item {i} is ({type(h).__name__}, {type(r).__name__})."
            )
    return hypotheses, references


def bleu(hypotheses, references):
    """Corpus BLEU (0–100) of `hypotheses` against one reference each.

    Example:
    ```python
    kt.metrics.bleu(["a dog runs"], ["a dog runs"])  # 100.0
    ```
    """
    import sacrebleu

    hypotheses, references = _check(hypotheses, references)
    return float(sacrebleu.corpus_bleu(hypotheses, [references]).score)


def chrf(hypotheses, references):
    """Corpus chrF (0–100): character n-gram F-score, kinder to short outputs."""
    import sacrebleu

    hypotheses, references = _check(hypotheses, references)
    return float(sacrebleu.corpus_chrf(hypotheses, [references]).score)
