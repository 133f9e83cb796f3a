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


# HRL-Rec sizes the speed benchmarks time: the paper's (Sec. 4.3), configs/quickstart.flags',
# and the paper's with the authors' code's history length (m = 10), to compare with its speed.
MODEL_SIZES = {"paper": dict(max_seq_len=50, embedding_dim=32, hidden_dim=128, heads=4),
               "paper_m10": dict(max_seq_len=10, embedding_dim=32, hidden_dim=128, heads=4),
               "quickstart": dict(max_seq_len=20, embedding_dim=16, hidden_dim=64, heads=2)}
