"""The logging policy: the paper's online base (Sec. 4.5) with online exploration (Sec. 3.5).

A supervised logistic-regression click model, retrained every day on the previous day's log
(day 0 on a warm-up day served uniformly at random), ranks the candidates within each channel.
A rule takes a fixed quota of each channel's best items (news 3, article 3, long video 2, short
video 2 by default) and orders these by the LR's predicted CTR. Slot k shows the best-ranked
quota item not yet shown (g); with probability epsilon it instead shows a uniformly random
candidate among the 4 x K not yet shown. For slot k with R candidates left the policy is

    pi(i | slot k) = (1 - eps) * [i == g] + eps / R      for every candidate i not yet shown,

which sums to 1, and `propensity` logs pi of the item shown.

With randomised quotas (--quota_choices: K alternatives, one drawn uniformly per request) the
greedy item depends on the drawn quota q, which is not logged: the propensity of slot k's item
is the mixture over q under its posterior given the slots already filled,

    pi(i | slot k) = sum_q w_q [(1 - eps) [i == g_q] + eps / R] / sum_q w_q,
    w_q = prod_{j < k} pi_q(shown_j | slot j)          (w_q = 1 / K at slot 0)

(`mixture_slot_probabilities`), which sums to 1 as each pi_q does.
"""
from __future__ import annotations

import numpy as np
from scipy import optimize, sparse

from data.sim_config import CHANNELS, SimConfig
from data.sim_world import World

N_AGE_BUCKETS = 6
WEIGHT_SCALE = 2.0 ** 16  # the LR's weights are multiples of 1/WEIGHT_SCALE


class LogisticClickModel:
    """LR on one-hot item features and (user field x channel), (user field x item topic) crosses."""

    def __init__(self, cfg: SimConfig, world: World):
        self.world = world
        self.l2 = cfg.lr_l2
        sizes = np.asarray(world.users.field_sizes)
        self.field_offset = np.r_[0, np.cumsum(sizes)[:-1]]
        n_field_values = int(sizes.sum())
        self.n_topics = cfg.n_topics
        n_ch = len(CHANNELS)
        item_sizes = [n_ch, 5, 5, N_AGE_BUCKETS, cfg.list_size]  # channel, q, dur, age, slot
        self.item_offset = np.r_[1, 1 + np.cumsum(item_sizes)[:-1]]
        self.cross_ch_offset = 1 + sum(item_sizes)
        self.cross_topic_offset = self.cross_ch_offset + n_field_values * n_ch
        self.n_features = self.cross_topic_offset + n_field_values * self.n_topics
        self.weights = np.zeros(self.n_features)
        self._item_score = None  # cached static part of rank_scores, reset by fit
        tag0 = world.items.tags[:, 0]
        self.item_topic = np.maximum(world.tag_topic[tag0], 0)

    def _feature_index(self, user_fields, item_id, age_bucket, slot) -> np.ndarray:
        """[n, F] -> [n, nnz] active feature indices of each impression."""
        items = self.world.items
        ch = items.channel[item_id]
        fv = user_fields + self.field_offset
        cols = [np.zeros(len(item_id), np.int64),
                self.item_offset[0] + ch,
                self.item_offset[1] + items.fields[item_id, 0],
                self.item_offset[2] + items.fields[item_id, 1],
                self.item_offset[3] + age_bucket,
                self.item_offset[4] + slot]
        cross_ch = self.cross_ch_offset + fv * len(CHANNELS) + ch[:, None]
        cross_topic = self.cross_topic_offset + fv * self.n_topics + self.item_topic[item_id][:, None]
        return np.concatenate([np.stack(cols, 1), cross_ch, cross_topic], axis=1)

    def fit(self, user_fields, item_id, age_bucket, slot, clicked, max_rows: int = 50_000,
            rng=None) -> None:
        """L2-regularised LR by L-BFGS, warm-started from the previous day's weights."""
        if len(item_id) > max_rows:
            pick = (rng or np.random.default_rng(0)).choice(len(item_id), max_rows, replace=False)
            user_fields, item_id, age_bucket, slot, clicked = (
                a[pick] for a in (user_fields, item_id, age_bucket, slot, clicked))
        idx = self._feature_index(user_fields, item_id, age_bucket, slot)
        n, nnz = idx.shape
        x = sparse.csr_matrix((np.ones(n * nnz), idx.ravel(), np.arange(0, n * nnz + 1, nnz)),
                              shape=(n, self.n_features))
        y = clicked.astype(np.float64)

        def loss_grad(w):
            z = x @ w
            p = 1.0 / (1.0 + np.exp(-z))
            loss = np.sum(np.logaddexp(0, z) - y * z) / n + 0.5 * self.l2 / n * (w[1:] @ w[1:])
            g = x.T @ (p - y) / n
            g[1:] += self.l2 / n * w[1:]
            return loss, g

        res = optimize.minimize(loss_grad, self.weights, jac=True, method="L-BFGS-B",
                                options={"maxiter": 40})
        # L-BFGS amplifies the last-bit differences of BLAS kernels and SIMD exp/log between
        # CPUs (1e-13 after one day, 1e-5 after four warm-started days, then other rankings):
        # rounding to 2^-16 gives every CPU the same weights unless one lands within ~1e-13 of
        # a rounding boundary (about 1e-5 per fit), and makes the ranking sums exact.
        self.weights = np.rint(res.x * WEIGHT_SCALE) / WEIGHT_SCALE
        self._item_score = None

    def rank_scores(self, user_fields: np.ndarray, candidates: np.ndarray,
                    age: np.ndarray) -> np.ndarray:
        """[n, C, K] logits up to a per-(user, channel) constant, which ranking ignores."""
        w = self.weights
        if self._item_score is None:  # [item, age bucket] -> the user-independent part
            fields = self.world.items.fields
            item = w[self.item_offset[1] + fields[:, 0]] + w[self.item_offset[2] + fields[:, 1]]
            self._item_score = (item[:, None] + w[self.item_offset[3] + np.arange(N_AGE_BUCKETS)]
                                ).ravel()
        fv = user_fields + self.field_offset  # [n, F]
        topic_w = w[self.cross_topic_offset + fv[:, :, None] * self.n_topics
                    + np.arange(self.n_topics)].sum(1)  # [n, topics]
        # In-place index arithmetic and take (not []): a third faster on these [n, C, K] arrays.
        index = candidates * N_AGE_BUCKETS
        index += age
        score = self._item_score.take(index)
        index = self.item_topic.take(candidates)
        index += (np.arange(len(candidates)) * self.n_topics)[:, None, None]
        score += topic_w.ravel().take(index)
        return score

    def channel_scores(self, user_fields: np.ndarray) -> np.ndarray:
        """[n, C]: the per-(user, channel) part of the logit that `rank_scores` leaves out."""
        w = self.weights
        n_ch = len(CHANNELS)
        fv = user_fields + self.field_offset
        cross = w[self.cross_ch_offset + fv[:, :, None] * n_ch + np.arange(n_ch)].sum(1)
        return w[0] + w[self.item_offset[0] + np.arange(n_ch)] + w[self.item_offset[4]] + cross


