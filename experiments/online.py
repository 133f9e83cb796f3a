"""Online experiments in IRecSim: a policy serves the simulated users live, from some day on.

The paper's online A/B tests (Sec. 4.5, Table 3) deploy a model in the ranking module of WeChat
Top Stories and compare buckets of users. Here the "online system" is the simulator that wrote
the dataset: `run_arm` rebuilds the dataset's world from its metadata.json, replays its days
under the logging policy (the same users, random streams and bytes as the dataset), and from
`start_day` (default: the first test day, which no model trained on) lets the arm's policy
choose every slate of every user. Each arm replays the same past, so arms differ only by what
they served. An arm's history windows come from what it served and what the users did, exactly
as the pipeline builds them from a log (the m most recent impressions, feedback 1 = shown,
2 = clicked).

Metrics over the arm's days (Sec. 4.5; per capita = per user of the population, the bucket):
    CTR = clicks / impressions
    ACN = clicks / users                  (average click number per capita)
    AWT = sum_u |tags of the items u clicked| / users   (average watched tags per capita)
plus requests, sessions and the channel proportions of impressions per day, and the
impressions per day, hour and channel (Fig. 4's input, experiments/stability.py).
"""
from __future__ import annotations

import json
import os

import numpy as np

from data.generate import simulate_shard
from data.sim_config import CHANNELS, CONTEXT_FIELDS, SimConfig
from data.sim_world import World, make_world
from hrl_rec.policy import WINDOW_PARTS



def load_world(data_dir: str) -> tuple[SimConfig, World, dict]:
    """The world that wrote `data_dir` (an IRecSim dataset), checked against its items.npz."""
    path = os.path.join(data_dir, "metadata.json")
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path} not found: online experiments need an IRecSim dataset")
    with open(path) as f:
        metadata = json.load(f)
    if metadata.get("source") != "irecsim":
        raise ValueError(f"{path}: source {metadata.get('source')!r}; online experiments need "
                         f"a dataset written by data.generate (source 'irecsim')")
    cfg = SimConfig.from_json(metadata["config"])
    world = make_world(cfg)
    with np.load(os.path.join(data_dir, "items.npz")) as z:
        same = (np.array_equal(z["channel"], world.items.channel)
                and np.array_equal(z["item_fields"], world.items.fields)
                and np.array_equal(z["tags"], world.items.tags))
    if not same:
        raise ValueError(f"{data_dir}/items.npz differs from the world its metadata.json "
                         f"describes (another simulator version?); regenerate the dataset")
    return cfg, world, metadata


class UserHistory:
    """The m most recent impressions of each env row, in the model's window fields [n, m, ...];
    the oldest position first, padding (mask 0) before a user's first impression."""

    def __init__(self, n_rows: int, m: int, n_item_fields: int, n_context: int, n_tags: int):
        self.m = m
        shapes = {"item_fields": (n_item_fields,), "tags": (n_tags,), "context": (n_context,)}
        self.parts = {k: np.zeros((n_rows, m, *shapes.get(k, ())), np.int64)
                      for k in WINDOW_PARTS}

    def window(self, rows: np.ndarray) -> dict:
        return {f"hist_{k}": v[rows] for k, v in self.parts.items()}

    def push(self, rows: np.ndarray, shown: dict) -> None:
        """Appends one list per row: `shown` holds WINDOW_PARTS except feedback and mask, plus
        `clicked`, each [n, S, ...]."""
        new = dict(shown)
        clicked = new.pop("clicked").astype(np.int64)
        new["feedback"] = 1 + clicked
        new["mask"] = np.ones_like(clicked)
        for k, part in self.parts.items():
            part[rows] = np.concatenate([part[rows], new[k]], axis=1)[:, -self.m:]


def shown_fields(world: World, req, slates: np.ndarray, fb) -> dict:
    """What a log record holds of each shown item (data.generate's _DayLog), as window parts."""
    n, s = slates.shape
    context = np.concatenate([np.repeat(req.context[:, None], s, axis=1),
                              fb.item_age_bucket[..., None]], axis=-1)
    return {"item_id": slates, "channel": world.items.channel[slates],
            "slot": np.tile(np.arange(s), (n, 1)), "item_fields": world.items.fields[slates],
            "tags": fb.tags, "context": context, "clicked": fb.clicked}


