"""Shared helpers: every benchmark prints one JSON object per line (name, value, unit, settings)."""
from __future__ import annotations

import json
import os
import platform
import sys


def one_core() -> None:
    """Pins this process to one CPU and single-threaded math libraries (call before numpy)."""
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = "1"
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})


def emit(name: str, value: float, unit: str, **settings) -> None:
    record = {"name": name, "value": round(float(value), 3), "unit": unit,
              "machine": f"{platform.machine()} x{os.cpu_count()}", **settings}
    print(json.dumps(record), flush=True)
    sys.stdout.flush()
