"""Exports a trained HRL-Rec as a SavedModel slate server.

    python -m hrl_rec.export --model_dir=runs/quickstart__0__T --export_dir=exports/hrl_rec/1

The `serving_default` signature takes one or many requests (the keys of `hrl_rec.policy`'s
request, batch dimension first; the history length is the model's m, the candidate count N is
free) and returns the slate of each: item_id, channel, score (cosine of a^h and the item),
ctr (f(a, d), Eq. 16) and propensity, all [B, S]. The 10-slot LRA/HRA decision loop runs in
graph (XLA-compiled with --jit_compile). Loadable with `tf.saved_model.load` and servable by
TensorFlow Serving (README has the REST request).

Models with the prefix GRU (--state_window=prefix) also get the cached-state signatures
(`hrl_rec.policy.SlatePolicy`, issue 24), whose state is the STATE_KEYS tensors of
`state_signature`:
  initial_state(user_id, user_fields) -> state          (a user without behaviours)
  update_state(user_id, user_fields, state..., event_*) -> state
      event_{k} [B, n, ...] for the hist_ keys, event_id [B, n] (grows with time per user);
      behaviours with event_id <= the state's last_event_id are ignored (idempotent)
  slate_from_state(user_id, user_fields, state..., cand_*) -> the slate, as serving_default
A deployment keeps each user's state in a key-value store (hrl_rec.serving.StateStore shows
the loop in process) and writes it back after update_state.
"""
from __future__ import annotations

import os
import shutil

import tensorflow as tf
from absl import app, flags

from hrl_rec.model import HRLRec
from hrl_rec.config import ITEM_SCORES
from hrl_rec.policy import WOLPERTINGER_K, SlatePolicy

FLAGS = flags.FLAGS
OUTPUTS = ("item_id", "channel", "score", "ctr", "propensity")


def request_signature(spec: dict, m: int) -> list[tf.TensorSpec]:
    f_u, f_i = len(spec["user_field_names"]), len(spec["item_field_names"])
    f_c, t = len(spec["context_field_names"]), spec["max_tags"]
    shapes = {"user_id": [None], "user_fields": [None, f_u]}
    for k in ("item_id", "channel", "slot", "feedback", "mask"):
        shapes[f"hist_{k}"] = [None, m]
    shapes.update(hist_item_fields=[None, m, f_i], hist_tags=[None, m, t],
                  hist_context=[None, m, f_c])
    for k in ("item_id", "channel", "mask"):
        shapes[f"cand_{k}"] = [None, None]
    shapes.update(cand_item_fields=[None, None, f_i], cand_tags=[None, None, t],
                  cand_context=[None, None, f_c])
    return [tf.TensorSpec(shape, tf.int64, name=name) for name, shape in shapes.items()]


def state_signature(spec: dict, hidden_dim: int) -> list[tf.TensorSpec]:
    """The cached user state (SlatePolicy.initial_state's keys), batch first."""
    span = spec["list_size"]
    f_i, f_c = len(spec["item_field_names"]), len(spec["context_field_names"])
    shapes = {"last_event_id": ([None], tf.int64), "lra_h": ([None, hidden_dim], tf.float32),
              "hra_h": ([None, hidden_dim], tf.float32)}
    for k in ("item_id", "channel", "slot", "feedback", "mask"):
        shapes[f"tail_{k}"] = ([None, span], tf.int64)
    shapes.update(tail_item_fields=([None, span, f_i], tf.int64),
                  tail_tags=([None, span, spec["max_tags"]], tf.int64),
                  tail_context=([None, span, f_c], tf.int64))
    return [tf.TensorSpec(shape, dtype, name=name) for name, (shape, dtype) in shapes.items()]


def _renamed(specs: list[tf.TensorSpec], old: str, new: str) -> list[tf.TensorSpec]:
    """hist_* specs as event_* specs with a free count of behaviours [B, n, ...]."""
    return [tf.TensorSpec([None, None, *s.shape[2:]], s.dtype, name=new + s.name[len(old):])
            for s in specs if s.name.startswith(old)]


