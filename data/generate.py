"""Generates an IRecSim dataset: chronologically split TFRecord shards and metadata.json.

    python -m data.generate --flagfile=configs/sim_small.flags --output_dir=DIR

Users are split into `--n_shards` shards (user_id % n_shards); each shard is simulated and
written by its own process, so the bytes depend on the seed and the shard count, never on
`--processes`. Shards may also be spread over machines (`--shards=0-3` here, `--shards=4-7`
there, one shared --output_dir): each writes its shards' counts to shard_stats/, and the run that
completes the set writes metadata.json. Each shard runs a warm-up day (-1) under a uniformly random policy to train the
logging policy's first LR; the warm-up day is not written. Days < n_days - test_days form the
train split, the rest the test split; each test record carries the user's last
`--history_context` training impressions as context (target = 0).
"""
from __future__ import annotations

import dataclasses
import json
import multiprocessing as mp
import os
import sys
import time

import numpy as np
from absl import app, flags

from data import ceilings, config_flags, writer
from data.logging_policy import LoggingPolicy
from data.progress import Progress
from data.schema import FeatureSpec, ImpressionLog
from data.sim_config import CHANNELS, CONTEXT_FIELDS, ITEM_FIELDS, MAX_TAGS, SimConfig
from data.sim_world import DAY, World, make_world
from data.simulator import IRecSim
from data.stats import SplitStats, calibration_report



def define_flags() -> None:
    """The CLI's flags: every SimConfig field plus the ones below (defined when run)."""
    config_flags.define_flags(SimConfig)
    flags.DEFINE_string("output_dir", None, "Where shards and metadata.json are written.")
    flags.DEFINE_integer("n_shards", 4, "User shards (part of the data's identity with the seed).")
    flags.DEFINE_integer("processes", 0, "Worker processes; 0 = one per CPU core.")
    flags.DEFINE_list("shards", [], "Shards this run simulates, e.g. 0-3,8 (default: all). "
                      "Machines given disjoint shards write into one shared --output_dir; the "
                      "run that completes the set writes metadata.json.")
    flags.DEFINE_integer("history_context", 100, "Training impressions carried into each test "
                         "record as history context (>= the longest --max_seq_len to be used).")


def feature_spec(world: World) -> FeatureSpec:
    cfg = world.config
    users = world.users
    return FeatureSpec(
        channel_names=CHANNELS, list_size=cfg.list_size, max_tags=MAX_TAGS,
        n_users=len(users), n_items=len(world.items), n_tags=world.n_tags,
        user_field_names=users.field_names, user_field_sizes=users.field_sizes,
        item_field_names=tuple(n for n, _ in ITEM_FIELDS),
        item_field_sizes=tuple(s for _, s in ITEM_FIELDS),
        context_field_names=tuple(n for n, _ in CONTEXT_FIELDS),
        context_field_sizes=tuple(s for _, s in CONTEXT_FIELDS))


class _DayLog:
    """Collects the steps of one day as column chunks."""

    def __init__(self):
        self.chunks: list[dict] = []
        self.sessions = 0

    def add(self, world: World, req, slates, props, fb) -> None:
        n, s = slates.shape
        items = world.items
        rep = lambda a: np.repeat(a, s)  # noqa: E731  (per request -> per impression)
        context = np.concatenate([np.repeat(req.context, s, axis=0),
                                  fb.item_age_bucket.reshape(-1, 1)], axis=1)
        flat = slates.ravel()
        self.chunks.append(dict(
            user_id=rep(req.user_id), request_id=rep(req.request_id),
            timestamp=rep(req.timestamp), slot=np.tile(np.arange(s), n),
            channel=items.channel[flat], item_id=flat,
            clicked=fb.clicked.ravel().astype(np.int64), novel_tags=fb.novel_tags.ravel(),
            dwell=fb.dwell.ravel(), propensity=props.ravel().astype(np.float32),
            true_ctr=fb.true_ctr.ravel(), item_fields=items.fields[flat],
            tags=fb.tags.reshape(-1, fb.tags.shape[-1]), context=context,
            user_fields=np.repeat(req.user_fields, s, axis=0)))
        self.sessions += int((req.page == 0).sum())

    def log(self) -> ImpressionLog:
        return ImpressionLog(**{k: np.concatenate([c[k] for c in self.chunks])
                                for k in self.chunks[0]})


