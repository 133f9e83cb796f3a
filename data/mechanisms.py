"""The mechanisms IRecSim adds for the paper's claims (issue 22), each off at weight 0.

Each term below is added to the click logit z of SIMULATOR.md step 3, or to a user's daily
satisfaction / session rate (step 6). `Feedback.terms` carries every click-logit term per
impression, so that `benchmarks.mechanisms` can remove one from the oracle.

Click logit (per impression of item i, channel c, user u, request at time t on day D):

    clickbait   + w_cb * b_i                  b_i ~ U(0, 1) on a share p of items, else 0
                                              (clicks now; p = --clickbait_share, 1 = all)
    satiation   - w_sat * S_uc(t)             S_uc = sum over u's earlier clicks on c of
                                              2^(-(t - t_click) / half-life)
    triple      + w_3 * T[age_u, hour_t // 6, c]   T ~ N(0, 1) with every pairwise and
                                              single marginal removed under the population's
                                              age, session-hour and channel-mix frequencies
                                              (a pure 3-way term)
    shock       + s   if c is the shock channel and D in [shock_day, shock_day + shock_days)

Daily satisfaction (per page, EMA as before) and session rate:

    satisfaction += w_comp * sum(completion of clicked items) / pages
                    - (1 - w_click) * clicks / pages      (w_click: --satisfaction_click)
                    - w_cbs * sum(b_i of clicked items) / pages          (satisfaction later)
    rate *= exp(-w_fat * F_u),   F_u <- m F_u + (1 - m) (sum_c share_c^2 - 1/C)   (fatigue)
    rate *= exp(-w_tf * G_u),    G_u <- m G_u + (1 - m) (sum_k share_k^2 - 1/K)   (topic fatigue)

with share_c the user's share of channel c among the day's impressions and share_k that of
topic k (an item's topic is its first tag's; K = --n_topics) (m: --satisfaction_memory).
Completion (SIMULATOR.md step 4) gains an item-quality term:

    completion_ui = sigmoid(completion_bias + completion_match <u, v_i> + w_q e_i)
                                              e_i ~ N(0, 1), independent of the click logit

b_i, T and e come from their own random streams (seed, 21), (seed, 22) and (seed, 23), so
turning a mechanism on changes no other draw of the world.
"""
from __future__ import annotations

import numpy as np

from data.sim_config import CHANNELS, SimConfig

HOUR_BLOCKS = 4           # 6-hour blocks of the day in the triple interaction
TRIPLE_FIELD = 0          # the user field of the triple interaction (age)
CLICK_TERMS = ("clickbait", "satiation", "triple", "shock")


def clickbait_scores(cfg: SimConfig, n_items: int) -> np.ndarray:
    """b_i per item from the stream (seed, 21): u_i ~ U(0, 1) and, with p = --clickbait_share,
    b_i = max(0, (u_i - (1 - p)) / p): U(0, 1) on a random share p of the items, 0 on the
    rest (p = 1: b_i = u_i, the draw of before)."""
    u = np.random.default_rng([cfg.seed, 21]).uniform(size=n_items)
    p = cfg.clickbait_share
    return u if p >= 1.0 else np.maximum(0.0, (u - (1.0 - p)) / p)


def completion_quality_scores(cfg: SimConfig, n_items: int) -> np.ndarray:
    """e_i ~ N(0, 1) per item from the stream (seed, 23): the completion-logit quality that
    --completion_quality weighs, independent of every click-logit term."""
    return np.random.default_rng([cfg.seed, 23]).standard_normal(n_items)


def pure_three_way(table: np.ndarray, weights=None) -> np.ndarray:
    """The three-way part of a [A, B, C] table (the ANOVA decomposition under the product of
    the axes' weights, uniform by default): the table minus its mean, its single and its
    pairwise marginals. Every weighted mean over one axis of the result is zero, so under
    independent axes with these frequencies no pairwise model can represent any of it."""
    w = [np.full(n, 1.0 / n) for n in table.shape] if weights is None else \
        [np.asarray(x, np.float64) / np.sum(x) for x in weights]

    def mean(t, axes):
        for axis in axes:
            shape = [1, 1, 1]
            shape[axis] = -1
            t = (t * w[axis].reshape(shape)).sum(axis=axis, keepdims=True)
        return t

    t = table
    return (t - mean(t, [0]) - mean(t, [1]) - mean(t, [2]) + mean(t, [0, 1])
            + mean(t, [0, 2]) + mean(t, [1, 2]) - mean(t, [0, 1, 2]))


