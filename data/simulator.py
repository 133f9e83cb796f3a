"""IRecSim: an integrated feed with ground truth, vectorised over users (SIMULATOR.md).

The click model (one page of `list_size` slots, slot k = 0..S-1):

    e_k = (1 + k)^-eta                                    (examination, position bias)
    z   = alpha_c + drift_c(hour, network) + beta*log(C*rho_u[c]) + s*<u, v_i> + q_i
          - lambda_rep * max(0, #same-channel items above - free)
          - lambda_tag * #items above sharing a tag with i
          + lambda_nov * #tags of i not in the user's profile P_u
          + w_fresh * exp(-age_i / lifetime_i) + eps_ui
    P(click) = e_k * sigmoid(z)                           (logged as `true_ctr`, the oracle)

A click draws a log-normal dwell time around duration * completion, moves u towards v_i and adds
i's tags to P_u. A session continues to another page with sigmoid(theta_0 + theta_1*clicks +
theta_2*distinct tags); across days a user's session rate follows their satisfaction (clicks,
newly engaged tags, minus repeated tags), so diversity and novelty have long-term value.

The mechanisms for the paper's claims (clickbait, channel satiation, a pure three-way
interaction, a channel shock, channel fatigue, satisfaction from completion) add their terms to
z and to the daily satisfaction / session rate: data/mechanisms.py, each off at weight 0.

`IRecSim` is the interactive API: `reset(user_ids)` -> first `Requests` (with the matching stage's
top-K candidates per channel); `step(slates)` -> (`Feedback`, next `Requests`). All users with a
session in progress are served together, one page each per step.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from data.mechanisms import TRIPLE_FIELD, MechanismState
from data.sim_config import CHANNELS, SimConfig
from data.sim_world import DAY, World

AGE_BUCKET_HOURS = (6.0, 24.0, 72.0, 168.0, 720.0)  # item_age_bucket edges: 6h, 1d, 3d, 1w, 30d
VIDEO = np.array([0.0, 0.0, 1.0, 1.0])
# Hour-of-day activity profile (relative sessions per hour): morning, lunch and evening peaks.
HOUR_PROFILE = np.array([2, 1, 1, 1, 1, 2, 4, 7, 9, 7, 6, 7, 9, 8, 6, 6, 6, 7, 8, 10, 11, 11, 9,
                         5], np.float64)
HOUR_PROFILE /= HOUR_PROFILE.sum()
WIFI, CELL_4G, CELL_5G = 0, 1, 2
# Matching scores are computed in exact integer arithmetic (in float64), so the candidates do not
# depend on the CPU: vectors are quantised to 2^-16 per coordinate, products and their sums are
# then integers below 2^40 that any BLAS kernel, in any summation order, gets exactly right.
COORD_SCALE = 2.0 ** 16  # one unit of a quantised latent coordinate
SCORE_SCALE = COORD_SCALE ** 2  # one unit of a quantised score
RECENT_SCORE = -2.0 ** 40  # quantised score of recently shown items: below any real score
MAX_POOL = 4096  # top_k_columns breaks ties by the pool column, packed into 12 bits


# --- the click model, as pure functions (tested equation by equation) ---------------------------
def examination(list_size: int, decay: float) -> np.ndarray:
    """e_k = (1 + k)^-eta for k = 0..S-1."""
    return (1.0 + np.arange(list_size)) ** -decay


def same_channel_above(channel: np.ndarray) -> np.ndarray:
    """[n, S] -> [n, S]: number of items above slot k with the same channel."""
    s = channel.shape[1]
    eq = channel[:, :, None] == channel[:, None, :]
    return (eq & np.tri(s, s, -1, dtype=bool)).sum(-1)


def shared_tag_above(tags: np.ndarray) -> np.ndarray:
    """[n, S, T] -> [n, S]: number of items above slot k that share at least one tag with it."""
    n, s, t = tags.shape
    mine = np.where(tags > 0, tags, -1)  # padding (0) then equals no tag of another item
    share = np.zeros((n, s, s), bool)
    for a in range(t):
        for b in range(t):
            share |= mine[:, :, None, a] == tags[:, None, :, b]
    return (share & np.tri(s, s, -1, dtype=bool)).sum(-1)


def quantise(x: np.ndarray, scale: float) -> np.ndarray:
    """Round x to integer multiples of 1/scale, returned as integer-valued float64."""
    return np.rint(np.asarray(x, np.float64) * scale)


def ranking_keys(scores: np.ndarray, columns: np.ndarray) -> np.ndarray:
    """Integer-valued scores in (-2^40, 2^40) and their pool columns (< 4096) -> exact keys
    score * 4096 + column, unique within a pool, that order items by score and break ties
    towards the larger column; float64 holds them exactly (|key| < 2^52)."""
    return np.asarray(scores, np.float64) * float(MAX_POOL) + columns


def top_k_columns(keys: np.ndarray, k: int) -> np.ndarray:
    """[n, M] `ranking_keys` of one pool -> [n, k] int16 columns of each row's k largest, in
    ascending column order.

    The keys are unique within a row, so the selected set does not depend on the partition
    algorithm; numpy's leaves it in an order that differs between CPUs with and without AVX-512,
    hence the sort.
    """
    n, m = keys.shape
    if m > MAX_POOL:
        raise ValueError(f"top_k_columns: {m} columns, at most {MAX_POOL}")
    key = keys.astype(np.int64)  # an int64 partition is faster than a float64 one
    key.partition(m - k, axis=1)
    return np.sort((key[:, m - k:] & (MAX_POOL - 1)).astype(np.int16), axis=1)  # int16: faster


def hour_drift(hour: np.ndarray, amplitude: float) -> np.ndarray:
    """[n] hours -> [n, C] logit shifts: news peaks at 8h, videos at 21h, articles flat."""
    h = hour.astype(np.float64)[:, None]
    peak = np.array([8.0, 14.0, 21.0, 21.0])
    weight = np.array([1.0, 0.0, 1.0, 1.0])
    return amplitude * weight * np.cos(2 * np.pi * (h - peak) / 24.0)


def network_drift(network: np.ndarray, effect: float) -> np.ndarray:
    """[n] -> [n, C]: videos are clicked more on wifi and less on cellular networks."""
    sign = np.where(network == WIFI, 1.0, -0.5)[:, None]
    return effect * sign * VIDEO


def click_logit(cfg: SimConfig, *, alpha, pref, match, quality, same_channel, shared_tags,
                novel, freshness, drift, idio) -> np.ndarray:
    """z of the click model; all inputs broadcast to [n, S] (`pref` = rho_u[c_i])."""
    n_channels = len(CHANNELS)
    pref = np.asarray(pref, np.float64)  # numpy's float32 log differs between SIMD targets
    return (alpha + drift + cfg.channel_pref_weight * np.log(n_channels * pref)
            + cfg.match_weight * match + quality
            - cfg.repeat_penalty * np.maximum(same_channel - cfg.repeat_free, 0)
            - cfg.tag_repeat_penalty * shared_tags
            + cfg.novelty_weight * novel + cfg.freshness_weight * freshness + idio)


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def _mix64(x: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser: a fast, well-mixed integer hash (wrapping uint64 arithmetic)."""
    x = x.astype(np.uint64)
    with np.errstate(over="ignore"):
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def idiosyncratic(seed: int, user_id: np.ndarray, item_id: np.ndarray, std: float) -> np.ndarray:
    """eps_ui: a fixed standard-normal-like user-item term (Irwin-Hall of 4 uniforms)."""
    with np.errstate(over="ignore"):
        key = (user_id.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)
               + item_id.astype(np.uint64) + np.uint64(seed) * np.uint64(0xD1B54A32D192ED03))
    h = _mix64(key)
    total = np.zeros(h.shape)
    for shift in (0, 16, 32, 48):
        total += ((h >> np.uint64(shift)) & np.uint64(0xFFFF)).astype(np.float64)
    return (total / 65536.0 - 2.0) / np.sqrt(4.0 / 12.0) * std