def simulate_shard(cfg: SimConfig, shard: int, n_shards: int, world: World | None = None,
                   on_day=None, act=None, observe=None, on_env=None
                   ) -> tuple[list[tuple[int, ImpressionLog, int]], World]:
    """Simulates one shard; returns [(day, log, sessions)] for days >= 0 and the world.

    Online experiments replace the logging policy from some day on: `act(req, policy, rng)`
    -> (slates, propensities) or None (the logging policy acts, as in the dataset), and
    `observe(req, slates, feedback)` sees every step. Without them this writes the dataset.
    `on_day(day, log)` runs after each day (the warm-up day -1 included), before the next
    day's first step, with that day's ImpressionLog; `on_env(env)` once, with the shard's
    IRecSim (e.g. for its side-effect-free `click_probabilities`)."""
    world = world or make_world(cfg)
    user_ids = np.arange(shard, len(world.users), n_shards)
    env = IRecSim(world, rng_key=shard)
    if on_env is not None:
        on_env(env)
    policy = LoggingPolicy(cfg, world)
    rng = np.random.default_rng([cfg.seed, 2, shard])
    req = env.reset(user_ids, start_day=-1)
    days, current, day_log = [], req.day, _DayLog()
    while True:
        if env.done or req.day != current:
            log = day_log.log()
            policy.model.fit(log.user_fields, log.item_id, log.context[:, 3], log.slot,
                             log.clicked, rng=rng)
            if current >= 0:
                days.append((current, log, day_log.sessions))
            if on_day:
                on_day(current, log)
            if env.done:
                return days, world
            current, day_log = req.day, _DayLog()
        chosen = act(req, policy, rng) if act is not None and req.day >= 0 else None
        if chosen is None:
            eps = 1.0 if req.day < 0 else cfg.epsilon
            slates, props = policy.act(req.user_fields, req.candidates, req.candidate_age, eps,
                                       rng)
        else:
            slates, props = chosen
        fb, next_req = env.step(slates, check=chosen is not None)
        day_log.add(world, req, slates, props, fb)
        if observe is not None:
            observe(req, slates, fb)
        req = next_req


def split_days(cfg: SimConfig, days, history_context: int):
    """-> ((train log, target), (test log with context rows, target), train/test sessions)."""
    log = ImpressionLog.concat([d[1] for d in days])
    train, test = writer.split_log(log, cfg.test_start_day * DAY, history_context)
    sessions = (sum(d[2] for d in days if d[0] < cfg.test_start_day),
                sum(d[2] for d in days if d[0] >= cfg.test_start_day))
    return train, test, sessions


SHARD_STATS = "shard_stats"  # per-shard counts, merged into metadata.json


def _stats_path(output_dir: str, shard: int, n_shards: int) -> str:
    return os.path.join(output_dir, SHARD_STATS, f"shard-{shard:05d}-of-{n_shards:05d}.json")


_DEFAULT_CONFIG = json.loads(json.dumps(dataclasses.asdict(SimConfig())))


def _load_shard_stats(output_dir: str, n_shards: int, identity: dict) -> list[dict]:
    """The statistics of every shard present; a shard made with other settings is an error."""
    present = []
    for shard in range(n_shards):
        path = _stats_path(output_dir, shard, n_shards)
        if not os.path.exists(path):
            continue
        with open(path) as f:
            record = json.load(f)
        # shards written before a flag existed were made at its default (which keeps the bytes)
        record["identity"]["config"] = {**_DEFAULT_CONFIG, **record["identity"]["config"]}
        if record["identity"] != identity:
            other = record["identity"]
            keys = sorted(k for k in set(other["config"]) | set(identity["config"])
                          if other["config"].get(k) != identity["config"].get(k))
            keys += [k for k in ("n_shards", "history_context") if other[k] != identity[k]]
            raise ValueError(f"{path}: generated with other settings (differ: {keys}); use the "
                             f"same flags on every machine or another --output_dir")
        present.append({**{split: SplitStats.from_json(record[split])
                           for split in ("train", "test")},
                        "ceiling_fit": record.get("ceiling_fit")})
    return present


