"""Shared helpers: every benchmark prints one JSON object per line (name, value, unit, settings)."""
from __future__ import annotations

import json
import os
import platform
import sys
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from hrl_rec.config import HRLConfig


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


def matmul_peak_gflops(n: int = 2048, reps: int = 10) -> float:
    import tensorflow as tf   # here: one_core() must run before numpy is imported
    a = tf.random.normal([n, n])
    f = tf.function(lambda: tf.matmul(a, a))
    f()
    start = time.perf_counter()
    for _ in range(reps):
        f().numpy()
    return 2 * n ** 3 * reps / (time.perf_counter() - start) / 1e9


def step_flops(model, cfg: HRLConfig, lists: int, slots: int, candidates: int) -> float:
    """Multiply-add FLOPs (x2) of one train step's matmuls, from the layer shapes.

    Per behaviour position, the field self-attention of an agent with n fields costs
    2 n d 4d (the fused W_Q, W_K, W_V, W_R) + 4 n^2 d (scores and mixing) + 2 n d d_h (the
    projection to f_i); a GRU step 2 (2 d_h) 3 d_h. The online pass is counted 3x (forward and
    a backward of twice its cost), the target pass 1x; actors, critics and the cosine scores
    against the candidates are added the same way. Gathers and elementwise work are not
    counted, so this is a lower bound on the work done."""
    m, d, h, s = cfg.max_seq_len, cfg.embedding_dim, cfg.hidden_dim, slots
    if cfg.per_slot_states:
        positions, gru_steps = (s + 1) * m, (s + 1) * m
    elif cfg.state_window == "sliding":
        positions, gru_steps = m + s, (s + 1) * m
    else:
        positions, gru_steps = m + s, m + s
    total = 0.0
    for agent in (model.lra, model.hra):
        n = agent.fields.n_fields
        attention = 8 * n * d * d + 4 * n * n * d + 2 * n * d * h
        encode = positions * attention + gru_steps * 12 * h * h
        heads = s * (2 * agent.state_dim * d + 2 * candidates * d)   # actor, cosine scores
        total += 4 * encode + 3 * heads
    return total * lists