def slot_probabilities(used: np.ndarray, greedy: np.ndarray, epsilon: float) -> np.ndarray:
    """pi(i | slot) over the flattened candidates: [n, M] used mask, [n] greedy index -> [n, M]."""
    remaining = (~used).sum(1, keepdims=True)
    probs = np.where(used, 0.0, epsilon / remaining)
    probs[np.arange(len(used)), greedy] += 1.0 - epsilon
    return probs


def explore_picks(used: np.ndarray, epsilon: float, rng) -> tuple[np.ndarray, np.ndarray]:
    """(explore [n] bool: the slot explores, with probability epsilon; pick [n]: a uniformly
    drawn candidate not yet shown, by rejection) for a [n, M] used mask."""
    n, m = used.shape
    rows = np.arange(n)
    explore = rng.uniform(size=n) < epsilon
    pick = rng.integers(0, m, size=n)
    while True:
        clash = used[rows, pick]
        if not clash.any():
            break
        pick[clash] = rng.integers(0, m, size=int(clash.sum()))
    return explore, pick


def mixture_slot_probabilities(used: np.ndarray, greedy: np.ndarray, weights: np.ndarray,
                               epsilon: float) -> np.ndarray:
    """pi(i | slot) under randomised quotas: [n, M] used mask, [n, K] greedy index per quota,
    [n, K] posterior weights of the quotas -> [n, M]."""
    w = weights / weights.sum(1, keepdims=True)
    probs = np.zeros(used.shape)
    for q in range(greedy.shape[1]):
        probs += w[:, q:q + 1] * slot_probabilities(used, greedy[:, q], epsilon)
    return probs


