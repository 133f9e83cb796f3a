"""Where HRL-Rec's train step spends its time at the paper's sizes: each part timed alone.

    python -m benchmarks.train_profile [--data_dir=datasets/sim_small] [--steps=5] [--xla]
        [--gru=hoisted|keras]

The full step (benchmarks.train_speed's `paper_prefix_xla` setting: m 50, d 32, d_h 128,
4 heads, 256 lists, critic_steps 5, the prefix window) is timed beside its parts, each as its
own compiled function on the same batch, so the parts' times say what the step is made of:

  step_full              the whole train step (both agents, target pass, 5 critic updates,
                         every loss, both Adam updates, the soft update)
  step_critic_steps_1    the same with one critic update: the 4 extra ones cost the difference
  forward_online         one online pass (both agents' states and actions, the candidates)
  forward_target         the target pass (states of the logged items only, no actions)
  gradient_online        the online pass and its backward pass (d sum(outputs) / d weights),
                         no loss terms and no optimizer
  fields_lra             the LRA's behaviour fields alone (embedding lookups, channel counts)
  fields_attention_lra   the LRA's behaviour fields and field self-attention (Eq. 1) alone
  gru_lra                the LRA's GRU (Eq. 2) over precomputed f alone
  fields_hra, fields_attention_hra, gru_hra   the same for the HRA
  adam_apply             both Adam updates with fixed gradients (clip by global norm included)

Each line: `train_profile_<part>_ms` (ms per call) with `share_of_step` (part / step_full),
then `train_profile_flop_bound_transitions_per_s`: the step's counted matmul FLOPs
(benchmarks.train_speed.step_flops) run at this machine's measured matmul peak, the most
transitions/s the step could reach without doing less work, and `..._ratio` = that / the peak
(the issue's transitions/s per GFLOP/s figure).
"""
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402
from absl import app, flags  # noqa: E402

from benchmarks.common import MODEL_SIZES, emit, matmul_peak_gflops, step_flops  # noqa: E402
from data import pipeline  # noqa: E402
from hrl_rec.config import HRLConfig  # noqa: E402
from hrl_rec.encoders import StateEncoder  # noqa: E402
from hrl_rec.learner import Learner  # noqa: E402
from hrl_rec.model import target_copy, window_of  # noqa: E402
from hrl_rec.runner import build_model  # noqa: E402

flags.DEFINE_string("data_dir", "datasets/sim_small", "An IRecSim dataset (data.generate).")
flags.DEFINE_integer("steps", 5, "Timed calls per part, after 2 warm-up calls.")
flags.DEFINE_enum("sizes", "paper", sorted(MODEL_SIZES), "Model sizes.")
flags.DEFINE_enum("gru", "keras", ["hoisted", "keras"], "The prefix GRU's implementation "
                  "(hrl_rec.encoders.StateEncoder.hoisted_gru): hoisted = every step's input "
                  "projection as one matmul before the loop; keras = Keras's GRU layer.")
flags.DEFINE_boolean("xla", True, "Compile every part with XLA (jit_compile), as the fastest "
                     "train_speed setting does.")
FLAGS = flags.FLAGS


def timed(fn, *args) -> float:
    """Seconds per call of fn(*args), after two warm-up calls (the first compiles)."""
    for _ in range(2):
        out = fn(*args)
    tf.nest.map_structure(lambda x: x.numpy(), out)
    start = time.perf_counter()
    for _ in range(FLAGS.steps):
        out = fn(*args)
    tf.nest.map_structure(lambda x: x.numpy(), out)
    return (time.perf_counter() - start) / FLAGS.steps


