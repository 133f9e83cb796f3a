"""HRL-Rec training speed: transitions/s, achieved GFLOP/s and peak memory of the full step.

    python -m benchmarks.train_speed [--data_dir=datasets/sim_small] [--steps=5]

One full train step = both agents, the target network pass, critic_steps critic updates, all
four losses and the soft update, on a batch of 256 logged lists from the dataset (held in
memory, so the input pipeline is not timed). A transition is one list slot (each agent learns
from it). Sizes: the paper's (m 50, d 32, d_h 128, 4 heads) and the quickstart's (m 20, d 16,
d_h 64, 2 heads). State computations, slowest first:
  per_slot  the straightforward reference: each slot's state from its own m behaviours' raw
            fields, one slot at a time (--per_slot_states)
  sliding   the same values, field encodings computed once per list and shared by its windows
  prefix    one GRU run over the list window (states see up to t more behaviours)
each with XLA off, and prefix also with XLA on (--xla_windows). Lines, one JSON object each:
`full_model_transitions_per_s_{sizes}_{state}[_xla]` (with `achieved_gflops`: the step's
matmul FLOPs, counted from the layer shapes, per second), `full_model_transitions_per_s_paper_
sizes` (the fastest paper-size setting, beside the authors' 5.4k/s single-agent channel
selector at m = 10), `peak_rss_mb`, `matmul_peak_gflops` (a large float32 matmul: what these
cores can do at best) and last `speedup_vs_naive_paper_sizes` (fastest / per_slot at paper
sizes).
"""
import os
import resource
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402
from absl import app, flags  # noqa: E402

from benchmarks.common import MODEL_SIZES as SIZES  # noqa: E402
from benchmarks.common import emit, matmul_peak_gflops, step_flops  # noqa: E402
from data import pipeline  # noqa: E402
from hrl_rec.config import HRLConfig  # noqa: E402
from hrl_rec.learner import Learner  # noqa: E402
from hrl_rec.model import target_copy  # noqa: E402
from hrl_rec.runner import build_model  # noqa: E402

AUTHORS_SINGLE_AGENT_TRANSITIONS_PER_S = 5400  # their TF1 channel selector, m = 10, this machine
STATES = {"per_slot": dict(state_window="sliding", per_slot_states=True),
          "sliding": dict(state_window="sliding"), "prefix": dict(state_window="prefix")}

flags.DEFINE_string("data_dir", "datasets/sim_small", "An IRecSim dataset (data.generate).")
flags.DEFINE_integer("steps", 5, "Timed train steps per setting, after 2 warm-up steps.")
flags.DEFINE_list("sizes", ["paper", "quickstart"], "Which size settings to time.")
flags.DEFINE_list("states", list(STATES), "Which state computations to time.")
flags.DEFINE_list("xla_states", ["prefix"], "State computations also timed with XLA.")
FLAGS = flags.FLAGS


def time_setting(spec: dict, sizes: str, state: str, xla: bool, steps: int) -> dict:
    cfg = HRLConfig(**SIZES[sizes], **STATES[state], critic_direction=True)
    batch = next(iter(pipeline.list_dataset(
        FLAGS.data_dir, "train", max_seq_len=cfg.max_seq_len, batch_size=cfg.batch_size,
        candidates_per_channel=cfg.candidates_per_channel, drop_remainder=True)))
    model = build_model(spec, cfg)
    learner = Learner(model, target_copy(model), cfg)
    step = tf.function(learner._train_step, jit_compile=True) if xla else learner.train_step
    for _ in range(2):
        step(batch)
    start = time.perf_counter()
    for _ in range(steps):
        out = step(batch)
    float(out["loss/total"])
    seconds = (time.perf_counter() - start) / steps
    slots = int(tf.reduce_sum(tf.cast(batch["mask"][:, cfg.max_seq_len:] > 0, tf.int32)))
    flops = step_flops(model, cfg, cfg.batch_size, spec["list_size"],
                       int(tf.shape(batch["cand_item_id"])[1] * tf.shape(
                           batch["cand_item_id"])[2]) + spec["list_size"])
    return {"rate": slots / seconds, "gflops": flops / seconds / 1e9, "seconds": seconds}


def main(argv):
    del argv
    spec = pipeline.load_metadata(FLAGS.data_dir)["spec"]
    rates = {}
    for sizes in FLAGS.sizes:
        for state in FLAGS.states:
            for xla in (False, True) if state in FLAGS.xla_states else (False,):
                r = time_setting(spec, sizes, state, xla, FLAGS.steps)
                name = f"{sizes}_{state}" + ("_xla" if xla else "")
                rates[name] = r["rate"]
                emit(f"full_model_transitions_per_s_{name}", r["rate"], "transitions/s",
                     achieved_gflops=round(r["gflops"], 1), step_s=round(r["seconds"], 3),
                     batch_lists=256, critic_steps=5, **SIZES[sizes], state=state, xla=xla)
    paper = {k: v for k, v in rates.items()
             if k.split("_")[0] == "paper" and not k.startswith(("paper_m10", "paper_per_slot"))}
    if paper:
        best = max(paper, key=paper.get)
        emit("full_model_transitions_per_s_paper_sizes", paper[best], "transitions/s",
             setting=best, authors_single_agent_m10=AUTHORS_SINGLE_AGENT_TRANSITIONS_PER_S)
    emit("peak_rss_mb", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "MB")
    emit("matmul_peak_gflops", matmul_peak_gflops(), "GFLOP/s", n=2048, dtype="float32")
    if paper and "paper_per_slot" in rates:
        emit("speedup_vs_naive_paper_sizes", paper[best] / rates["paper_per_slot"], "x",
             fast=best, naive="paper_per_slot")


if __name__ == "__main__":
    app.run(main)