def age_bucket(age_seconds: np.ndarray) -> np.ndarray:
    return np.searchsorted(np.asarray(AGE_BUCKET_HOURS) * 3600.0, age_seconds, side="right")


# --- the interactive environment -------------------------------------------------------------
@dataclasses.dataclass
class Requests:
    """One page request per row."""

    user_id: np.ndarray  # [n] global user ids
    request_id: np.ndarray  # [n] unique over the whole log
    timestamp: np.ndarray  # [n] seconds since day 0, 00:00
    day: int  # all rows of one step share the day
    page: np.ndarray  # [n] page index within the session (0 = a new session)
    context: np.ndarray  # [n, 3] hour, weekday, network
    user_fields: np.ndarray  # [n, F_u]
    candidates: np.ndarray  # [n, C, K] item ids from the matching stage
    candidate_age: np.ndarray  # [n, C, K] item_age_bucket of each candidate at request time
    rows: np.ndarray  # [n] the env's internal row of each user

    def __len__(self):
        return len(self.user_id)


@dataclasses.dataclass
class Feedback:
    clicked: np.ndarray  # [n, S] bool
    dwell: np.ndarray  # [n, S] seconds, 0 without click
    true_ctr: np.ndarray  # [n, S] e_k * sigmoid(z)
    novel_tags: np.ndarray  # [n, S] tags of the item new to the user's profile
    item_age_bucket: np.ndarray  # [n, S]
    tags: np.ndarray  # [n, S, T]
    shared_tags: np.ndarray  # [n, S] items above sharing a tag (the list-repetition count)
    # The parts of z that data.ceilings needs (never written to the log):
    logit_known: np.ndarray | None = None  # [n, S] z without beta*log(C*rho), s*<u,v>, eps_ui
    idio: np.ndarray | None = None  # [n, S] eps_ui
    exam: np.ndarray | None = None  # [S] e_k
    terms: dict | None = None  # {name: [n, S]} data.mechanisms' click-logit terms (0 when off)


