"""The `keras-transfer` command, run in-process through `main(argv)`."""

import os
import subprocess
import sys

import pytest
from helpers import raises

from keras_transfer import cli


def test_presets_lists_text_families_offline(capsys):
    cli.main(["presets"])
    out = capsys.readouterr().out
    assert "bert_base_en_uncased" in out
    assert "gpt2_base_en" in out
    assert "resnet" not in out


def test_presets_family_filter(capsys):
    cli.main(["presets", "--family", "gpt2"])
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines and all(" gpt2 " in line for line in lines)


def test_presets_unknown_family_is_a_clear_error():
    with pytest.raises(SystemExit, match="no presets of family 'nope'"):
        cli.main(["presets", "--family", "nope"])


def test_fit_then_predict_on_a_tiny_preset(bert_preset, tmp_path, capsys):
    output = tmp_path / "model.keras"
    cli.main(
        [
            "fit", "--preset", bert_preset, "--max-train", "24", "--max-test", "16",
            "--epochs", "2", "--batch-size", "8", "--sequence-length", "32",
            "--output", str(output),
        ]
    )
    out = capsys.readouterr().out
    assert "Test accuracy:" in out and "on 16 reviews" in out
    # --max-train / --max-test take class-balanced subsets of the sample, as their help says.
    assert "24 texts, label_names=['neg', 'pos'], class_counts={'neg': 12, 'pos': 12}" in out
    assert "16 texts, label_names=['neg', 'pos'], class_counts={'neg': 8, 'pos': 8}" in out
    assert "Frozen: " in out and "frozen whole" in out
    assert output.is_file()
    curves = tmp_path / "model.curves.png"  # the training curves, beside the model
    assert curves.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert f"Saved the training curves to {curves}" in out

    cli.main(["predict", "--model", str(output), "a good film", "a bad film"])
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2
    label, probability, text = lines[0].split("\t")
    assert label in ("neg", "pos") and 0.5 <= float(probability) <= 1.0 and text == "a good film"


def test_fit_with_top_blocks_unfrozen(bert_preset, tmp_path, capsys):
    cli.main(
        [
            "fit", "--preset", bert_preset, "--max-train", "16", "--max-test", "8",
            "--epochs", "1", "--sequence-length", "16", "--freeze", "1",
            "--output", str(tmp_path / "m.keras"),
        ]
    )
    assert "block 1 of 0-1 trains" in capsys.readouterr().out


@pytest.mark.parametrize("value", ["some", "-1", "1.5"])
def test_bad_freeze_value(value, capsys):
    with pytest.raises(SystemExit):
        cli.main(["fit", "--freeze", value])
    assert "--freeze" in capsys.readouterr().err


def test_missing_data_path_is_a_clear_error(bert_preset, tmp_path):
    with pytest.raises(SystemExit, match="error: .*nowhere"):
        cli.main(["fit", "--preset", bert_preset, "--data", str(tmp_path / "nowhere")])


def test_predict_missing_model_file(tmp_path):
    with pytest.raises(SystemExit, match="No saved model"):
        cli.main(["predict", "--model", str(tmp_path / "none.keras"), "text"])


def test_unknown_preset_suggests_a_name(tmp_path):
    with pytest.raises(SystemExit, match="Did you mean 'bert_base_en_uncased'"):
        cli.main(["fit", "--preset", "bert_base_en_uncasd", "--output", str(tmp_path / "m.keras")])


@pytest.mark.parametrize(
    "output, fragments",
    [
        ("missing/m.keras", ("--output", "does not exist", "missing")),
        ("m.h5", ("--output", "m.h5'", "ending in .keras")),
        ("m", ("--output", "ending in .keras")),
    ],
)
def test_fit_checks_the_output_path_before_training(output, fragments, tmp_path, monkeypatch):
    monkeypatch.setattr(cli, "_fit_and_report", lambda args: pytest.fail("trained before checking --output"))
    with raises(SystemExit, "error: ", *fragments):
        cli.main(["fit", "--output", str(tmp_path / output)])


@pytest.mark.parametrize(
    "option, value",
    [("--epochs", "0"), ("--epochs", "-1"), ("--max-train", "0"), ("--max-test", "0"), ("--batch-size", "0"),
     ("--sequence-length", "0"), ("--max-train", "ten")],
)
def test_fit_refuses_counts_below_one_before_training(option, value, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(cli, "_fit_and_report", lambda args: pytest.fail(f"trained with {option} {value}"))
    with pytest.raises(SystemExit) as raised:
        cli.main(["fit", option, value, "--output", str(tmp_path / "m.keras")])
    assert raised.value.code == 2  # argparse's usage error
    err = capsys.readouterr().err
    assert f"argument {option}: expected a positive integer" in err and value in err


def test_fit_help_explains_every_option(capsys):
    with pytest.raises(SystemExit):
        cli.main(["fit", "--help"])
    out = capsys.readouterr().out
    assert "tokens per review" in out and "which tokens of a long review to keep" in out
    assert "seed of the data sample" in out
    parser = cli._parser()
    fit = parser._subparsers._group_actions[0].choices["fit"]
    assert all(action.help for action in fit._actions), [a.dest for a in fit._actions if not a.help]


def test_presets_into_a_closed_pipe_stops_quietly():
    """`keras-transfer presets | head`: the reader leaves, no traceback follows."""
    read, write = os.pipe()
    os.close(read)  # the reader is gone before anything is written
    try:
        finished = subprocess.run(
            [sys.executable, "-c", "from keras_transfer import cli; cli.main(['presets'])"],
            stdout=write, stderr=subprocess.PIPE, text=True, timeout=300,
        )
    finally:
        os.close(write)
    assert finished.returncode == 1
    assert "Traceback" not in finished.stderr and "BrokenPipeError" not in finished.stderr, finished.stderr