def triple_table(cfg: SimConfig, field_weights, hour_weights) -> np.ndarray:
    """[len(field_weights), HOUR_BLOCKS, C] three-way table from the stream (seed, 22), pure
    under the population's field frequencies, the sessions' hour blocks and the global channel
    mix, scaled to unit (weighted) standard deviation."""
    field_weights = np.asarray(field_weights, np.float64)
    hour_weights = np.asarray(hour_weights, np.float64).reshape(HOUR_BLOCKS, -1).sum(1)
    weights = (field_weights, hour_weights, np.asarray(cfg.channel_mix, np.float64))
    raw = np.random.default_rng([cfg.seed, 22]).normal(size=(len(field_weights), HOUR_BLOCKS,
                                                             len(CHANNELS)))
    t = pure_three_way(raw, weights)
    p = np.einsum("a,b,c->abc", *(x / x.sum() for x in weights))
    return t / max(float(np.sqrt((p * t ** 2).sum())), 1e-12)


def satiation_decay(cfg: SimConfig, seconds: np.ndarray) -> np.ndarray:
    """2^(-seconds / half-life)."""
    return np.exp2(-np.asarray(seconds, np.float64) / (cfg.satiation_halflife_h * 3600.0))


def channel_concentration(impressions: np.ndarray) -> np.ndarray:
    """[n, C] impressions per channel (or per topic) -> sum_c share_c^2 - 1/C (0 for an even
    mix or no impressions, 1 - 1/C for a single channel)."""
    total = impressions.sum(1, keepdims=True)
    share = impressions / np.maximum(total, 1)
    return np.where(total[:, 0] > 0, (share ** 2).sum(1) - 1.0 / impressions.shape[1], 0.0)


def shock_shift(cfg: SimConfig, day: int) -> np.ndarray:
    """[C] logit shift of each channel on `day`."""
    out = np.zeros(len(CHANNELS))
    if cfg.shock_size and cfg.shock_day <= day < cfg.shock_day + cfg.shock_days:
        out[cfg.shock_channel_index()] = cfg.shock_size
    return out


