"""Fair ceilings of IRecSim's click AUC (issue 22): what a model could reach, not the oracle.

The oracle AUC (`true_ctr` = e_k sigmoid(z)) is not a reachable ceiling: z holds eps_ui, a
fixed user-item term no feature carries, and the latents of users and of items never shown
before. Two ceilings are recorded beside it, per split, in metadata.json:

    oracle_auc_noise_free   AUC of e_k sigmoid(z - eps_ui): the oracle without the
                            idiosyncratic term.
    learnable_ceiling_auc   AUC of e_k sigmoid(z_known + s <u_hat, v_hat_i> + b_hat[c]): the true
                            formula with every term a model could know (the channel base, hour
                            and network drift, quality, list repetition, novelty, freshness;
                            `Feedback.logit_known`) and the user's latents estimated from the
                            training days only.

The user's latents are the interest u (d) and the channel term beta log(C rho_u[c]) (one free
offset b_c per channel, a superset of the Dirichlet's C - 1 degrees of freedom). They are
estimated per user by maximum a posteriori under the true click likelihood
y ~ Bernoulli(e_k sigmoid(z)) with a Gaussian prior (mean 0 for u, beta log(C pi_c) for b,
precision `l2`), by Fisher scoring (`fit_users`). `l2` is chosen on the last training day
(fit on the days before it), then the fit is redone on every training day. Items: the true
v_i for an item shown in the training days, and for a cold item the unit mean of its tags'
topic embeddings, which is all its features say (the item's own noise is not observable).

On the test split this is an estimate of the best any model of these logs can do; on the
training split it is the same fit scored in sample (an optimistic reference, not a ceiling).
"""
from __future__ import annotations

import dataclasses

import numpy as np

from data.sim_config import CHANNELS, SimConfig
from data.sim_world import World

L2_GRID = (3.0, 10.0, 30.0)   # prior precisions tried on the validation day
NEWTON_STEPS = 10                        # at most; stops when no weight moves by TOLERANCE
TOLERANCE = 1e-4


@dataclasses.dataclass
class Impressions:
    """What the ceilings need of every logged impression, one row each."""
    user: np.ndarray        # [n] global user id
    day: np.ndarray         # [n]
    item: np.ndarray        # [n]
    clicked: np.ndarray     # [n] bool
    exam: np.ndarray        # [n] e_k
    known: np.ndarray       # [n] z without the user's latent terms and eps_ui
    idio: np.ndarray        # [n] eps_ui
    true_ctr: np.ndarray    # [n] e_k sigmoid(z)

    @property
    def noise_free(self) -> np.ndarray:
        """e_k sigmoid(z - eps_ui), from p = e_k sigmoid(z)."""
        sig = np.clip(self.true_ctr / self.exam, 1e-12, 1 - 1e-12)
        return self.exam * _sigmoid(np.log(sig) - np.log1p(-sig) - self.idio)

    def take(self, keep: np.ndarray) -> "Impressions":
        return Impressions(**{f.name: getattr(self, f.name)[keep]
                              for f in dataclasses.fields(self)})


class Recorder:
    """An `observe(req, slates, feedback)` hook for `data.generate.simulate_shard` that keeps
    `Impressions` of the days >= 0 (the warm-up day is not logged)."""

    def __init__(self):
        self.chunks: list[dict] = []

    def __call__(self, req, slates, fb) -> None:
        if fb.logit_known is None or req.day < 0:
            return
        n, s = slates.shape
        self.chunks.append(dict(
            user=np.repeat(req.user_id, s), day=np.repeat(np.int64(req.day), n * s),
            item=slates.ravel(), clicked=fb.clicked.ravel().astype(bool),
            exam=np.tile(fb.exam, n), known=fb.logit_known.ravel(), idio=fb.idio.ravel(),
            true_ctr=fb.true_ctr.ravel().astype(np.float64)))

    def impressions(self) -> Impressions:
        if not self.chunks:
            empty = np.zeros(0)
            return Impressions(*(empty,) * 8)
        return Impressions(**{k: np.concatenate([c[k] for c in self.chunks])
                              for k in self.chunks[0]})


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def item_latent_estimates(world: World, seen: np.ndarray) -> np.ndarray:
    """[I, d]: v_i for items in `seen` (bool [I]), the unit mean of the tags' topic embeddings
    for the others."""
    tags = world.items.tags
    topic = world.tag_topic[tags]
    emb = np.where((tags > 0)[..., None], world.topic_emb[np.maximum(topic, 0)], 0.0)
    mean = emb.sum(1) / np.maximum((tags > 0).sum(1, keepdims=True), 1)
    mean /= np.maximum(np.linalg.norm(mean, axis=1, keepdims=True), 1e-12)
    return np.where(seen[:, None], world.items.latent, mean)


