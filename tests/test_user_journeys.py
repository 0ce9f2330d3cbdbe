"""What a new user sees when following the README and docs/ step by step.

Each test pins one thing that was found wrong by running the documented
snippets on real data (all-MiniLM-L6-v2, IMDB, CoNLL-2003, SQuAD,
Multi30k) and is reproduced here on the tiny presets.
"""

import keras_transfer as kt
from helpers import LABELS
from helpers import TEXTS


def test_fit_says_what_the_second_feature_progress_bar_is(bert_preset, capsys):
    # `fit(train, validation_data=test)` on a frozen backbone shows two
    # progress bars of the feature pass; the line before them named only
    # the training texts, so the second bar (the validation texts) looked
    # like the same work done twice. It also said "in 1 batches".
    model = kt.TextClassifier.from_preset(bert_preset, num_classes=2, sequence_length=16)
    model.fit(TEXTS, LABELS, validation_data=(TEXTS[:3], LABELS[:3]), epochs=1, verbose=1)
    out = capsys.readouterr().out
    assert (
        "Frozen backbone: computing its features once for 10 texts, in 1 batch sorted by "
        "length" in out
    )
    assert "padding), then for the 3 validation texts." in out
    model.fit(TEXTS, LABELS, epochs=1, verbose=1)
    line = [row for row in capsys.readouterr().out.splitlines() if row.startswith("Frozen backbone")]
    assert line and line[0].endswith("padding).") and "validation" not in line[0]