class LoggingPolicy:
    def __init__(self, cfg: SimConfig, world: World):
        self.cfg = cfg
        self.model = LogisticClickModel(cfg, world)
        self.quota = np.bincount(cfg.quota_channels(), minlength=len(CHANNELS))
        self.quota_choices = [np.asarray(q) for q in cfg.quota_counts()]

    def greedy_order(self, user_fields, candidates, age, block: int = 256,
                     quotas: bool = True, quota=None) -> np.ndarray:
        """[n, S] flat candidate indices: each channel's quota of best items, by predicted CTR
        (quotas=False: the best items of any channels, a CTR-only ranker).

        Requests go in blocks of `block`: smaller score arrays, ~1.3x faster than all at once
        (measured in data.generate's loop; blocks of 16 are slower again, from call overheads).
        """
        starts = range(0, max(len(candidates), 1), block)  # one (empty) block for no requests
        if quota is None:
            quota = self.quota if quotas else np.full_like(self.quota, self.cfg.list_size)
        return np.concatenate([self._greedy_block(user_fields[a:a + block],
                                                  candidates[a:a + block], age[a:a + block],
                                                  quota)
                               for a in starts])

    def _greedy_block(self, user_fields, candidates, age, quota) -> np.ndarray:
        n, n_ch, k = candidates.shape
        within = self.model.rank_scores(user_fields, candidates, age)  # ours: picks are erased
        channel = self.model.channel_scores(user_fields)
        picks, score = [], []
        rows = np.arange(n)
        for c in range(n_ch):
            scores = within[:, c]
            for _ in range(int(quota[c])):  # quotas are small: repeated argmax beats sorting
                best = scores.argmax(axis=1)
                score.append(scores[rows, best] + channel[:, c])  # the full logit of the pick
                scores[rows, best] = -np.inf
                picks.append(best + c * k)
        picks, score = np.stack(picks, axis=1), np.stack(score, axis=1)
        return np.take_along_axis(picks, np.argsort(-score, axis=1, kind="stable"), axis=1)

    def act(self, user_fields, candidates, age, epsilon: float, rng, trace=None,
            quotas: bool = True):
        """Fills every slot; returns (slates [n, S] item ids, propensities [n, S]).

        `trace`, when a list, receives (used, greedy, choice) per slot for checking propensities.
        """
        if self.quota_choices and quotas:
            return self._act_random_quota(user_fields, candidates, age, epsilon, rng, trace)
        n, n_ch, k = candidates.shape
        s = self.cfg.list_size
        order = self.greedy_order(user_fields, candidates, age, quotas=quotas)
        used = np.zeros((n, n_ch * k), bool)
        ptr = np.zeros(n, np.int64)
        rows = np.arange(n)
        slate_idx = np.empty((n, s), np.int64)
        props = np.empty((n, s))
        for slot in range(s):
            greedy = order[rows, ptr]
            while True:  # skip quota items an exploration step already showed
                stale = used[rows, greedy]
                if not stale.any():
                    break
                ptr[stale] += 1
                greedy = order[rows, ptr]
            explore, pick = explore_picks(used, epsilon, rng)
            choice = np.where(explore, pick, greedy)
            remaining = n_ch * k - slot
            props[:, slot] = epsilon / remaining + (1.0 - epsilon) * (choice == greedy)
            if trace is not None:
                trace.append((used.copy(), greedy.copy(), choice.copy()))
            used[rows, choice] = True
            slate_idx[:, slot] = choice
        slates = np.take_along_axis(candidates.reshape(n, -1), slate_idx, axis=1)
        return slates, props

    def _act_random_quota(self, user_fields, candidates, age, epsilon, rng, trace=None):
        """`act` with a quota drawn per request from --quota_choices; the propensities are the
        mixture over the quotas (module docstring). `trace` receives (used, greedy [n, K],
        weights [n, K], choice) per slot."""
        n, n_ch, k = candidates.shape
        s, n_q = self.cfg.list_size, len(self.quota_choices)
        orders = np.stack([self.greedy_order(user_fields, candidates, age, quota=q)
                           for q in self.quota_choices], axis=1)            # [n, K, S]
        drawn = rng.integers(0, n_q, size=n)
        used = np.zeros((n, n_ch * k), bool)
        ptr = np.zeros((n, n_q), np.int64)
        weights = np.full((n, n_q), 1.0 / n_q)
        rows = np.arange(n)
        slate_idx = np.empty((n, s), np.int64)
        props = np.empty((n, s))
        for slot in range(s):
            greedy = np.take_along_axis(orders, np.minimum(ptr, s - 1)[..., None], axis=2)[..., 0]
            while True:  # skip quota items an exploration step already showed
                stale = used[rows[:, None], greedy] & (ptr < s - 1)
                if not stale.any():
                    break
                ptr[stale] += 1
                greedy = np.take_along_axis(orders, ptr[..., None], axis=2)[..., 0]
            explore, pick = explore_picks(used, epsilon, rng)
            choice = np.where(explore, pick, greedy[rows, drawn])
            remaining = n_ch * k - slot
            per_q = epsilon / remaining + (1.0 - epsilon) * (choice[:, None] == greedy)
            props[:, slot] = (weights * per_q).sum(1) / weights.sum(1)
            if trace is not None:
                trace.append((used.copy(), greedy.copy(), weights.copy(), choice.copy()))
            weights = weights * per_q
            weights /= weights.sum(1, keepdims=True)
            used[rows, choice] = True
            slate_idx[:, slot] = choice
        slates = np.take_along_axis(candidates.reshape(n, -1), slate_idx, axis=1)
        return slates, props