def model_request(world: World, req, history: UserHistory) -> dict:
    """hrl_rec.policy's request for env requests: the rows' history windows and, as
    candidates, the matching stage's items of every channel with the request's context."""
    n = len(req)
    cand = req.candidates.reshape(n, -1)
    context = np.concatenate([np.repeat(req.context[:, None], cand.shape[1], axis=1),
                              req.candidate_age.reshape(n, -1, 1)], axis=-1)
    return {**history.window(req.rows), "user_id": req.user_id, "user_fields": req.user_fields,
            "cand_item_id": cand, "cand_channel": world.items.channel[cand],
            "cand_item_fields": world.items.fields[cand], "cand_tags": world.items.tags[cand],
            "cand_context": context, "cand_mask": (cand >= 0).astype(np.int64)}


class OnlineMetrics:
    """Counts of one arm over its days: CTR, ACN, AWT and channel proportions."""

    def __init__(self, n_users: int, n_tags: int, n_channels: int, n_days: int):
        self.n_users = n_users
        self.impressions = self.clicks = self.requests = self.sessions = 0
        self.dwell = 0.0
        self.user_clicks = np.zeros(n_users, np.int64)
        self.active = np.zeros(n_users, bool)
        self.watched = np.zeros((n_users, n_tags + 1), bool)
        # impressions per day, hour and channel; per day and channel is its sum over hours
        self.hourly = np.zeros((n_days, 24, n_channels), np.int64)
        self.channel_clicks = np.zeros((n_days, n_channels), np.int64)

    def add(self, world: World, req, slates: np.ndarray, fb) -> None:
        clicked = fb.clicked.astype(bool)
        self.impressions += slates.size
        self.clicks += int(clicked.sum())
        self.requests += len(req)
        self.sessions += int((req.page == 0).sum())
        self.dwell += float(fb.dwell.sum())
        np.add.at(self.user_clicks, req.user_id, clicked.sum(1))
        self.active[req.user_id] = True
        users = np.broadcast_to(req.user_id[:, None, None], fb.tags.shape)
        hit = clicked[..., None] & (fb.tags > 0)
        self.watched[users[hit], fb.tags[hit]] = True
        channel = world.items.channel[slates]
        day = req.day
        self.channel_clicks[day] += np.bincount(channel[clicked], minlength=len(CHANNELS))
        cell = req.context[:, :1] * len(CHANNELS) + channel  # (hour, channel) of each slot
        self.hourly[day] += np.bincount(cell.ravel(), minlength=24 * len(CHANNELS)).reshape(
            24, len(CHANNELS))

    def report(self, days: list[int]) -> dict:
        ci = self.hourly[days].sum(1)
        return {"impressions": self.impressions, "clicks": self.clicks,
                "requests": self.requests, "sessions": self.sessions, "users": self.n_users,
                "active_users": int(self.active.sum()),
                "ctr": self.clicks / max(self.impressions, 1),
                "acn": self.clicks / self.n_users,
                "awt": float(self.watched.sum()) / self.n_users,
                "dwell_per_capita": self.dwell / self.n_users,
                "channel_share": (ci.sum(0) / max(ci.sum(), 1)).tolist(),
                "channel_share_per_day": (ci / np.maximum(ci.sum(1, keepdims=True), 1)).tolist(),
                "channel_ctr": (self.channel_clicks[days].sum(0)
                                / np.maximum(ci.sum(0), 1)).tolist(),
                "channel_impressions_per_hour": self.hourly[days].tolist(),
                "days": days}


def load_model(model_dir: str):
    """The model a hrl_rec.train, baselines.dqn_train or baselines.ddpg_train run saved in
    `model_dir` (model.keras): an HRLRec, a QNetwork or a FlatDDPG."""
    import keras

    from baselines.ddpg import FlatDDPG  # importing them registers the layers for loading
    from baselines.dqn import QNetwork
    from hrl_rec.model import HRLRec
    path = os.path.join(model_dir, "model.keras")
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path} not found: train the model first (hrl_rec.train)")
    model = keras.models.load_model(path)
    if not isinstance(model, (HRLRec, QNetwork, FlatDDPG)):
        raise ValueError(f"{path} holds a {type(model).__name__}, not an HRL-Rec, DQN or flat "
                         "DDPG model")
    return model


