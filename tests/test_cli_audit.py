"""Audit of the `keras-transfer` command as a user meets it: existing
outputs, unwritable folders, option values, Ctrl-C, stdin decoding, the
probabilities `predict` prints and the `presets` errors."""

import io
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import keras_transfer as kt
from keras_transfer import cli

TEXTS = ["a good film", "a bad film", "good", "bad"] * 2
LABELS = [1, 0, 1, 0] * 2


@pytest.fixture(scope="module")
def saved_classifier(bert_preset, tmp_path_factory):
    """A tiny TextClassifier saved as `fit` saves it (logits out)."""
    model = kt.TextClassifier.from_preset(bert_preset, label_names=["neg", "pos"], sequence_length=16)
    path = tmp_path_factory.mktemp("cli_audit") / "model.keras"
    model.save(str(path))
    return str(path)


def _fail_if_training(monkeypatch):
    monkeypatch.setattr(cli, "_fit_and_report", lambda args: pytest.fail("trained before refusing"))


# --- fit: the output file -----------------------------------------------------


def test_fit_keeps_an_existing_model_without_overwrite(tmp_path, monkeypatch):
    """The default --output is the same file every run: a second run silently
    replaced the first model."""
    output = tmp_path / "imdb-classifier.keras"
    output.write_bytes(b"the user's earlier model")
    _fail_if_training(monkeypatch)
    with pytest.raises(SystemExit, match="exists. Pass --overwrite"):
        cli.main(["fit", "--output", str(output)])
    assert output.read_bytes() == b"the user's earlier model"


def test_fit_overwrite_replaces_the_model(tmp_path, monkeypatch):
    output = tmp_path / "m.keras"
    output.write_bytes(b"old")
    seen = []
    monkeypatch.setattr(cli, "_fit_and_report", lambda args: seen.append(args.output))
    cli.main(["fit", "--output", str(output), "--overwrite"])
    assert seen == [str(output)]


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="needs Linux /proc as an unwritable folder")
def test_fit_refuses_an_unwritable_folder_before_training(monkeypatch):
    """Only the folder's existence was checked: the save failed after training,
    with a raw errno message (a PermissionError even with a traceback)."""
    _fail_if_training(monkeypatch)
    with pytest.raises(SystemExit, match=r"error: --output '/proc/m.keras': cannot write in the folder '/proc'"):
        cli.main(["fit", "--output", "/proc/m.keras"])


def test_os_errors_end_in_one_line_not_a_traceback(tmp_path, monkeypatch):
    """A PermissionError (unreadable model, read-only disk) escaped `main`."""

    def denied(path, *args, **kwargs):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(kt, "load_model", denied)
    with pytest.raises(SystemExit, match="error: .*Permission denied"):
        cli.main(["predict", "--model", str(tmp_path / "m.keras"), "text"])


# --- fit: option values --------------------------------------------------------


@pytest.mark.parametrize(
    "option, value, fragment",
    [
        ("--learning-rate", "-1", "expected a positive number"),
        ("--learning-rate", "0", "expected a positive number"),
        ("--learning-rate", "nan", "expected a positive number"),
        ("--learning-rate", "fast", "expected a positive number such as 3e-3, got 'fast'"),
        ("--seed", "-1", "expected a seed from 0 to 2**32 - 1"),
        ("--seed", str(2**32), "expected a seed from 0 to 2**32 - 1"),
    ],
)
def test_fit_refuses_bad_rates_and_seeds_before_loading(option, value, fragment, tmp_path, monkeypatch, capsys):
    """These failed after the data and the model were loaded, in the terms of
    the library (`peak_learning_rate`, "Seed must be ...") rather than the option."""
    _fail_if_training(monkeypatch)
    with pytest.raises(SystemExit) as raised:
        cli.main(["fit", option, value, "--output", str(tmp_path / "m.keras")])
    assert raised.value.code == 2
    assert f"argument {option}: {fragment}" in capsys.readouterr().err