_COUNTER = None  # shared day counter of worker processes
_PROGRESS = None  # the progress line, when shards run in this process


def _init_worker(counter):
    global _COUNTER
    _COUNTER = counter


def _run_shard(args, world: World | None = None):
    """Simulates and writes one shard; `world` is reused when the shard runs in this process."""
    cfg, shard, n_shards, output_dir, history_context = args

    def tick(*_):
        if _COUNTER is not None:
            with _COUNTER.get_lock():
                _COUNTER.value += 1
        elif _PROGRESS is not None:
            _PROGRESS.update(1)

    recorder = ceilings.Recorder()
    days, world = simulate_shard(cfg, shard, n_shards, world=world, on_day=tick,
                                 observe=recorder)
    spec = feature_spec(world)
    train, test, sessions = split_days(cfg, days, history_context)
    stats = {}
    for split, (log, target), n_sessions in (("train", train, sessions[0]),
                                             ("test", test, sessions[1])):
        writer.write_split(output_dir, split, log, target, spec, shard, n_shards)
        stats[split] = writer.split_stats(spec, log, target, n_sessions)
    imp = recorder.impressions()
    fit = ceilings.learnable_ceiling(cfg, world, imp)
    in_test = imp.day >= cfg.test_start_day
    stats["train"].add_ceilings(imp.noise_free[~in_test], imp.clicked[~in_test],
                                fit.valid_scores, imp.clicked[imp.day == cfg.test_start_day - 1])
    stats["test"].add_ceilings(imp.noise_free[in_test], imp.clicked[in_test],
                               fit.test_scores, imp.clicked[in_test])
    stats["ceiling_fit"] = {"l2": fit.l2, "valid_auc_by_l2": fit.valid_auc_by_l2}
    tick()  # one unit per shard for writing its files
    return stats