class MechanismState:
    """The per-user state of the mechanisms for one IRecSim population."""

    def __init__(self, cfg: SimConfig, n_users: int, n_items: int, field_weights,
                 hour_weights=None, item_topic=None):
        """field_weights: the population's frequency of each value of the triple's user field;
        hour_weights [24]: the sessions' hour-of-day profile (uniform by default); item_topic
        [n_items]: each item's topic in [0, --n_topics) (topic fatigue; None: all topic 0)."""
        c = len(CHANNELS)
        self.cfg = cfg
        self.item_topic = (np.zeros(n_items, np.int64) if item_topic is None
                           else np.asarray(item_topic, np.int64))
        if self.item_topic.shape != (n_items,) or (
                n_items and not 0 <= self.item_topic.min() <= self.item_topic.max() < cfg.n_topics):
            raise ValueError(f"item_topic: expected {n_items} topics in [0, --n_topics="
                             f"{cfg.n_topics})")
        self.clickbait = clickbait_scores(cfg, n_items)
        self.quality = completion_quality_scores(cfg, n_items)
        self.triple = triple_table(cfg, field_weights,
                                   np.ones(24) if hour_weights is None else hour_weights)
        self.satiation = np.zeros((n_users, c))
        self.satiation_time = np.zeros(n_users, np.int64)
        self.fatigue = np.zeros(n_users)
        self.topic_fatigue = np.zeros(n_users)
        self.day_channel = np.zeros((n_users, c))
        self.day_topic = np.zeros((n_users, cfg.n_topics))
        self.day_completion = np.zeros(n_users)
        self.day_clickbait = np.zeros(n_users)
        self.last_day: dict | None = None   # what end_day saw (benchmarks.mechanisms reads it)

    def start_day(self) -> None:
        self.day_channel[:] = 0
        self.day_topic[:] = 0
        self.day_completion[:] = 0
        self.day_clickbait[:] = 0

    def click_terms(self, rows, items, channel, user_fields, hour, timestamp, day) -> dict:
        """{name: [n, S]} the click-logit terms of one page per request row."""
        cfg = self.cfg
        decay = satiation_decay(cfg, timestamp - self.satiation_time[rows])
        sat_now = self.satiation[rows] * decay[:, None]                        # [n, C]
        field = user_fields[:, TRIPLE_FIELD]
        block = (np.asarray(hour) // (24 // HOUR_BLOCKS)).astype(np.int64)
        return {
            "clickbait": cfg.clickbait_weight * self.clickbait[items],
            "satiation": -cfg.satiation_weight * np.take_along_axis(sat_now, channel, axis=1),
            "triple": cfg.triple_weight * self.triple[field[:, None], block[:, None], channel],
            "shock": shock_shift(cfg, day)[channel],
        }

    def after_page(self, rows, items, channel, clicked, completion, timestamp) -> None:
        """Updates satiation with the page's clicks and the day's sums."""
        c = len(CHANNELS)
        decay = satiation_decay(self.cfg, timestamp - self.satiation_time[rows])
        clicks = np.zeros((len(rows), c))
        r, s = np.nonzero(clicked)
        np.add.at(clicks, (r, channel[r, s]), 1.0)
        self.satiation[rows] = self.satiation[rows] * decay[:, None] + clicks
        self.satiation_time[rows] = timestamp
        shown = np.zeros((len(rows), c))
        np.add.at(shown, (np.repeat(np.arange(len(rows)), channel.shape[1]), channel.ravel()), 1.0)
        self.day_channel[rows] += shown
        np.add.at(self.day_topic, (np.repeat(rows, items.shape[1]),
                                   self.item_topic[items].ravel()), 1.0)
        self.day_completion[rows] += np.where(clicked, completion, 0.0).sum(1)
        self.day_clickbait[rows] += np.where(clicked, self.clickbait[items], 0.0).sum(1)

    def satisfaction_terms(self, pages: np.ndarray) -> np.ndarray:
        """[n] what the day adds to satisfaction per page."""
        cfg = self.cfg
        return (cfg.satisfaction_completion * self.day_completion
                - cfg.clickbait_satisfaction * self.day_clickbait) / np.maximum(pages, 1)

    def end_day(self, active: np.ndarray, pages: np.ndarray | None = None,
                covariates: dict | None = None) -> None:
        """Updates fatigue with the day's concentrations; `last_day` keeps the day's per-user
        features (per page of `pages`, the simulator's count; and `covariates`, [n] arrays the
        simulator adds) until the next end_day."""
        m = self.cfg.satisfaction_memory
        shown = np.zeros(len(active)) if pages is None else np.asarray(pages, np.float64)
        pages = np.maximum(shown, 1)
        self.last_day = {**(covariates or {}), "active": active.copy(), "pages": shown.copy(),
                         "channel_concentration": channel_concentration(self.day_channel),
                         "topic_concentration": channel_concentration(self.day_topic),
                         "completion_per_page": self.day_completion / pages,
                         "clickbait_per_page": self.day_clickbait / pages}
        today = self.last_day["channel_concentration"]
        self.fatigue = np.where(active, m * self.fatigue + (1 - m) * today, m * self.fatigue)
        today = self.last_day["topic_concentration"]
        self.topic_fatigue = np.where(active, m * self.topic_fatigue + (1 - m) * today,
                                      m * self.topic_fatigue)

    def rate_factor(self) -> np.ndarray:
        """[n] the session-rate multiplier exp(-w_fat * F_u - w_tf * G_u)."""
        return np.exp(-self.cfg.fatigue_weight * self.fatigue
                      - self.cfg.topic_fatigue_weight * self.topic_fatigue)