def test_fit_help_shows_the_output_default_and_overwrite(capsys):
    with pytest.raises(SystemExit):
        cli.main(["fit", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "(default: imdb-classifier.keras)" in out and "--overwrite" in out


# --- Ctrl-C --------------------------------------------------------------------


def test_ctrl_c_during_fit_is_one_line_and_exit_130(tmp_path, monkeypatch, capsys):
    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "_fit_and_report", interrupted)
    with pytest.raises(SystemExit) as raised:
        cli.main(["fit", "--output", str(tmp_path / "m.keras")])
    assert raised.value.code == 130
    assert capsys.readouterr().err.strip() == "interrupted: the model was not saved"


def test_sigint_in_a_real_process_leaves_no_traceback(bert_preset, tmp_path):
    """Ctrl-C during `fit` printed a torch traceback and exited 1."""
    process = subprocess.Popen(
        [sys.executable, "-c", "from keras_transfer import cli; cli.main()", "fit", "--preset", bert_preset,
         "--max-train", "16", "--max-test", "8", "--epochs", "100000", "--sequence-length", "16",
         "--output", str(tmp_path / "m.keras")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "KERAS_BACKEND": "torch"},
    )
    try:
        deadline = time.monotonic() + 240
        for line in process.stdout:  # wait until training has started
            if line.startswith("Epoch 2/") or time.monotonic() > deadline:
                break
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 130, err
    assert "Traceback" not in err and "interrupted: the model was not saved" in err
    assert not (tmp_path / "m.keras").exists()


# --- predict ---------------------------------------------------------------------


def _stdin(monkeypatch, data):
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data), encoding="utf-8"))


def test_predict_reads_stdin_as_utf8_skipping_blanks_and_bom(saved_classifier, monkeypatch, capsys):
    _stdin(monkeypatch, "\ufeffcafé good\r\n\n   \nbad\n".encode("utf-8"))
    cli.main(["predict", "--model", saved_classifier])
    lines = capsys.readouterr().out.splitlines()
    assert [line.split("\t", 2)[2] for line in lines] == ["café good", "bad"]


def test_predict_non_utf8_stdin_names_the_line(saved_classifier, monkeypatch):
    """Depending on the locale this was a bare codec error ("'utf-8' codec
    can't decode byte 0xe9 ...") or text with surrogates sent to the model."""
    _stdin(monkeypatch, b"fine\ncaf\xe9 good\n")
    with pytest.raises(SystemExit, match=r"line 2 of stdin is not UTF-8 text \(byte 0xe9 at position 3\).*iconv"):
        cli.main(["predict", "--model", saved_classifier])


def test_predict_prints_the_probability_of_a_softmax_model_once(bert_preset, tmp_path, capsys):
    """A classifier built with activation="softmax" already outputs
    probabilities: the command applied softmax a second time (0.99 -> 0.73)."""
    model = kt.TextClassifier.from_preset(
        bert_preset, label_names=["neg", "pos"], sequence_length=16, activation="softmax"
    )
    kernel, bias = model.get_layer("logits").get_weights()
    model.get_layer("logits").set_weights([kernel * 0, np.array([-3.0, 3.0], dtype=bias.dtype)])
    path = tmp_path / "softmax.keras"
    model.save(str(path))
    expected = kt.load_model(str(path)).predict(["a good film"], verbose=0)[0]
    assert expected[1] > 0.99
    cli.main(["predict", "--model", str(path), "a good film"])
    label, probability, _ = capsys.readouterr().out.strip().split("\t")
    assert label == "pos" and float(probability) == pytest.approx(expected[1], abs=1e-3)


def test_predict_logits_model_prints_softmax_probabilities(saved_classifier, capsys):
    model = kt.load_model(saved_classifier)
    logits = model.predict(["a good film"], verbose=0)[0]
    expected = np.exp(logits) / np.exp(logits).sum()
    cli.main(["predict", "--model", saved_classifier, "a good film"])
    label, probability, _ = capsys.readouterr().out.strip().split("\t")
    assert label == ["neg", "pos"][int(expected.argmax())]
    assert float(probability) == pytest.approx(expected.max(), abs=1e-3)


# --- presets -----------------------------------------------------------------------


def test_presets_unknown_family_lists_the_families(capsys):
    with pytest.raises(SystemExit, match=r"no presets of family 'BERT'\. Families: .*\bbert\b.*gpt2"):
        cli.main(["presets", "--family", "BERT"])


def test_presets_unsupported_family_points_to_all():
    family = next(
        (info["family"] for info in kt.list_presets(all_families=True).values()
         if info["family"] not in {i["family"] for i in kt.list_presets().values()}),
        None,
    )
    if family is None:
        pytest.skip("KerasHub lists no family keras_transfer leaves out")
    with pytest.raises(SystemExit, match="`--all` lists it"):
        cli.main(["presets", "--family", family])