class IRecSim:
    """Vectorised integrated-feed environment for a set of users (one shard, or an experiment)."""

    def __init__(self, world: World, rng_key: int = 0):
        self.world = world
        self.cfg = world.config
        self.rng = np.random.default_rng([self.cfg.seed, 1, rng_key])
        self._exam = examination(self.cfg.list_size, self.cfg.position_decay)
        self.done = True

    # -- public API --
    def reset(self, user_ids, start_day: int = 0) -> Requests:
        """Starts the period at `start_day` (-1 = the warm-up day) for `user_ids`."""
        users = self.world.users
        ids = np.asarray(user_ids, np.int64)
        if ids.ndim != 1 or len(ids) == 0:
            raise ValueError(f"reset needs a non-empty 1-D array of user ids, got shape {ids.shape}")
        if ids.min() < 0 or ids.max() >= len(users):
            raise ValueError(f"user ids must be in [0, {len(users)}), got "
                             f"[{ids.min()}, {ids.max()}]")
        n = len(ids)
        self.user_id = ids
        self.interest = users.interest[ids].copy()
        self.pref = users.channel_pref[ids]
        self.fields = users.fields[ids]
        self.activity = users.activity[ids]
        self.profile = np.zeros((n, self.world.n_tags), bool)
        self.profile[np.arange(n)[:, None], users.profile_tags[ids]] = True
        self.profile[:, 0] = False
        self.recent = np.full((n, self.cfg.recent_window), -1, np.int64)
        self.satisfaction = np.full(n, self.cfg.satisfaction_reference)
        self.request_count = np.zeros(n, np.int64)
        self.mech = MechanismState(self.cfg, n, len(self.world.items),
                                   np.bincount(users.fields[:, TRIPLE_FIELD]), HOUR_PROFILE,
                                   self.world.item_topic())
        self.day = start_day - 1
        self.done = False
        return self._next_day()

    def step(self, slates: np.ndarray, check: bool = True) -> tuple[Feedback, Requests]:
        """Shows `slates` ([n, S] item ids, one row per pending request) and advances.

        `check=False` skips the candidate-membership check, for policies that pick from the
        candidates by construction (the logging policy).
        """
        req = self._pending
        if self.done:
            raise RuntimeError("the period is over: call reset() to start again")
        slates = np.asarray(slates, np.int64)
        if check:
            self._check_slates(slates, req)
        elif slates.shape != (len(req), self.cfg.list_size):
            raise ValueError(f"slates has shape {slates.shape}, expected "
                             f"{(len(req), self.cfg.list_size)}")
        fb = self._feedback(req, slates)
        self._update_users(req, slates, fb)
        return fb, self._advance(req, fb)

    # -- days and sessions --
    def _next_day(self) -> Requests:
        cfg = self.cfg
        while True:
            self.day += 1
            if self.day >= cfg.n_days:
                self.done = True
                self._pending = self._empty_requests()
                return self._pending
            self._prepare_pools()
            weekday = self.day % 7
            weekend = 1.15 if weekday >= 5 else 1.0
            rate = (cfg.sessions_per_day * self.activity * weekend * np.exp(
                cfg.return_weight * np.tanh(self.satisfaction - cfg.satisfaction_reference)))
            if cfg.fatigue_weight or cfg.topic_fatigue_weight:
                rate = rate * self.mech.rate_factor()
            count = self.rng.poisson(rate)
            max_s = int(count.max()) if len(count) else 0
            if max_s == 0:
                continue
            hours = self.rng.choice(24, size=(len(count), max_s), p=HOUR_PROFILE)
            times = hours * 3600 + self.rng.integers(0, 3600, size=hours.shape)
            times = np.sort(np.where(np.arange(max_s) < count[:, None], times, DAY * 2), axis=1)
            self.session_times = times + self.day * DAY
            self.sessions_left = count
            self.next_session = np.zeros(len(count), np.int64)
            self.in_session = np.zeros(len(count), bool)
            self.page = np.zeros(len(count), np.int64)
            self.t_next = np.zeros(len(count), np.int64)
            self.network = np.zeros(len(count), np.int64)
            self.day_clicks = np.zeros(len(count))
            self.day_pages = np.zeros(len(count))
            self.day_new_tags = np.zeros(len(count))
            self.day_repeats = np.zeros(len(count))
            self.mech.start_day()
            self._start_sessions(np.flatnonzero(count > 0), last_t=None)
            return self._make_requests(np.flatnonzero(self.in_session))

    def _start_sessions(self, rows: np.ndarray, last_t) -> None:
        start = self.session_times[rows, self.next_session[rows]]
        if last_t is not None:
            start = np.maximum(start, last_t + self.cfg.page_gap_s)
        self.t_next[rows] = start
        self.next_session[rows] += 1
        self.sessions_left[rows] -= 1
        self.in_session[rows] = True
        self.page[rows] = 0
        hour = (start // 3600) % 24
        wifi_p = np.where((hour >= 19) | (hour < 8), 0.75, 0.45)
        u = self.rng.uniform(size=len(rows))
        self.network[rows] = np.where(u < wifi_p, WIFI, np.where(u < wifi_p + 0.35 * (1 - wifi_p),
                                                                 CELL_5G, CELL_4G))

    def _end_of_day(self) -> None:
        cfg = self.cfg
        pages = np.maximum(self.day_pages, 1)
        today = (cfg.satisfaction_click * self.day_clicks
                 + cfg.satisfaction_new_tag * self.day_new_tags
                 - cfg.satisfaction_boredom * self.day_repeats) / pages
        if cfg.satisfaction_completion or cfg.clickbait_satisfaction:
            today = today + self.mech.satisfaction_terms(self.day_pages)
        active = self.day_pages > 0
        self.mech.end_day(active, self.day_pages, {
            "clicks_per_page": self.day_clicks / pages,
            "new_tags_per_page": self.day_new_tags / pages,
            "repeats_per_page": self.day_repeats / pages})
        m = cfg.satisfaction_memory
        # Days without a session pull satisfaction back towards the reference.
        today = np.where(active, today, cfg.satisfaction_reference)
        self.satisfaction = m * self.satisfaction + (1 - m) * today

    def _advance(self, req: Requests, fb: Feedback) -> Requests:
        cfg = self.cfg
        rows = req.rows
        clicks = fb.clicked.sum(1)
        distinct = _distinct_count(fb.tags.reshape(len(rows), -1))
        p = sigmoid(cfg.continue_bias + cfg.continue_clicks * clicks + cfg.continue_tags * distinct)
        cont = (self.rng.uniform(size=len(rows)) < p) & (self.page[rows] + 1 < cfg.max_pages)
        go_on = rows[cont]
        self.page[go_on] += 1
        self.t_next[go_on] += cfg.page_gap_s
        ended = rows[~cont]
        self.in_session[ended] = False
        again = ended[self.sessions_left[ended] > 0]
        self._start_sessions(again, last_t=self.t_next[again])
        active = np.flatnonzero(self.in_session)
        if len(active) == 0:
            self._end_of_day()
            return self._next_day()
        return self._make_requests(active)

    # -- matching stage --
    def _prepare_pools(self) -> None:
        items = self.world.items
        self.pools = []
        k = self.cfg.candidates_per_channel
        for c in range(len(CHANNELS)):
            ids = items.alive(self.day, c)
            if not k <= len(ids) <= MAX_POOL:
                raise ValueError(f"day {self.day}: channel {CHANNELS[c]} has {len(ids)} items "
                                 f"alive; the matching stage needs --candidates_per_channel={k} "
                                 f"to {MAX_POOL}")
            self.pools.append(ids)
        self.pool_offset = np.cumsum([0] + [len(ids) for ids in self.pools])
        all_ids = np.concatenate(self.pools)
        # Matching keys come from one matmul: [q(u), 1] @ pool_keys = ranking_keys(q(u).q(v_i) +
        # jitter_i, column of i in its channel's pool), exact as every term is an integer below
        # 2^52. The extra last column is the "not in today's pool" sentinel that recent items map
        # to; it belongs to no channel's slice.
        latent = quantise(items.latent[all_ids].T, COORD_SCALE)
        # Item-level jitter of the matching scores, redrawn daily (trending, freshness of stats).
        jitter = quantise(self.rng.standard_normal(len(all_ids)) * self.cfg.match_noise,
                          SCORE_SCALE)
        # Pool column -> column within its channel (pool_col below: item -> pool column).
        self.channel_column = np.zeros(len(all_ids) + 1, np.int64)
        for lo, hi in zip(self.pool_offset[:-1], self.pool_offset[1:]):
            self.channel_column[lo:hi] = np.arange(hi - lo)
        self.pool_keys = np.zeros((self.cfg.latent_dim + 1, len(all_ids) + 1))
        self.pool_keys[:-1, :-1] = latent * float(MAX_POOL)
        self.pool_keys[-1, :-1] = ranking_keys(jitter, self.channel_column[:-1])
        self.recent_keys = ranking_keys(np.full(len(all_ids) + 1, RECENT_SCORE),
                                        self.channel_column)
        self.pool_col = np.full(len(items) + 1, len(all_ids), np.int64)  # last: "not in a pool"
        self.pool_col[all_ids] = np.arange(len(all_ids))
        self._user_buffer = np.ones((0, self.cfg.latent_dim + 1))
        self._key_buffer = np.empty((0, len(all_ids) + 1))
        # Item age buckets of today's pools: an item's age is (days since publish) * 24h plus the
        # hour of the request, so the bucket depends only on the item and whether hour < 6.
        days_old = (self.day - items.publish_day) * 24.0
        self.age_table = np.stack([age_bucket((days_old + h) * 3600.0) for h in (0.0, 6.0)]
                                  ).astype(np.int8)

    def candidate_age_buckets(self, hour: np.ndarray, item_ids: np.ndarray) -> np.ndarray:
        """item_age_bucket of `item_ids` ([n, ...]) at each request's hour of day ([n])."""
        late = (hour >= 6).astype(np.int64) * self.age_table.shape[1]
        return self.age_table.ravel().take(late.reshape((-1,) + (1,) * (item_ids.ndim - 1))
                                           + item_ids)

    def _matching(self, rows: np.ndarray, hour: np.ndarray, block: int = 256):
        """Top-K items per channel by <u + noise, v_i> + jitter_i, never the user's recent items.

        The noise is a random tilt of the user vector per request (a noisy user embedding, as a
        real retrieval stage has), which keeps consecutive requests from repeating one set.
        Returns the candidates [n, C, K] (each channel's in pool order, so that no CPU's partition
        order leaks into the data) and their age buckets at each request's `hour`.
        Requests go in blocks of `block`: smaller score arrays, ~1.3x faster than all at once.
        """
        n = len(rows)
        u = self.interest[rows] + self.rng.standard_normal(
            (n, self.cfg.latent_dim), dtype=np.float32) * (
                self.cfg.match_noise / np.sqrt(self.cfg.latent_dim))
        out = np.empty((n, len(CHANNELS), self.cfg.candidates_per_channel), np.int64)
        age = np.empty(out.shape, np.int8)
        for a in range(0, n, block):
            self._match_block(u[a:a + block], self.recent[rows[a:a + block]], out[a:a + block])
            age[a:a + block] = self.candidate_age_buckets(hour[a:a + block], out[a:a + block])
        return out, age

    def _match_block(self, u: np.ndarray, recent: np.ndarray, out: np.ndarray) -> None:
        """Writes the candidates of users `u` [n, d] with recent items `recent` into `out`."""
        k = self.cfg.candidates_per_channel
        n = len(u)
        if len(self._key_buffer) < n:  # reused: fresh arrays this size cost page faults
            self._user_buffer = np.ones((n, u.shape[1] + 1))
            self._key_buffer = np.empty((n, self.pool_keys.shape[1]))
        user = self._user_buffer[:n]
        user[:, :-1] = quantise(u, COORD_SCALE)
        keys = np.matmul(user, self.pool_keys, out=self._key_buffer[:n])
        cols = self.pool_col[recent]
        keys[np.arange(n)[:, None], cols] = self.recent_keys[cols]
        for c, ids in enumerate(self.pools):
            lo, hi = self.pool_offset[c], self.pool_offset[c + 1]
            if k < len(ids):
                out[:, c] = ids.take(top_k_columns(keys[:, lo:hi], k))  # take: int16 is fine
            else:
                out[:, c] = ids

    def _make_requests(self, rows: np.ndarray) -> Requests:
        t = self.t_next[rows]
        hour = (t // 3600) % 24
        weekday = np.full(len(rows), self.day % 7)
        self.request_count[rows] += 1
        candidates, age = self._matching(rows, hour)
        req = Requests(
            user_id=self.user_id[rows],
            request_id=(self.user_id[rows] << 20) + self.request_count[rows],
            timestamp=t, day=self.day, page=self.page[rows].copy(),
            context=np.stack([hour, weekday, self.network[rows]], axis=1),
            user_fields=self.fields[rows], candidates=candidates, candidate_age=age, rows=rows)
        self._pending = req
        return req

    def _empty_requests(self) -> Requests:
        z = np.zeros(0, np.int64)
        return Requests(z, z, z, self.day, z, np.zeros((0, 3), np.int64),
                        np.zeros((0, self.world.users.fields.shape[1]), np.int64),
                        np.zeros((0, len(CHANNELS), self.cfg.candidates_per_channel), np.int64),
                        np.zeros((0, len(CHANNELS), self.cfg.candidates_per_channel), np.int64), z)

    # -- one page of feedback --
    def _check_slates(self, slates: np.ndarray, req: Requests) -> None:
        want = (len(req), self.cfg.list_size)
        if slates.shape != want:
            raise ValueError(f"slates has shape {slates.shape}, expected {want} "
                             f"(one row of item ids per pending request)")
        flat = req.candidates.reshape(len(req), -1)
        member = (slates[:, :, None] == flat[:, None, :]).any(-1)
        if not member.all():
            r, k = np.argwhere(~member)[0]
            raise ValueError(f"slate row {r} slot {k}: item {slates[r, k]} is not among the "
                             f"request's candidates")
        srt = np.sort(slates, axis=1)
        dup = (srt[:, 1:] == srt[:, :-1]).any(1)
        if dup.any():
            raise ValueError(f"slate row {np.flatnonzero(dup)[0]} repeats an item")

    def click_probabilities(self, req: Requests, slates: np.ndarray) -> np.ndarray:
        """[n, S] P(click) of each slot of `slates` served to the requests `req` now: the
        `true_ctr` that step would log, computed without clicking, drawing or changing any
        state (off-policy evaluation's ground truth on logged requests)."""
        return self._click_model(req, slates)["p"]

    def candidate_logits(self, req: Requests) -> dict:
        """Every candidate's true click logit at the top of an empty list (no item above it:
        no repeat terms; the examination e_k multiplies it by slot), for oracle policies.
        Reads state, changes none. -> items, channel, z, completion [n, N] and tags
        [n, N, T], N = C x K (req.candidates flattened)."""
        cand = req.candidates.reshape(len(req), -1)
        t = self._item_terms(req, cand)
        z = click_logit(self.cfg, same_channel=0, shared_tags=0, **t["logit"])
        if any(cfg_weight for cfg_weight in self._mechanism_weights()):
            z = z + sum(self._mechanism_terms(req, cand, t["channel"]).values())
        return dict(items=cand, channel=t["channel"], tags=t["tags"], z=z,
                    completion=self._completion(t["logit"]["match"], cand))

    def _item_terms(self, req: Requests, items_shown: np.ndarray) -> dict:
        """The click model's terms of each item of `items_shown` [n, X] that do not depend on
        the items above it: {"logit": click_logit's keyword inputs but the list terms,
        "channel", "tags"} (reads state, changes none)."""
        cfg, items = self.cfg, self.world.items
        rows = req.rows
        channel = items.channel[items_shown]
        tags = items.tags[items_shown]
        # float64 from here: numpy's float32 exp/log differ between SIMD targets (SSE vs AVX2).
        match = np.einsum("nd,nsd->ns", self.interest[rows], items.latent[items_shown]
                          ).astype(np.float64)
        age = np.maximum(req.timestamp[:, None] - items.publish_day[items_shown] * DAY, 0)
        lifetime = items.lifetime_days[items_shown] * float(DAY)
        in_profile = np.take_along_axis(self.profile[rows], tags.reshape(len(rows), -1), axis=1)
        novel = ((tags > 0) & ~in_profile.reshape(tags.shape)).sum(-1)
        drift = (hour_drift(req.context[:, 0], cfg.hour_drift)
                 + network_drift(req.context[:, 2], cfg.network_effect))
        logit = dict(alpha=np.asarray(cfg.alpha)[channel], quality=items.quality[items_shown],
                     novel=novel, freshness=np.exp(-age / lifetime),
                     drift=np.take_along_axis(drift, channel, axis=1),
                     pref=np.take_along_axis(self.pref[rows], channel, axis=1), match=match,
                     idio=idiosyncratic(cfg.seed, req.user_id[:, None], items_shown,
                                        cfg.idiosyncratic_std))
        return dict(logit=logit, channel=channel, tags=tags)

    def _mechanism_terms(self, req: Requests, items_shown: np.ndarray, channel) -> dict:
        return self.mech.click_terms(req.rows, items_shown, channel, req.user_fields,
                                     req.context[:, 0], req.timestamp, req.day)

    def _completion(self, match: np.ndarray, items: np.ndarray) -> np.ndarray:
        """The share of an item a click consumes (SIMULATOR.md step 4), with the items'
        quality term where --completion_quality is on (data/mechanisms.py)."""
        x = self.cfg.completion_bias + self.cfg.completion_match * match
        if self.cfg.completion_quality:
            x = x + self.cfg.completion_quality * self.mech.quality[items]
        return sigmoid(x)

    def _click_model(self, req: Requests, slates: np.ndarray) -> dict:
        """The click model's parts for `slates` at `req` (reads state, changes none)."""
        cfg = self.cfg
        t = self._item_terms(req, slates)
        channel, tags, logit = t["channel"], t["tags"], t["logit"]
        shared = shared_tag_above(tags)
        listed = dict(same_channel=same_channel_above(channel), shared_tags=shared)
        z = click_logit(cfg, **logit, **listed)
        # what a model that knew the formula but not the user's latents or eps_ui would add up
        known = click_logit(cfg, **{**logit, "pref": np.full(z.shape, 1.0 / len(CHANNELS)),
                                    "match": np.zeros(z.shape), "idio": 0.0}, **listed)
        mech = self._mechanism_terms(req, slates, channel)
        if any(cfg_weight for cfg_weight in self._mechanism_weights()):
            extra = sum(mech.values())
            z, known = z + extra, known + extra
        p = self._exam[None, :] * sigmoid(z)
        return dict(p=p, match=logit["match"], novel=logit["novel"], tags=tags, shared=shared,
                    known=known, idio=logit["idio"], channel=channel, mech=mech)

    def _feedback(self, req: Requests, slates: np.ndarray) -> Feedback:
        cfg, items = self.cfg, self.world.items
        rows = req.rows
        m = self._click_model(req, slates)
        p, match, novel, tags, shared, known, idio, channel, mech = (
            m[k] for k in ("p", "match", "novel", "tags", "shared", "known", "idio", "channel",
                           "mech"))
        clicked = self.rng.uniform(size=p.shape) < p
        completion = self._completion(match, slates)
        self.mech.after_page(rows, slates, channel, clicked, completion, req.timestamp)
        dwell = items.duration[slates] * completion * np.exp(
            self.rng.standard_normal(p.shape) * cfg.dwell_sigma)
        dwell = np.where(clicked, np.minimum(dwell, 3 * items.duration[slates]), 0.0)
        return Feedback(clicked=clicked, dwell=dwell.astype(np.float32),
                        true_ctr=p.astype(np.float32), novel_tags=novel,
                        item_age_bucket=self.candidate_age_buckets(req.context[:, 0], slates),
                        tags=tags, shared_tags=shared, logit_known=known, idio=idio,
                        exam=self._exam, terms=mech)

    def _mechanism_weights(self):
        cfg = self.cfg
        return (cfg.clickbait_weight, cfg.satiation_weight, cfg.triple_weight, cfg.shock_size)

    def _update_users(self, req: Requests, slates: np.ndarray, fb: Feedback) -> None:
        cfg, items = self.cfg, self.world.items
        rows = req.rows
        clicked = fb.clicked
        pull = (clicked[..., None] * items.latent[slates]).sum(1)
        u = self.interest[rows] + cfg.interest_drift * pull
        self.interest[rows] = u / np.linalg.norm(u, axis=1, keepdims=True)
        r, s = np.nonzero(clicked)
        new_tags = fb.tags[r, s]
        before = self.profile[rows[r][:, None], new_tags] & (new_tags > 0)
        self.profile[rows[r][:, None], new_tags] = True
        self.profile[rows[r], 0] = False  # tag 0 pads; only these rows can have set it
        self.day_new_tags[rows] += np.bincount(
            r, weights=((new_tags > 0) & ~before).sum(1), minlength=len(rows))
        self.day_clicks[rows] += clicked.sum(1)
        self.day_pages[rows] += 1
        self.day_repeats[rows] += fb.shared_tags.sum(1)
        w = cfg.recent_window
        self.recent[rows] = np.concatenate([self.recent[rows], slates], axis=1)[:, -w:]


def _distinct_count(x: np.ndarray) -> np.ndarray:
    """Number of distinct positive values per row of a small int matrix."""
    s = np.sort(x, axis=1)
    return ((s > 0) & np.concatenate([np.ones((len(s), 1), bool), s[:, 1:] != s[:, :-1]],
                                     axis=1)).sum(1)
