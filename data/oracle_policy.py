"""Oracle slate policies: the myopic oracle and the planning oracle of issue 22's return-rate
positive controls. Both read the simulator's truth (`IRecSim.candidate_logits`).

Myopic oracle: fills slots 0..S-1 greedily, each with the available candidate of highest true
click logit given the items above it (SIMULATOR.md step 3):

    z_i(t) = z_i - repeat_penalty * max(same_channel_above_i(t) - repeat_free, 0)
                 - tag_repeat_penalty * shared_tags_above_i(t)

(the examination e_t is the same for every candidate of slot t, so this is the most probable
click of each slot). It maximises today's clicks and ignores what they do to tomorrow.

Planning oracle: the same greedy fill of z_i(t) + lambda * v_i(t), with v the true long-term
value of showing i under one return-rate mechanism (data.mechanisms):

    clickbait_satisfaction    v_i = -b_i                  (clicked clickbait lowers satisfaction)
    satisfaction_completion   v_i = completion_ui         (completed clicks raise it)
    fatigue_weight            v_i(t) = -share_uc(t)       (the user's share of channel c among
                                                           today's impressions, the items above
                                                           included: concentration lowers the
                                                           session rate)
    topic_fatigue_weight      v_i(t) = -share_uk(t)       (the same with topic k, the item's
                                                           first tag's)

lambda is chosen on a grid (benchmarks.mechanisms). A planner that beats the myopic oracle in
clicks per user over the whole period shows that the mechanism rewards planning.
"""
from __future__ import annotations

import numpy as np

from data.sim_config import CHANNELS, SimConfig

PLANNED = ("clickbait_satisfaction", "satisfaction_completion", "fatigue_weight",
           "topic_fatigue_weight")


def greedy_slates(z: np.ndarray, channel: np.ndarray, tags: np.ndarray, cfg: SimConfig,
                  value: np.ndarray | None = None, channel_counts: np.ndarray | None = None,
                  channel_weight: float = 0.0, group: np.ndarray | None = None) -> np.ndarray:
    """Greedy slate fill -> [n, S] candidate columns.

    z, channel [n, N]; tags [n, N, T] (0 pads); value [n, N] a static per-item addition;
    channel_counts [n, G] impressions so far today per group and channel_weight (lambda) for
    the fatigue value -lambda * share of the candidate's group (the items placed above
    counted); group [n, N] each candidate's group in [0, G) (None: its channel)."""
    n, big = z.shape
    s, c = cfg.list_size, len(CHANNELS)
    rows = np.arange(n)
    base = z + (0.0 if value is None else value)
    same = np.zeros((n, c))
    shared = np.zeros((n, big))
    group = channel if group is None else group
    counts = np.zeros((n, c)) if channel_counts is None else channel_counts.astype(np.float64)
    taken = np.zeros((n, big), bool)
    out = np.zeros((n, s), np.int64)
    for t in range(s):
        score = (base - cfg.repeat_penalty * np.maximum(
            np.take_along_axis(same, channel, axis=1) - cfg.repeat_free, 0)
            - cfg.tag_repeat_penalty * shared)
        if channel_weight:
            share = counts / np.maximum(counts.sum(1, keepdims=True), 1.0)
            score = score - channel_weight * np.take_along_axis(share, group, axis=1)
        pick = np.argmax(np.where(taken, -np.inf, score), axis=1)
        out[:, t] = pick
        taken[rows, pick] = True
        picked_channel = channel[rows, pick]
        same[rows, picked_channel] += 1
        counts[rows, group[rows, pick]] += 1
        picked_tags = tags[rows, pick]                                          # [n, T]
        real = np.where(picked_tags > 0, picked_tags, -1)
        shares = (tags[:, :, :, None] == real[:, None, None, :]).any((2, 3))    # [n, N]
        shared += shares
    return out


class OraclePolicy:
    """`act(req, policy, rng)` for data.generate.simulate_shard: serves the oracle's slates
    (propensity 1). `mechanism` None is the myopic oracle; one of PLANNED with `weight`
    lambda > 0 is the planning oracle for that mechanism. `bind(env)` is its on_env hook."""

    def __init__(self, cfg: SimConfig, mechanism: str | None = None, weight: float = 0.0):
        if mechanism is not None and mechanism not in PLANNED:
            raise ValueError(f"mechanism must be one of {PLANNED} or None, got {mechanism!r}")
        self.cfg, self.mechanism, self.weight = cfg, mechanism, float(weight)
        self.env = None

    def bind(self, env) -> None:
        self.env = env

    def __call__(self, req, policy=None, rng=None):
        if self.env is None:
            raise RuntimeError("OraclePolicy needs the simulator: pass bind as on_env")
        env, cfg = self.env, self.cfg
        cand = env.candidate_logits(req)
        value, counts, weight, group = None, None, 0.0, None
        if self.mechanism == "clickbait_satisfaction":
            value = -self.weight * env.mech.clickbait[cand["items"]]
        elif self.mechanism == "satisfaction_completion":
            value = self.weight * cand["completion"]
        elif self.mechanism == "fatigue_weight":
            counts, weight = env.mech.day_channel[req.rows], self.weight
        elif self.mechanism == "topic_fatigue_weight":
            counts, weight = env.mech.day_topic[req.rows], self.weight
            group = env.mech.item_topic[cand["items"]]
        cols = greedy_slates(cand["z"], cand["channel"], cand["tags"], cfg, value, counts,
                             weight, group)
        slates = np.take_along_axis(cand["items"], cols, axis=1)
        return slates, np.ones(slates.shape, np.float32)
