"""The `keras-transfer` command, run in-process through `main(argv)`."""

import pytest

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
    assert "blocks 1-1 of 0-1 train" in capsys.readouterr().out


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