def _features(cfg: SimConfig, world: World, imp: Impressions, latent: np.ndarray) -> np.ndarray:
    """[n, d + C]: s * v_hat_i, then the one-hot channel (the rows' x in z = known + x . w)."""
    c = len(CHANNELS)
    onehot = np.eye(c)[world.items.channel[imp.item]]
    return np.concatenate([cfg.match_weight * latent[imp.item], onehot], axis=1)


def prior_mean(cfg: SimConfig) -> np.ndarray:
    """[d + C]: 0 for u, beta log(C pi_c) for the channel offsets."""
    c = len(CHANNELS)
    return np.concatenate([np.zeros(cfg.latent_dim),
                           cfg.channel_pref_weight * np.log(c * np.asarray(cfg.channel_mix))])


def fit_users(x: np.ndarray, known: np.ndarray, exam: np.ndarray, clicked: np.ndarray,
              group: np.ndarray, n_groups: int, w0: np.ndarray, l2: float,
              steps: int = NEWTON_STEPS) -> np.ndarray:
    """MAP weights [G, k] of y ~ Bernoulli(e sigmoid(known + x . w_g)), w_g ~ N(w0_g, I / l2),
    one independent fit per group (user) by Fisher scoring:

        g = dlogL/dz = y (1 - s) - (1 - y) e s (1 - s) / (1 - e s)        (s = sigmoid(z))
        I = e s (1 - s)^2 / (1 - e s)                                    (Fisher info in z)
        w <- w + (X^T I X + l2)^-1 (X^T g - l2 (w - w0))

    x [n, k], known/exam/clicked/group [n] (group ids in [0, n_groups)), w0 [k] or [G, k]; a
    group without rows keeps its w0. The groups' rows are padded into blocks of similar length, so that each step is
    a few batched matrix products."""
    k = x.shape[1]
    w0 = np.broadcast_to(np.asarray(w0, np.float64), (n_groups, k))
    w = w0.copy()
    if len(group) == 0:
        return w
    pad = lambda a: np.concatenate([a, np.zeros((1,) + a.shape[1:])])  # noqa: E731
    x_, known_, exam_ = pad(x.astype(np.float64)), pad(known), pad(exam)
    y_ = pad(clicked.astype(np.float64))
    data = [(ids, x_[rows], known_[rows], exam_[rows], y_[rows], rows < len(group))
            for ids, rows in _padded_blocks(group)]
    eye = np.eye(k) * l2
    for _ in range(steps):
        largest = 0.0
        for ids, xb, kb, eb, yb, real in data:
            wb = w[ids]                                               # [g, k]
            s = _sigmoid(kb + np.einsum("grk,gk->gr", xb, wb))
            es = np.clip(eb * s, 0.0, 1 - 1e-9)
            grad_z = np.where(real, yb * (1 - s) - (1 - yb) * es * (1 - s) / (1 - es), 0.0)
            info = np.where(real, es * (1 - s) ** 2 / (1 - es), 0.0)
            grad = np.einsum("grk,gr->gk", xb, grad_z) - l2 * (wb - w0[ids])
            hess = np.matmul(xb.transpose(0, 2, 1) * info[:, None, :], xb) + eye
            step = np.linalg.solve(hess, grad[..., None])[..., 0]
            w[ids] = wb + step
            largest = max(largest, float(np.abs(step).max(initial=0.0)))
        if largest < TOLERANCE:
            break
    return w


def _padded_blocks(group: np.ndarray, growth: float = 1.25):
    """[(group ids [g], row indices [g, L])]: the groups bucketed by their row count rounded up
    to a power of `growth`, each group's rows padded with the index len(group)."""
    order = np.argsort(group, kind="stable")
    ids, starts, counts = np.unique(group[order], return_index=True, return_counts=True)
    size = np.ceil(growth ** np.ceil(np.log(counts) / np.log(growth))).astype(np.int64)
    size = np.maximum(size, counts)
    blocks = []
    for length in np.unique(size):
        members = np.flatnonzero(size == length)
        offsets = np.arange(length)[None, :]
        real = offsets < counts[members, None]
        idx = np.minimum(starts[members, None] + offsets, len(order) - 1)
        blocks.append((ids[members], np.where(real, order[idx], len(group))))
    return blocks