def generate(cfg: SimConfig, output_dir: str, n_shards: int, processes: int = 0,
             history_context: int = 100, argv_flags: dict | None = None,
             shards: list[int] | None = None) -> dict | None:
    """Writes the dataset's shards listed in `shards` (default: all) with their statistics,
    then metadata.json once every shard of the dataset is in `output_dir`, and returns it
    (None while shards are missing: several machines may write into one shared folder)."""
    shards = list(range(n_shards)) if shards is None else sorted(set(shards))
    for shard in shards:
        if not 0 <= shard < n_shards:
            raise ValueError(f"--shards: shard {shard} out of range [0, {n_shards}) "
                             f"(--n_shards={n_shards})")
    os.makedirs(os.path.join(output_dir, SHARD_STATS), exist_ok=True)
    identity = json.loads(json.dumps({"config": dataclasses.asdict(cfg), "n_shards": n_shards,
                                      "history_context": history_context}))  # as stored
    _load_shard_stats(output_dir, n_shards, identity)  # other settings: fail before writing
    world = make_world(cfg)  # validates the configuration before any process starts
    spec = feature_spec(world)
    processes = processes or os.cpu_count() or 1
    processes = max(1, min(processes, len(shards)))
    tasks = [(cfg, s, n_shards, output_dir, history_context) for s in shards]
    # Work units: every simulated day (the warm-up day included) and each shard's write.
    total_units = len(shards) * (cfg.n_days + 2)
    progress = Progress(total_units, "generate", unit="shard-days")
    start = time.monotonic()
    if processes == 1:
        global _PROGRESS
        _PROGRESS = progress
        try:
            results = [_run_shard(t, world) for t in tasks]
        finally:
            _PROGRESS = None
    else:
        ctx = mp.get_context("spawn")
        counter = ctx.Value("i", 0)
        with ctx.Pool(processes, initializer=_init_worker, initargs=(counter,)) as pool:
            pending = pool.map_async(_run_shard, tasks)
            while not pending.ready():
                pending.wait(1.0)
                if counter.value > progress.done:
                    progress.update(counter.value - progress.done)
            results = pending.get()
            if progress.done < total_units:
                progress.update(total_units - progress.done)
    elapsed = time.monotonic() - start
    for shard, r in zip(shards, results):
        writer.write_json(_stats_path(output_dir, shard, n_shards), {
            "identity": identity, **{split: r[split].to_json() for split in ("train", "test")},
            "ceiling_fit": r.get("ceiling_fit")})
    present = _load_shard_stats(output_dir, n_shards, identity)
    if len(present) < n_shards:
        print(f"wrote shards {shards} of {n_shards}; {len(present)} present in {output_dir}: "
              f"metadata.json is written when all are", flush=True)
        return None
    merged = {}
    for split in ("train", "test"):
        s = SplitStats(spec.n_channels, spec.list_size)
        for r in present:
            s.merge(r[split])
        merged[split] = s.summary(spec.channel_names)
    all_stats = SplitStats(spec.n_channels, spec.list_size)
    for r in present:
        all_stats.merge(r["train"])
        all_stats.merge(r["test"])
    overall = all_stats.summary(spec.channel_names)
    here = sum(r[split].impressions.sum() for r in results for split in ("train", "test"))
    metadata = {
        "source": "irecsim", "spec": spec.to_json(), "propensity_known": True,
        "splits": merged, "overall": overall,
        "calibration": calibration_report(overall),
        # data.ceilings: the prior precision of the learnable ceiling chosen per shard on the
        # last training day, with the validation AUC of each one tried
        "ceiling_fit": [r.get("ceiling_fit") for r in present],
        "chronological_split": {"train_days": [0, cfg.test_start_day],
                                "test_days": [cfg.test_start_day, cfg.n_days],
                                "test_start_timestamp": cfg.test_start_day * 86400},
        "shards": n_shards, "history_context": history_context,
        "generation": {"seconds": elapsed, "impressions_per_s": float(here) / max(elapsed, 1e-9),
                       "processes": processes, "shards_in_this_run": shards},
        "config": dataclasses.asdict(cfg), "flags": argv_flags or {},
    }
    writer.save_item_table(output_dir, world.items.channel, world.items.fields, world.items.tags)
    return writer.write_metadata(output_dir, metadata, n_shards)


def parse_shards(values: list[str]) -> list[int] | None:
    """['0-3', '8'] -> [0, 1, 2, 3, 8]; [] -> None (all shards)."""
    shards = []
    for value in values:
        try:
            lo, _, hi = value.partition("-")
            shards += list(range(int(lo), int(hi or lo) + 1))
        except ValueError:
            raise app.UsageError(f"--shards={','.join(values)}: expected shard numbers or "
                                 f"ranges like 0-3,8 (got {value!r})") from None
    return shards or None


def main(argv):
    del argv
    if not flags.FLAGS.output_dir:
        raise app.UsageError("--output_dir is required")
    try:
        cfg = config_flags.from_flags(SimConfig)
    except ValueError as e:
        raise app.UsageError(str(e))
    used = {f: flags.FLAGS[f].value for f in flags.FLAGS if f in {
        x.name for x in dataclasses.fields(SimConfig)} | {"n_shards", "processes",
                                                          "history_context", "output_dir"}}
    shards = parse_shards(flags.FLAGS.shards)
    try:
        meta = generate(cfg, flags.FLAGS.output_dir, flags.FLAGS.n_shards,
                        flags.FLAGS.processes, flags.FLAGS.history_context, argv_flags=used,
                        shards=shards)
    except ValueError as e:
        raise app.UsageError(str(e)) from None
    if meta is None:
        return
    o = meta["overall"]
    print(json.dumps({"impressions": o["impressions"], "ctr": round(o["ctr"], 4),
                      "impressions_per_session": round(o.get("impressions_per_session", 0), 2),
                      "oracle_auc_test": meta["splits"]["test"]["oracle_auc"],
                      "ctr_per_channel": {k: round(v, 4) for k, v in o["ctr_per_channel"].items()},
                      "seconds": round(meta["generation"]["seconds"], 1),
                      "fingerprint": meta["fingerprint"]}), file=sys.stdout)


if __name__ == "__main__":
    define_flags()
    app.run(main)