def main(argv):
    del argv
    StateEncoder.hoisted_gru = FLAGS.gru == "hoisted"
    spec = pipeline.load_metadata(FLAGS.data_dir)["spec"]
    settings = dict(**MODEL_SIZES[FLAGS.sizes], state_window="prefix", critic_direction=True)

    def learner_for(**overrides):
        c = HRLConfig(**{**settings, **overrides})
        model = build_model(spec, c)
        return Learner(model, target_copy(model), c)

    learner = learner_for()
    cfg, model, m = learner.cfg, learner.model, learner.cfg.max_seq_len
    batch = next(iter(pipeline.list_dataset(
        FLAGS.data_dir, "train", max_seq_len=m, batch_size=cfg.batch_size,
        candidates_per_channel=cfg.candidates_per_channel, drop_remainder=True)))
    compile_ = lambda f: tf.function(f, jit_compile=FLAGS.xla)  # noqa: E731
    parts = {}
    parts["step_full"] = timed(compile_(learner._train_step), batch)
    parts["step_critic_steps_1"] = timed(compile_(learner_for(critic_steps=1)._train_step),
                                         batch)
    parts["forward_online"] = timed(compile_(lambda b: tuple(
        x for x in model.forward(b) if x is not None)), batch)
    parts["forward_target"] = timed(compile_(lambda b: tuple(
        x for x in learner.target.forward(b, with_actions=False) if x is not None)), batch)

    def gradient(b):
        with tf.GradientTape() as tape:
            fwd = model.forward(b)
            total = tf.add_n([tf.reduce_sum(x) for x in fwd[:5]])
        grads = tape.gradient(total, model.trainable_variables)
        return tuple(tf.convert_to_tensor(g) for g in grads if g is not None)
    parts["gradient_online"] = timed(compile_(gradient), batch)

    window = window_of(batch)
    for name, agent in (("lra", model.lra), ("hra", model.hra)):
        parts[f"fields_{name}"] = timed(compile_(lambda w, a=agent: a.fields(w)), window)
        parts[f"fields_attention_{name}"] = timed(compile_(agent.behaviours), window)
        f, h0 = agent.behaviours(window)
        parts[f"gru_{name}"] = timed(compile_(agent.encoder), f, window["mask"], h0)

    critic_vars, other_vars = model.critic_variables, model.non_critic_variables
    grads = [tf.ones_like(v) * 1e-3 for v in critic_vars + other_vars]

    def apply(g):
        learner._apply(learner.critic_optimizer, g[:len(critic_vars)], critic_vars)
        learner._apply(learner.actor_optimizer, g[len(critic_vars):], other_vars)
        return tf.constant(0.0)
    parts["adam_apply"] = timed(compile_(apply), grads)

    for part, seconds in parts.items():
        emit(f"train_profile_{part}_ms", seconds * 1e3, "ms",
             share_of_step=round(seconds / parts["step_full"], 3), sizes=FLAGS.sizes,
             batch_lists=cfg.batch_size, critic_steps=cfg.critic_steps, xla=FLAGS.xla,
             gru=FLAGS.gru)
    slots = int(tf.reduce_sum(tf.cast(batch["mask"][:, m:] > 0, tf.int32)))
    candidates = int(tf.shape(batch["cand_item_id"])[1] * tf.shape(batch["cand_item_id"])[2])
    flops = step_flops(model, cfg, cfg.batch_size, spec["list_size"],
                       candidates + spec["list_size"])
    peak = matmul_peak_gflops()
    bound = slots / (flops / (peak * 1e9))
    emit("train_profile_step_transitions_per_s", slots / parts["step_full"], "transitions/s",
         counted_gflop_per_step=round(flops / 1e9, 2),
         achieved_gflops=round(flops / parts["step_full"] / 1e9, 1), sizes=FLAGS.sizes)
    emit("train_profile_matmul_peak_gflops", peak, "GFLOP/s", n=2048, dtype="float32")
    emit("train_profile_flop_bound_transitions_per_s", bound, "transitions/s",
         note="the step's counted matmul FLOPs at the measured matmul peak")
    emit("train_profile_flop_bound_ratio", bound / peak, "transitions/s per GFLOP/s",
         measured=round(slots / parts["step_full"] / peak, 2), target=29)


if __name__ == "__main__":
    app.run(main)