def auc(scores: np.ndarray, clicked: np.ndarray) -> float | None:
    """ROC AUC with ties counted one half; None without both classes."""
    clicked = clicked.astype(bool)
    n_pos, n_neg = int(clicked.sum()), int((~clicked).sum())
    if n_pos == 0 or n_neg == 0:
        return None
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(len(scores))
    sorted_scores = scores[order]
    # average ranks of ties
    _, first, counts = np.unique(sorted_scores, return_index=True, return_counts=True)
    avg = first + (counts - 1) / 2.0 + 1.0
    ranks[order] = np.repeat(avg, counts)
    return float((ranks[clicked].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def field_prior(w: np.ndarray, fields: np.ndarray, sizes, weight: np.ndarray,
                w0: np.ndarray, ridge: float = 1.0) -> np.ndarray:
    """[G, k] prior means from the users' profile fields (empirical Bayes): the weighted ridge
    regression of the fitted weights `w` [G, k] on the one-hot fields [G, F] (weights: each
    user's impressions), shrunk towards w0."""
    onehot = np.concatenate([np.eye(n)[fields[:, j]] for j, n in enumerate(sizes)], axis=1)
    a = onehot * weight[:, None]
    coef = np.linalg.solve(onehot.T @ a + ridge * np.eye(onehot.shape[1]),
                           a.T @ (w - w0))
    return w0 + onehot @ coef


@dataclasses.dataclass
class CeilingFit:
    """The learnable ceiling's probabilities of the validation day's and the test days'
    impressions (in `Impressions` order) and the chosen prior precision."""
    valid_scores: np.ndarray
    test_scores: np.ndarray
    l2: float
    valid_auc_by_l2: dict


def learnable_ceiling(cfg: SimConfig, world: World, imp: Impressions) -> CeilingFit:
    """Scores the last training day (the validation day of every trainer) and each test day
    with the user's latents estimated from every day before it (a rolling origin, as a model
    retrained daily). The prior precision is chosen on the validation day. Each estimate is
    two fits: one with the population prior, then one whose prior mean comes from the profile
    fields (`field_prior`)."""
    valid_day = cfg.test_start_day - 1
    w0 = prior_mean(cfg)
    users, group = np.unique(imp.user, return_inverse=True)
    fields = world.users.fields[users]
    sizes = [int(world.users.fields[:, j].max()) + 1 for j in range(fields.shape[1])]

    def scores(fit_rows, score_rows, l2):
        seen = np.zeros(len(world.items.channel), bool)
        seen[imp.item[fit_rows]] = True
        latent = item_latent_estimates(world, seen)
        fit = imp.take(fit_rows)
        x = _features(cfg, world, fit, latent)
        g = group[fit_rows]
        w = fit_users(x, fit.known, fit.exam, fit.clicked, g, len(users), w0, l2)
        counts = np.bincount(g, minlength=len(users)).astype(np.float64)
        prior = field_prior(w, fields, sizes, counts, w0)
        w = fit_users(x, fit.known, fit.exam, fit.clicked, g, len(users), prior, l2)
        out = imp.take(score_rows)
        z = out.known + np.einsum("nk,nk->n", _features(cfg, world, out, latent),
                                  w[group[score_rows]])
        return out.exam * _sigmoid(z)

    valid = imp.day == valid_day
    valid_scores = {l2: scores(imp.day < valid_day, valid, l2) for l2 in L2_GRID}
    valid_auc = {l2: auc(v, imp.clicked[valid]) for l2, v in valid_scores.items()}
    candidates = {k: v for k, v in valid_auc.items() if v is not None}
    best = max(candidates, key=candidates.get) if candidates else L2_GRID[len(L2_GRID) // 2]
    test = imp.day >= cfg.test_start_day
    test_scores = np.zeros(int(test.sum()))
    for day in np.unique(imp.day[test]):
        test_scores[(imp.day == day)[test]] = scores(imp.day < day, imp.day == day, best)
    return CeilingFit(valid_scores=valid_scores[best], test_scores=test_scores, l2=best,
                      valid_auc_by_l2={str(k): v for k, v in valid_auc.items()})
