"""Latency and throughput of the exported slate server (hrl_rec.export).

    python -m benchmarks.serving [--model_dir=RUN] [--sizes=paper] [--requests=300]

Exports the model of --model_dir (or an untrained one at --sizes: speed does not depend on the
weights) to a temporary folder, loads it with tf.saved_model.load and times its
serving_default signature on requests with m history impressions and 4 x 200 candidates (the
paper's top 200 per channel). Lines, for the export without and with XLA (`xla` in the
settings): `serving_p50_ms` and `serving_p99_ms` (one request per call) and
`serving_batched_requests_per_s` (--batch requests per call) for the raw-history signature;
for the cached-state signatures (prefix GRU models, hrl_rec.serving): `serving_state_p50_ms`,
`serving_state_p99_ms` and `serving_state_batched_requests_per_s` (slate_from_state: the 10
slot decisions from a cached state) and `serving_update_state_p50_ms` /
`serving_update_state_p99_ms` (one newly logged behaviour per call).
"""
import os
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from absl import app, flags  # noqa: E402

from benchmarks.common import MODEL_SIZES as SIZES  # noqa: E402
from benchmarks.common import emit  # noqa: E402
from hrl_rec.export import export, request_signature  # noqa: E402
from hrl_rec.model import HRLRec  # noqa: E402

flags.DEFINE_string("model_dir", None, "A hrl_rec.train run (model.keras); default: untrained.")
flags.DEFINE_string("data_dir", "datasets/sim_small", "Dataset whose spec sizes the model.")
flags.DEFINE_enum("sizes", "paper", list(SIZES), "Model sizes when --model_dir is not given.")
flags.DEFINE_string("state_window", "prefix", "State window of the untrained model.")
flags.DEFINE_integer("candidates_per_channel", 200, "Candidates per channel (paper: 200).")
flags.DEFINE_integer("requests", 300, "Timed single-request calls (after 10 warm-up calls).")
flags.DEFINE_integer("batch", 64, "Requests per call for the throughput figure.")
flags.DEFINE_integer("batches", 20, "Timed batched calls.")
flags.DEFINE_list("xla", ["off", "on"], "Export without / with XLA compilation of the slate "
                  "function (hrl_rec.export --jit_compile); each is timed.")
FLAGS = flags.FLAGS


def random_request(spec: dict, m: int, batch: int, per_channel: int, rng) -> dict:
    """Requests shaped like the simulator's: m history impressions, 4 x per_channel candidates."""
    out = {}
    n_ch = len(spec["channel_names"])
    for s in request_signature(spec, m):
        shape = [batch if d is None and i == 0 else (n_ch * per_channel if d is None else d)
                 for i, d in enumerate(s.shape.as_list())]
        out[s.name] = rng.integers(0, 2, size=shape)
    out["user_id"] = rng.integers(0, spec["n_users"], size=batch)
    out["hist_item_id"] = rng.integers(0, spec["n_items"], size=(batch, m))
    out["hist_channel"] = rng.integers(0, n_ch, size=(batch, m))
    out["hist_slot"] = rng.integers(0, spec["list_size"], size=(batch, m))
    out["hist_mask"] = np.ones((batch, m), np.int64)
    out["cand_item_id"] = rng.choice(spec["n_items"], size=(batch, n_ch * per_channel))
    out["cand_channel"] = np.repeat(np.arange(n_ch), per_channel)[None].repeat(batch, 0)
    out["cand_mask"] = np.ones((batch, n_ch * per_channel), np.int64)
    return {k: tf.constant(v, tf.int64) for k, v in out.items()}


def main(argv):
    del argv
    import keras
    from data.pipeline import load_metadata
    if FLAGS.model_dir:
        model = keras.models.load_model(os.path.join(FLAGS.model_dir, "model.keras"))
    else:
        model = HRLRec(load_metadata(FLAGS.data_dir)["spec"], state_window=FLAGS.state_window,
                       **SIZES[FLAGS.sizes])
    for xla in FLAGS.xla:
        if xla not in ("off", "on"):
            raise app.UsageError(f"--xla={xla}: expected off or on")
        time_export(model, xla == "on")


