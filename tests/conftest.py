"""Shared test setup: the torch backend, a private Keras home, no network,
and tiny random backbones saved once per session as local presets.

Everything here runs before Keras is first imported (pytest imports
conftest.py before any test module), so the environment variables below
decide the backend and where Keras and the model hubs write.

Fixtures:

- `bert_preset`, `gpt2_preset`: directories written by KerasHub's
  `save_to_preset` holding a 2-layer BERT / GPT-2 (hidden size 16) and
  its tokenizer.
- `preset`: parametrized over both, for tests every family must pass.
- `hf_bert_dir`: a HuggingFace-format BERT checkpoint (config.json,
  vocab.txt, tokenizer files, model.safetensors) with random weights.
"""

import os
import shutil
import socket
import tempfile

_SCRATCH = tempfile.mkdtemp(prefix="keras-transfer-tests-")
os.environ["KERAS_BACKEND"] = "torch"
os.environ["KERAS_HOME"] = os.path.join(_SCRATCH, "keras_home")
# Model hubs cache downloads under the home directory; keep them private
# so that a checkpoint cached on this machine cannot make a test pass.
os.environ["KAGGLEHUB_CACHE"] = os.path.join(_SCRATCH, "kagglehub")
os.environ["HF_HOME"] = os.path.join(_SCRATCH, "hf_home")

# --- No network ------------------------------------------------------------
# Every connection and name lookup to anything but this machine fails at
# once with an OSError, as it would on an offline machine (and fast: no
# DNS timeout). Installed at import time so no import can reach out either.

_LOCAL_HOSTS = {"localhost", "127.0.0.1", "::1", "0.0.0.0", "", None}
_real_connect = socket.socket.connect
_real_connect_ex = socket.socket.connect_ex
_real_getaddrinfo = socket.getaddrinfo


class NetworkBlocked(OSError):
    """Raised when a test tries to reach the network."""


def _is_local(address):
    if isinstance(address, (str, bytes)):  # AF_UNIX path
        return True
    if isinstance(address, tuple) and address:
        return address[0] in _LOCAL_HOSTS
    return False


def _guarded_connect(self, address):
    if self.family == getattr(socket, "AF_UNIX", None) or _is_local(address):
        return _real_connect(self, address)
    raise NetworkBlocked(f"network access blocked in tests: connect to {address!r}")


def _guarded_connect_ex(self, address):
    if self.family == getattr(socket, "AF_UNIX", None) or _is_local(address):
        return _real_connect_ex(self, address)
    raise NetworkBlocked(f"network access blocked in tests: connect to {address!r}")


def _guarded_getaddrinfo(host, *args, **kwargs):
    name = host.decode() if isinstance(host, bytes) else host
    if name in _LOCAL_HOSTS:
        return _real_getaddrinfo(host, *args, **kwargs)
    raise socket.gaierror(f"network access blocked in tests: lookup of {name!r}")


socket.socket.connect = _guarded_connect
socket.socket.connect_ex = _guarded_connect_ex
socket.getaddrinfo = _guarded_getaddrinfo

import keras  # noqa: E402  (after KERAS_BACKEND)
import pytest  # noqa: E402

assert keras.config.backend() == "torch", keras.config.backend()


@pytest.fixture(autouse=True)
def _network_stays_blocked():
    """Fails a test that removed the network guard (for example by
    monkeypatching `socket` and not restoring it)."""
    yield
    assert socket.socket.connect is _guarded_connect
    assert socket.getaddrinfo is _guarded_getaddrinfo


def pytest_configure(config):
    # Keras' torch backend trips NumPy 2's `__array__(copy=...)` notice on
    # every weight read; it says nothing about this project.
    config.addinivalue_line(
        "filterwarnings", "ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning"
    )


def pytest_sessionfinish(session, exitstatus):
    shutil.rmtree(_SCRATCH, ignore_errors=True)


# --- Tiny models -------------------------------------------------------------

from helpers import (  # noqa: E402
    BERT_VOCAB,
    HIDDEN_DIM,
    MAX_SEQUENCE_LENGTH,
    NUM_LAYERS,
    gpt2_vocabulary_and_merges,
    write_hf_bert_dir,
)


def _save_tiny_preset(path, backbone_class, tokenizer, vocabulary_size, seed):
    """Saves a 2-layer backbone (hidden 16) and its tokenizer as a preset."""
    keras.utils.set_random_seed(seed)
    backbone = backbone_class(
        vocabulary_size=vocabulary_size,
        num_layers=NUM_LAYERS,
        num_heads=2,
        hidden_dim=HIDDEN_DIM,
        intermediate_dim=32,
        max_sequence_length=MAX_SEQUENCE_LENGTH,
    )
    backbone.save_to_preset(str(path))
    tokenizer.save_to_preset(str(path))
    return str(path)


@pytest.fixture(scope="session")
def bert_preset(tmp_path_factory):
    """A local KerasHub preset: 2-layer BERT (hidden 16) and its tokenizer."""
    import keras_hub

    tokenizer = keras_hub.models.BertTokenizer(vocabulary=BERT_VOCAB, lowercase=True)
    path = tmp_path_factory.mktemp("tiny_bert_preset")
    return _save_tiny_preset(path, keras_hub.models.BertBackbone, tokenizer, len(BERT_VOCAB), seed=1)


@pytest.fixture(scope="session")
def gpt2_preset(tmp_path_factory):
    """A local KerasHub preset: 2-layer GPT-2 (hidden 16) and its tokenizer."""
    import keras_hub

    vocabulary, merges = gpt2_vocabulary_and_merges()
    tokenizer = keras_hub.models.GPT2Tokenizer(vocabulary=vocabulary, merges=merges)
    path = tmp_path_factory.mktemp("tiny_gpt2_preset")
    return _save_tiny_preset(path, keras_hub.models.GPT2Backbone, tokenizer, len(vocabulary), seed=2)


@pytest.fixture(params=["bert", "gpt2"])
def preset(request):
    """Each tiny preset in turn, for behaviour every family must share."""
    return request.getfixturevalue(f"{request.param}_preset")


@pytest.fixture(scope="session")
def hf_bert_checkpoint(tmp_path_factory):
    """(directory, weights) of a session-wide HF-format tiny BERT."""
    path = tmp_path_factory.mktemp("tiny_hf_bert") / "model"
    weights = write_hf_bert_dir(path)
    return str(path), weights


@pytest.fixture
def hf_bert_dir(hf_bert_checkpoint, tmp_path):
    """A private copy of the HF-format tiny BERT that a test may edit."""
    source, _ = hf_bert_checkpoint
    target = tmp_path / "hf_bert"
    shutil.copytree(source, target)
    return target
