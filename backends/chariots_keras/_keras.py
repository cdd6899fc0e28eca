"""Import Keras for ``chariots_keras``, on JAX unless the user chose another backend.

Keras 3 defaults to TensorFlow, which the ``keras`` extra does not install, so before the
first ``import keras`` this sets ``KERAS_BACKEND=jax`` -- unless the user already chose:
``KERAS_BACKEND`` is set, ``keras`` is already imported, or ``keras.json`` names a backend.
Keras writes ``"backend": "tensorflow"`` into a new ``keras.json`` by itself, so that value only
counts as a choice when TensorFlow is installed.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys

from chariots_core.errors import BackendError

__all__ = ["keras"]


def _keras_json_backend() -> str | None:
    home = os.environ.get("KERAS_HOME")
    if home is None:
        base = os.path.expanduser("~")
        # Keras falls back to /tmp/.keras when the home directory is read-only.
        home = os.path.join(base if os.access(base, os.W_OK) else "/tmp", ".keras")
    try:
        with open(os.path.join(home, "keras.json")) as config:
            backend = json.load(config).get("backend")
    except (OSError, ValueError, AttributeError):
        return None
    return backend if isinstance(backend, str) and backend else None


def _user_chose_backend() -> bool:
    if sys.modules.get("keras") is not None or os.environ.get("KERAS_BACKEND"):
        return True
    configured = _keras_json_backend()
    if configured == "tensorflow":
        return importlib.util.find_spec("tensorflow") is not None
    return configured is not None


if not _user_chose_backend():
    os.environ["KERAS_BACKEND"] = "jax"

try:
    import keras
except ImportError as exc:
    _backend = os.environ.get("KERAS_BACKEND")
    _needed = f"keras with the {_backend} backend" if _backend else "keras"
    msg = (
        f"chariots_keras needs {_needed}, but importing it failed "
        f"({type(exc).__name__}: {exc}). pip install 'chariots[keras]' installs keras with JAX "
        "(used unless KERAS_BACKEND names another backend, whose package you then install)"
    )
    raise BackendError(msg) from exc