def time_export(model, xla: bool) -> None:
    settings = dict(max_seq_len=model.max_seq_len, hidden_dim=model.options["hidden_dim"],
                    state_window=model.options["state_window"],
                    candidates=4 * FLAGS.candidates_per_channel, xla=xla)
    with tempfile.TemporaryDirectory() as tmp:
        served = tf.saved_model.load(export(model, os.path.join(tmp, "export"), xla))
        serve = served.signatures["serving_default"]
        rng = np.random.default_rng(0)
        one = random_request(model.spec, model.max_seq_len, 1, FLAGS.candidates_per_channel, rng)
        for _ in range(10):
            serve(**one)
        times = []
        for _ in range(FLAGS.requests):
            start = time.perf_counter()
            serve(**one)["item_id"].numpy()
            times.append((time.perf_counter() - start) * 1000)
        emit("serving_p50_ms", np.percentile(times, 50), "ms", batch=1, **settings)
        emit("serving_p99_ms", np.percentile(times, 99), "ms", batch=1, **settings)
        many = random_request(model.spec, model.max_seq_len, FLAGS.batch,
                              FLAGS.candidates_per_channel, rng)
        serve(**many)
        start = time.perf_counter()
        for _ in range(FLAGS.batches):
            serve(**many)["item_id"].numpy()
        rate = FLAGS.batch * FLAGS.batches / (time.perf_counter() - start)
        emit("serving_batched_requests_per_s", rate, "requests/s", batch=FLAGS.batch, **settings)
        if "slate_from_state" in served.signatures:
            time_cached_state(served, model, one, many, settings)


def _timed(fn, kwargs, calls: int) -> list[float]:
    """Milliseconds of each of `calls` calls (after 10 warm-up calls), outputs fetched."""
    for _ in range(10):
        fn(**kwargs)
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        [v.numpy() for v in fn(**kwargs).values()]
        times.append((time.perf_counter() - start) * 1000)
    return times


def time_cached_state(served, model, one: dict, many: dict, settings: dict) -> None:
    """The cached-state path: states built from the requests' histories (update_state), then
    slate_from_state timed like serving_default, and update_state for one new behaviour."""
    sig = served.signatures
    for name, request in (("one", one), ("many", many)):
        profile = {"user_id": request["user_id"], "user_fields": request["user_fields"]}
        state = sig["initial_state"](**profile)
        events = {f"event_{k[5:]}": v for k, v in request.items() if k.startswith("hist_")}
        b, m = request["hist_item_id"].shape
        events["event_id"] = tf.tile(tf.range(m, dtype=tf.int64)[None], [b, 1])
        state = sig["update_state"](**profile, **state, **events)
        cand = {k: v for k, v in request.items() if k.startswith("cand_")}
        slate_args = {**profile, **state, **cand}
        if name == "one":
            times = _timed(sig["slate_from_state"], slate_args, FLAGS.requests)
            emit("serving_state_p50_ms", np.percentile(times, 50), "ms", batch=1, **settings)
            emit("serving_state_p99_ms", np.percentile(times, 99), "ms", batch=1, **settings)
            step = {k: v[:, -1:] for k, v in events.items()}
            step["event_id"] = step["event_id"] + m             # a behaviour not seen yet
            times = _timed(sig["update_state"], {**profile, **state, **step}, FLAGS.requests)
            emit("serving_update_state_p50_ms", np.percentile(times, 50), "ms", batch=1,
                 behaviours=1, **settings)
            emit("serving_update_state_p99_ms", np.percentile(times, 99), "ms", batch=1,
                 behaviours=1, **settings)
        else:
            times = _timed(sig["slate_from_state"], slate_args, FLAGS.batches)
            rate = FLAGS.batch / (np.mean(times) / 1000)
            emit("serving_state_batched_requests_per_s", rate, "requests/s", batch=FLAGS.batch,
                 **settings)


if __name__ == "__main__":
    app.run(main)
