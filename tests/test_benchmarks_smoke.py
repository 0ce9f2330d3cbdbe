"""Smoke runs of the benchmark scripts, so they never drift from the code.

Each script runs with `--smoke` (a tiny random BERT/GPT-2 built in code,
synthetic texts, a couple of steps, no real data or weights) in its own
process and must print its Markdown table. The processes start
together: most of their time is importing torch and Keras, which overlaps
well. Without transformers the scripts run their keras_transfer side only
(`--no-hf`). The GPU script runs on the CPU here (CUDA hidden).
"""

import importlib.util
import os
import pathlib
import subprocess
import sys

import pytest

BENCHMARKS = pathlib.Path(__file__).resolve().parent.parent / "benchmarks"
HAVE_HF = importlib.util.find_spec("transformers") is not None
TIMEOUT = 300  # seconds per script; a smoke run takes 10-30 s on 2 idle cores

# script (and extra arguments): (title it prints, first cells of the table rows it must print)
SCRIPTS = {
    "cpu_step_time.py": (
        "CPU step time",
        ["frozen backbone, head training step", "full fine-tuning step", "inference (forward only)"],
    ),
    "cpu_step_time.py --jit-compile --cases inference --no-keras-kernels": (
        "CPU step time",
        ["inference (forward only)"],
    ),
    "imdb_end_to_end.py": (
        "IMDB end to end",
        ["keras_transfer (bucketing + feature cache)"]
        + (["HF loop (pad to max, recompute)", "speed-up HF/kt"] if HAVE_HF else []),
    ),
    "padding.py": (
        "Padding per epoch",
        ["bucketing (kt.TextBatches)", "pad to max (64)", "pad to longest in batch",
         "sorted by length (frozen feature pass)"],
    ),
    "feature_pass.py": (
        "Frozen feature pass: fit's batch size vs a token budget",
        ["fit's batch size (8)", "256 positions"],
    ),
    "memory.py": (
        "Peak memory against data size (frozen backbone)",
        ["64", "128"],
    ),
    "host_overhead.py": (
        "Host overhead per step",
        ["BERT-base layout", "GPT-2-small layout"],
    ),
    "gpu_throughput.py": (
        "GPU throughput",
        ["tiny-BERT", "tiny-GPT-2"],
    ),
    "launch_profile.py": (
        "What one step asks of the host",
        ["tiny-BERT", "tiny-GPT-2"],
    ),
}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Starts every script at once; yields {script: (process, log path)}."""
    logs = tmp_path_factory.mktemp("benchmark_logs")
    env = dict(
        os.environ,
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        CUDA_VISIBLE_DEVICES="",
        PYTHONWARNINGS="ignore",
    )
    started = {}
    for script in SCRIPTS:
        name, *extra = script.split()
        command = [sys.executable, str(BENCHMARKS / name), "--smoke", *extra]
        if not HAVE_HF:
            command.append("--no-hf")
        if script == "gpu_throughput.py":
            command += ["--out", str(logs / "gpu_throughput.md"), "--shapes", "16:2,8:3"]
        if script == "host_overhead.py":
            command += ["--cuda-paths", "--padded", "--block", "2"]
        log = logs / f"{script.replace(' ', '_')}.log"
        with open(log, "w") as file:
            process = subprocess.Popen(
                command, stdout=file, stderr=subprocess.STDOUT, env=env, cwd=BENCHMARKS.parent
            )
        started[script] = (process, log)
    yield started
    for process, _ in started.values():
        if process.poll() is None:
            process.kill()
            process.wait()


def table_rows(output):
    """First cells of the Markdown table rows in `output` (header excluded)."""
    rows = [line for line in output.splitlines() if line.startswith("| ")]
    return [row.split("|")[1].strip() for row in rows[1:]]


@pytest.mark.parametrize("script", list(SCRIPTS))
def test_benchmark_smoke_run(runs, script):
    process, log = runs[script]
    try:
        process.wait(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        pytest.fail(f"{script} --smoke ran over {TIMEOUT} s:\n{log.read_text()[-3000:]}")
    output = log.read_text()
    assert process.returncode == 0, f"{script} --smoke failed:\n{output[-5000:]}"
    title, expected = SCRIPTS[script]
    assert f"### {title}" in output
    assert "- command: `python benchmarks/" in output and "- versions: " in output
    rows = table_rows(output)
    for first_cell in expected:
        assert first_cell in rows, f"{script}: no table row {first_cell!r} in\n{output[-3000:]}"
    if script == "gpu_throughput.py":
        written = (log.parent / "gpu_throughput.md").read_text()
        assert "### GPU throughput" in written and "| tiny-BERT" in written
        assert " failed: " not in output, output[-3000:]
        shapes = {tuple(cell.strip() for cell in line.split("|")[2:4]) for line in written.splitlines()
                  if line.startswith("| tiny-")}
        assert shapes == {("16", "2"), ("8", "3")}, shapes  # --shapes: length:batch pairs
    if script == "host_overhead.py":
        assert "the fused kernel with dropout and one joint query/key/value product, as on CUDA" in output
        assert "padding: the last 4 positions of the second row (--padded)" in output
        assert "a block of 2 steps in a row (--block)" in output
    if "--jit-compile" in script:
        assert "jit_compile ms/step" in output and "its first step (tracing and compiling): inference" in output
    if script == "launch_profile.py":
        for line in output.splitlines():
            if line.startswith("| tiny-"):
                cells = [cell.strip() for cell in line.split("|")[1:-1]]
                assert int(cells[5].replace(",", "")) > 0, line  # dispatched ops were counted
