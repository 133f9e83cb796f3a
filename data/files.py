"""Atomic file writing: a reader never sees a half-written file, and a failure leaves the old one.

Kept apart from data.writer (the TFRecord shards) so that light tools, such as the experiment
drivers and their dry runs, write their files without importing TensorFlow.
"""
from __future__ import annotations

import contextlib
import json
import os
import tempfile


def write_atomic(path: str, data: str | bytes) -> None:
    """Atomically (a unique temporary file, then rename: concurrent writers never collide)."""
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path) or ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb" if isinstance(data, bytes) else "w") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise


def write_json(path: str, obj: dict) -> None:
    write_atomic(path, json.dumps(obj, indent=2, sort_keys=True))