def logging_arm(epsilon: float, quotas: bool = True):
    """The dataset's own policy (supervised LR + channel quotas, refit daily on what it
    served), with exploration `epsilon`: 0 is the paper's online base model. quotas=False
    ranks by the LR alone, the CTR-only ranker that homogenises a feed."""
    def act(req, policy, rng, history):
        del history
        return policy.act(req.user_fields, req.candidates, req.candidate_age, epsilon, rng,
                          quotas=quotas)
    return act


def model_arm(model, world: World, epsilon: float = 0.0, seed: int = 0,
              item_score: str = "cosine", wolpertinger_k: int = 10):
    """HRL-Rec (hrl_rec.policy.SlatePolicy), a DQN (baselines.dqn_policy.QSlatePolicy) or the
    flat DDPG (baselines.ddpg_policy.DDPGSlatePolicy) serving from the env's candidates;
    epsilon > 0 is Sec. 3.5's online exploration, item_score the HRA's item choice (cosine,
    click or Wolpertinger with wolpertinger_k; HRL-Rec only)."""
    import tensorflow as tf

    from baselines.ddpg import FlatDDPG
    from baselines.ddpg_policy import DDPGSlatePolicy
    from baselines.dqn import QNetwork
    from baselines.dqn_policy import QSlatePolicy
    from hrl_rec.export import request_signature
    from hrl_rec.policy import SlatePolicy
    flat = {QNetwork: QSlatePolicy, FlatDDPG: DDPGSlatePolicy}.get(type(model))
    if flat is not None:
        if item_score != "cosine":
            raise ValueError(f"item_score={item_score!r}: a {type(model).__name__} serves by "
                             "its own score only")
        slate_policy = flat(model, world.config.list_size, epsilon, seed)
    else:
        slate_policy = SlatePolicy(model, world.config.list_size, epsilon, seed, item_score,
                                   wolpertinger_k)
    # one trace for every batch size (the number of requests changes at every step)
    signature = {s.name: s for s in request_signature(model.spec, model.max_seq_len)}
    slate = tf.function(slate_policy.slate, input_signature=[signature])

    def act(req, policy, rng, history):
        del policy, rng
        request = model_request(world, req, history)
        out = slate({k: tf.constant(v, tf.int64) for k, v in request.items()})
        return out["item_id"].numpy(), out["propensity"].numpy()
    return act


def run_arm(cfg: SimConfig, world: World, n_shards: int, act, start_day: int | None = None,
            m: int = 0, on_day=None, end_day: int | None = None) -> dict:
    """Replays the dataset's days (its `n_shards` user shards, as data.generate) under the
    logging policy and serves days start_day <= day < end_day (default: the first test day
    to the last day) by `act(req, policy, rng, history)` -> (slates, propensities), where
    history is the rows' UserHistory of length m (None for m = 0: the arm reads none);
    -> OnlineMetrics.report of those days. (end_day = the first test day serves the
    validation day alone, e.g. to choose between models without reading the test days.)"""
    start = cfg.test_start_day if start_day is None else start_day
    end = cfg.n_days if end_day is None else end_day
    if not 0 <= start < cfg.n_days:
        raise ValueError(f"start_day {start} out of range [0, {cfg.n_days})")
    if not start < end <= cfg.n_days:
        raise ValueError(f"end_day {end} out of range ({start}, {cfg.n_days}]")
    metrics = OnlineMetrics(len(world.users), world.n_tags, len(CHANNELS), cfg.n_days)
    for shard in range(n_shards):
        rows = len(range(shard, len(world.users), n_shards))
        history = UserHistory(rows, m, world.items.fields.shape[1], len(CONTEXT_FIELDS),
                              world.items.tags.shape[1]) if m else None

        def arm_act(req, policy, rng):
            return act(req, policy, rng, history) if start <= req.day < end else None

        def observe(req, slates, fb):
            # the warm-up day is not in the dataset, so no model saw it in a history either
            if history is not None and req.day >= 0:
                history.push(req.rows, shown_fields(world, req, slates, fb))
            if start <= req.day < end:
                metrics.add(world, req, slates, fb)

        simulate_shard(cfg, shard, n_shards, world=world, on_day=on_day, act=arm_act,
                       observe=observe)
    return metrics.report(list(range(start, end)))