class SlateServer(tf.Module):
    """A tf.Module holding the model and one compiled, signature-bound slate function."""

    def __init__(self, model: HRLRec, jit_compile: bool = False, item_score: str = "cosine",
                 wolpertinger_k: int = WOLPERTINGER_K):
        super().__init__()
        self.model = model
        self.policy = SlatePolicy(model, model.spec["list_size"], item_score=item_score,
                                  wolpertinger_k=wolpertinger_k)
        self.exploration_seed = self.policy.seed  # tracked, so the SavedModel captures it
        signature = request_signature(model.spec, model.max_seq_len)
        names = [s.name for s in signature]

        def serve(*tensors):
            slate = self.policy.slate(dict(zip(names, tensors)))
            return {k: slate[k] for k in OUTPUTS}

        self.serve = tf.function(serve, input_signature=signature, jit_compile=jit_compile)
        self.cacheable = all(agent.encoder.gru and agent.encoder.window == "prefix"
                             for agent in (model.lra, model.hra))
        if not self.cacheable:
            return
        profile = signature[:2]                                    # user_id, user_fields
        state = state_signature(model.spec, model.options["hidden_dim"])
        events = _renamed(signature, "hist_", "event_") + [
            tf.TensorSpec([None, None], tf.int64, name="event_id")]
        candidates = [s for s in signature if s.name.startswith("cand_")]

        def split(tensors, specs):
            return {s.name: t for s, t in zip(specs, tensors)}

        def initial(*tensors):
            return self.policy.initial_state(*tensors)

        def update(*tensors):
            p, st, ev = (tensors[:2], tensors[2:2 + len(state)], tensors[2 + len(state):])
            return self.policy.update_state(split(st, state), *p, split(ev, events))

        def slate_from_state(*tensors):
            p, st, cand = (tensors[:2], tensors[2:2 + len(state)], tensors[2 + len(state):])
            request = {"user_id": p[0], "user_fields": p[1], **split(cand, candidates)}
            slate = self.policy.slate_from_state(split(st, state), request)
            return {k: slate[k] for k in OUTPUTS}

        self.initial_state = tf.function(initial, input_signature=profile)
        self.update_state = tf.function(update, input_signature=profile + state + events,
                                        jit_compile=jit_compile)
        self.slate_from_state = tf.function(
            slate_from_state, input_signature=profile + state + candidates,
            jit_compile=jit_compile)

    def signatures(self) -> dict:
        out = {"serving_default": self.serve}
        if self.cacheable:
            out.update(initial_state=self.initial_state, update_state=self.update_state,
                       slate_from_state=self.slate_from_state)
        return out


def export(model: HRLRec, export_dir: str, jit_compile: bool = False,
           item_score: str = "cosine", wolpertinger_k: int = WOLPERTINGER_K) -> str:
    """Writes the SavedModel to export_dir (via a temporary folder, then a rename)."""
    server = SlateServer(model, jit_compile, item_score, wolpertinger_k)
    tmp = export_dir.rstrip("/") + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tf.saved_model.save(server, tmp, signatures=server.signatures())
    if os.path.exists(export_dir):
        shutil.rmtree(export_dir)
    os.replace(tmp, export_dir)
    return export_dir


def main(argv):
    del argv
    import keras
    path = os.path.join(FLAGS.model_dir, "model.keras")
    if not os.path.exists(path):
        raise app.UsageError(f"--model_dir={FLAGS.model_dir} holds no model.keras (train it "
                             f"first with python -m hrl_rec.train)")
    model = keras.models.load_model(path)
    path = export(model, FLAGS.export_dir, FLAGS.jit_compile, FLAGS.item_score,
                  FLAGS.wolpertinger_k)
    print(f"exported to {path}", flush=True)


if __name__ == "__main__":
    flags.DEFINE_string("model_dir", None, "A hrl_rec.train run folder (with model.keras).",
                        required=True)
    flags.DEFINE_string("export_dir", None, "Where the SavedModel goes (replaced if present).",
                        required=True)
    flags.DEFINE_enum("item_score", "cosine", list(ITEM_SCORES), "How the HRA picks the item of "
                      "the LRA's channel: cosine of a^h and d (Sec. 3.5), Eq. 16's click "
                      "model f, or Wolpertinger: the --wolpertinger_k nearest by cosine, then "
                      "the critic's Q or f (hrl_rec/policy.py).")
    flags.DEFINE_integer("wolpertinger_k", WOLPERTINGER_K, "Wolpertinger's k (--item_score="
                         "wolpertinger_q or wolpertinger_f).")
    flags.DEFINE_boolean("jit_compile", False, "Compile the slate function with XLA: about 4x "
                         "lower latency on CPU (benchmarks/serving.py). TensorFlow Serving runs "
                         "it with --xla_cpu_compilation_enabled=true.")
    app.run(main)
