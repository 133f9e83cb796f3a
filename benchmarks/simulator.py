"""IRecSim speed: batch generation (one core) and the interactive env API.

    python -m benchmarks.simulator [--n_users=20000] [--n_days=4] [any data.generate flag]
    python -m benchmarks.simulator --free_stages=matching,ranking   # upper bounds
    python -m benchmarks.simulator --repeats=3   # median of 3 generation runs, each listed

Lines: `simulate_impressions_per_s` (simulation, logging policy and its daily LR, no I/O),
`generate_impressions_per_s` (the same plus the chronological split and writing TFRecord shards:
what data.generate does per process, less its one start of TensorFlow, reported as
`tensorflow_start_s_excluded`), `env_steps_per_s` and `env_impressions_per_s` (reset/step
with a policy that shows each request's first candidates). All on one core.

`--free_stages` bounds what generation could reach if the named stages cost nothing: `matching`
serves every request its channels' first K pool items, `ranking` (with matching) gives the
policy fixed quota picks. The data are then not IRecSim's; the lines are named `bound_*`.
"""
from benchmarks.common import emit, one_core

one_core()

import dataclasses  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
from absl import app, flags  # noqa: E402

from data import config_flags, generate  # noqa: E402
from data.sim_config import SimConfig  # noqa: E402
from data.sim_world import make_world  # noqa: E402
from data.logging_policy import LoggingPolicy  # noqa: E402
from data.simulator import IRecSim  # noqa: E402

FLAGS = flags.FLAGS
generate.define_flags()  # every data.generate flag, so any of them can be benchmarked
# One shard of 20,000 users (a sim_medium shard has ~8,000) over 4 days plus the warm-up day.
FLAGS.set_default("n_users", 20000)
FLAGS.set_default("n_days", 4)
FLAGS.set_default("test_days", 1)
flags.DEFINE_integer("repeats", 1, "Generation runs; the lines give their median (and each run).",
                     lower_bound=1)
flags.DEFINE_list("free_stages", [], "Stages to replace by free stand-ins (matching, ranking), "
                  "for upper bounds; the lines are then named bound_*.")


def _free_matching(env, rows, hour, block=0):
    """Each channel's first K pool items for every request (no scoring, no selection)."""
    del block
    if getattr(env, "_free_day", None) != env.day:
        k = env.cfg.candidates_per_channel
        env._free_candidates = np.stack([ids[:k] for ids in env.pools])[None]
        env._free_day = env.day
    fixed = env._free_candidates
    candidates = np.broadcast_to(fixed, (len(rows),) + fixed.shape[1:])
    return candidates, env.candidate_age_buckets(hour, candidates)


def _free_ranking(policy, user_fields, candidates, age, block=0, quotas=True):
    """Each channel's first quota candidates, in channel order (no LR scores; the dataset's
    path, so always with the quotas)."""
    del user_fields, age, block, quotas
    k = candidates.shape[2]
    picks = np.concatenate([c * k + np.arange(q) for c, q in enumerate(policy.quota)])
    return np.broadcast_to(picks, (len(candidates), len(picks)))


def _use_free_stages(stages) -> str:
    unknown = set(stages) - {"matching", "ranking"}
    if unknown or ("ranking" in stages and "matching" not in stages):
        raise app.UsageError(f"--free_stages={','.join(stages)}: expected matching or "
                             f"matching,ranking")
    if "matching" in stages:
        IRecSim._matching = _free_matching
    if "ranking" in stages:
        LoggingPolicy.greedy_order = _free_ranking
    return "bound_" if stages else ""


def _start_tensorflow() -> float:
    """Seconds to import TensorFlow and open its first TFRecordWriter: a once-per-process cost of
    data.generate's first shard (2-4 s here) that used to land in the first run's write time."""
    start = time.perf_counter()
    import tensorflow as tf
    with tempfile.TemporaryDirectory() as out:
        with tf.io.TFRecordWriter(f"{out}/warm-up.tfrecord") as warm:
            warm.write(b"")
    return round(time.perf_counter() - start, 2)


def _generate_once(cfg: SimConfig, world) -> tuple[int, float, float]:
    """One shard as data.generate makes it: (impressions, simulation s, split + write s)."""
    start = time.perf_counter()
    days, _ = generate.simulate_shard(cfg, 0, 1, world=world)
    sim_s = time.perf_counter() - start
    spec = generate.feature_spec(world)
    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        train, test, _ = generate.split_days(cfg, days, 100)
        for split, (log, target) in (("train", train), ("test", test)):
            generate.writer.write_split(out, split, log, target, spec, 0, 1)
        write_s = time.perf_counter() - start
    return sum(len(d[1]) for d in days), sim_s, write_s


def main(argv):
    del argv
    prefix = _use_free_stages(FLAGS.free_stages)
    cfg = config_flags.from_flags(SimConfig)
    settings = {"n_users": cfg.n_users, "n_days": cfg.n_days, "cores": 1,
                "candidates": f"4x{cfg.candidates_per_channel}"}
    if FLAGS.free_stages:
        settings["free_stages"] = ",".join(FLAGS.free_stages)
    world = make_world(cfg)
    tf_start_s = _start_tensorflow()
    runs = [_generate_once(cfg, world) for _ in range(FLAGS.repeats)]
    n = runs[0][0]
    for name, rates, extra in (
            ("simulate_impressions_per_s", [n / sim_s for _, sim_s, _ in runs], {}),
            ("generate_impressions_per_s", [n / (sim_s + write_s) for _, sim_s, write_s in runs],
             {"write_seconds": round(float(np.median([r[2] for r in runs])), 2),
              "tensorflow_start_s_excluded": tf_start_s})):
        if len(runs) > 1:  # this machine's speed drifts: the median, and every run beside it
            extra["runs"] = [round(r) for r in rates]
        emit(prefix + name, np.median(rates), "impressions/s", impressions=n, **extra, **settings)

    env_cfg = dataclasses.replace(cfg, n_days=2)
    env = IRecSim(make_world(env_cfg), rng_key=0)
    req = env.reset(np.arange(env_cfg.n_users))
    steps = pages = 0
    start = time.perf_counter()
    while not env.done:
        slates = req.candidates[:, :, :3].reshape(len(req), -1)[:, :env_cfg.list_size]
        _, req = env.step(slates)
        steps += 1
        pages += len(slates)
    env_s = time.perf_counter() - start
    env_settings = {**settings, "n_days": env_cfg.n_days, "mean_requests_per_step":
                    round(pages / steps, 1)}
    emit(prefix + "env_steps_per_s", steps / env_s, "steps/s", **env_settings)
    emit(prefix + "env_impressions_per_s", pages * env_cfg.list_size / env_s, "impressions/s",
         **env_settings)


if __name__ == "__main__":
    app.run(main)
