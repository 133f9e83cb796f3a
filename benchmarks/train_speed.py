"""HRL-Rec training speed: transitions/s and peak memory of the full train step.

    python -m benchmarks.train_speed [--data_dir=datasets/sim_small] [--steps=5]

One full train step = both agents, the target network pass, critic_steps critic updates, all
four losses and the soft update, on a batch of 256 logged lists from the dataset (held in
memory, so the input pipeline is not timed). A transition is one list slot (each agent learns
from it). Settings: the paper's sizes (m 50, d 32, d_h 128, 4 heads) and the quickstart's
(m 20, d 16, d_h 64, 2 heads), each with the sliding (Eq. 2) and prefix state windows. Lines:
`full_model_transitions_per_s_{sizes}_{window}`, `peak_rss_mb` after all of them, and
`matmul_peak_gflops` (a large float32 matmul: what these cores can do at best).
"""
import os
import resource
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402
from absl import app, flags  # noqa: E402

from benchmarks.common import MODEL_SIZES as SIZES  # noqa: E402
from benchmarks.common import emit  # noqa: E402
from data import pipeline  # noqa: E402
from hrl_rec.config import HRLConfig  # noqa: E402
from hrl_rec.learner import Learner  # noqa: E402
from hrl_rec.model import target_copy  # noqa: E402
from hrl_rec.runner import build_model  # noqa: E402

flags.DEFINE_string("data_dir", "datasets/sim_small", "An IRecSim dataset (data.generate).")
flags.DEFINE_integer("steps", 5, "Timed train steps per setting, after 2 warm-up steps.")
flags.DEFINE_list("sizes", ["paper", "quickstart"], "Which size settings to time.")
flags.DEFINE_list("windows", ["sliding", "prefix"], "Which state windows to time.")
FLAGS = flags.FLAGS


def matmul_peak_gflops(n: int = 2048, reps: int = 10) -> float:
    a = tf.random.normal([n, n])
    f = tf.function(lambda: tf.matmul(a, a))
    f()
    start = time.perf_counter()
    for _ in range(reps):
        f().numpy()
    return 2 * n ** 3 * reps / (time.perf_counter() - start) / 1e9


def time_setting(spec: dict, sizes: str, window: str, steps: int) -> float:
    cfg = HRLConfig(**SIZES[sizes], state_window=window, critic_direction=True)
    batch = next(iter(pipeline.list_dataset(
        FLAGS.data_dir, "train", max_seq_len=cfg.max_seq_len, batch_size=cfg.batch_size,
        candidates_per_channel=cfg.candidates_per_channel, drop_remainder=True)))
    model = build_model(spec, cfg)
    learner = Learner(model, target_copy(model), cfg)
    for _ in range(2):
        learner.train_step(batch)
    start = time.perf_counter()
    for _ in range(steps):
        out = learner.train_step(batch)
    float(out["loss/total"])
    seconds = (time.perf_counter() - start) / steps
    slots = int(tf.reduce_sum(tf.cast(batch["mask"][:, cfg.max_seq_len:] > 0, tf.int32)))
    return slots / seconds


def main(argv):
    del argv
    spec = pipeline.load_metadata(FLAGS.data_dir)["spec"]
    for sizes in FLAGS.sizes:
        for window in FLAGS.windows:
            rate = time_setting(spec, sizes, window, FLAGS.steps)
            emit(f"full_model_transitions_per_s_{sizes}_{window}", rate, "transitions/s",
                 batch_lists=256, critic_steps=5, **SIZES[sizes], state_window=window)
    emit("peak_rss_mb", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "MB")
    emit("matmul_peak_gflops", matmul_peak_gflops(), "GFLOP/s", n=2048, dtype="float32")


if __name__ == "__main__":
    app.run(main)
