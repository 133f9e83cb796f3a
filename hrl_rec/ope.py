"""Off-policy evaluation (OPE) of slate policies from logs that carry propensities.

A log holds n lists of K slots. For list i and slot k, the logging policy mu showed item
a_ik, the user gave reward r_ik (a click), and two probabilities are known:

    mu_k(a_ik | x_i)   the logging policy's probability of that item at that slot (the
                       dataset's `propensity`),
    pi_k(a_ik | x_i)   the target policy's probability of the same item at the same slot
                       (1 or 0 for a deterministic target).

The value estimated is V(pi) = E_x E_{s ~ pi(.|x)} [sum_k r_k], the expected reward per list
(clicks per list); `per_slot` gives each slot's term. Every estimator below is a mean over
lists, so a bootstrap over lists gives its interval.

Estimators (w_ik = pi_k / mu_k, the per-slot importance weight):

    IPS    (Horvitz & Thompson 1952; for slates Swaminathan et al., NeurIPS 2017, Sec. 2):
           V = 1/n sum_i W_i sum_k r_ik,    W_i = pi(s_i | x_i) / mu(s_i | x_i),
           the whole slate's weight. Unbiased whenever mu covers pi, whatever the clicks do;
           its variance grows with the product of K ratios.
    SNIPS  (Swaminathan & Joachims, NeurIPS 2015): sum_i W_i R_i / sum_i W_i. Biased,
           consistent, bounded by the rewards' range.
    IIPS   independent-item / position-based (Li et al., WSDM 2018, "item-position model"):
           V = 1/n sum_i sum_k w_ik r_ik. Unbiased when the click at slot k depends only on
           (x, a_k, k): not on the other items of the slate.
    RIPS   reward-interaction / cascade IPS (McInerney et al., KDD 2020; Kiyohara et al.,
           WSDM 2022): V = 1/n sum_i sum_k (prod_{j<=k} w_ij) r_ik, with the prefix
           probabilities pi(a_1..k | x) / mu(a_1..k | x) where they are given. Unbiased when the
           click at slot k depends only on the items at slots <= k (a cascade).
    DR     doubly robust, slot by slot (Dudik et al., ICML 2011; Kiyohara et al. 2022's
           independent form): V = 1/n sum_i sum_k [ dm_ik + w_ik (r_ik - q_ik) ],
           q_ik = qhat(x_i, a_ik, k) the click model's prediction for the logged item and
           dm_ik = sum_a pi_k(a | x_i) qhat(x_i, a, k) its expectation under the target.
           Unbiased under IIPS's assumption when either qhat or the weights are right.
    PI     pseudo-inverse (Swaminathan et al., NeurIPS 2017, "Off-policy evaluation for slate
           recommendation", Eq. 4 and Example 4): V = 1/n sum_i R_i q_i^T Gamma_i^+ 1_{s_i},
           R_i = sum_k r_ik the list's reward, 1_s in {0,1}^{K m} the slate's (slot, item)
           indicator, q_i = E_pi[1_s | x_i] the target's marginals and Gamma_i =
           E_mu[1_s 1_s^T | x_i] the logging policy's pairwise marginals. Unbiased when the
           list's expected reward is additive over (slot, item) pairs (the clicks of one slot
           may depend on other slots' items, as long as the sum decomposes), whatever coupling
           the logging policy has, provided its support spans the target's. Where the slots
           are drawn independently, q^T Gamma^+ 1_s = sum_k w_ik - (K - 1) (the paper's
           Example 4), the form `estimate(log, "pi")` uses, since the logs carry per-slot
           propensities only; `pseudo_inverse_terms` takes Gamma where it is known.

Clipping (`clip`): every weight (per slot, per prefix, per slate) is min(w, clip), which trades
bias for variance (Ionides 2008). The effective sample size of weights w is
ESS = (sum w)^2 / sum w^2 (Kong 1992): n for weights that are all equal, about the number of
lists a deterministic target agrees with.

Where the per-slot propensities are all that is logged, the slate's and the prefixes'
probabilities default to products of them: exact when the slots are drawn independently given
x, an approximation otherwise (a quota or a no-repeat rule couples them), which is one of the
biases `experiments.ope` measures.
"""
from __future__ import annotations

import dataclasses
from typing import Callable, Optional

import numpy as np

ESTIMATORS = ("ips", "snips", "iips", "rips", "dr", "pi")


@dataclasses.dataclass
class SlateLog:
    """Logged lists with both policies' probabilities of the logged items; all [n, K].

    reward: r_ik. logging: mu_k(a_ik | x_i) > 0. target: pi_k(a_ik | x_i) in [0, 1].
    mask: 1 for a real slot, 0 for padding (default: all real).
    logging_prefix / target_prefix: mu(a_i1..ik | x_i), pi(a_i1..ik | x_i) (default: cumulative
      products of the per-slot probabilities); the last column is the whole slate's.
    q_logged: qhat(x_i, a_ik, k); q_target: sum_a pi_k(a | x_i) qhat(x_i, a, k) (DR only).
    """

    reward: np.ndarray
    logging: np.ndarray
    target: np.ndarray
    mask: Optional[np.ndarray] = None
    logging_prefix: Optional[np.ndarray] = None
    target_prefix: Optional[np.ndarray] = None
    q_logged: Optional[np.ndarray] = None
    q_target: Optional[np.ndarray] = None

    def __post_init__(self):
        self.reward = np.asarray(self.reward, np.float64)
        if self.reward.ndim != 2:
            raise ValueError(f"SlateLog.reward: expected [n, K], got shape {self.reward.shape}")
        shape = self.reward.shape
        self.mask = (np.ones(shape) if self.mask is None
                     else np.asarray(self.mask, np.float64))
        for name in ("logging", "target", "mask", "logging_prefix", "target_prefix",
                     "q_logged", "q_target"):
            value = getattr(self, name)
            if value is None:
                continue
            value = np.asarray(value, np.float64)
            if value.shape != shape:
                raise ValueError(f"SlateLog.{name}: expected shape {shape} (the reward's), got "
                                 f"{value.shape}")
            if not np.all(np.isfinite(value)):
                raise ValueError(f"SlateLog.{name}: not finite at list "
                                 f"{int(np.argwhere(~np.isfinite(value))[0][0])}")
            setattr(self, name, value)
        real = self.mask > 0
        bad = real & ~(self.logging > 0)
        if bad.any():
            i, k = np.argwhere(bad)[0]
            raise ValueError(f"SlateLog.logging: the logging propensity of list {i} slot {k} is "
                             f"{self.logging[i, k]}; expected > 0 (mu must cover every logged "
                             "item)")
        bad = real & ((self.target < 0) | (self.target > 1 + 1e-9))
        if bad.any():
            i, k = np.argwhere(bad)[0]
            raise ValueError(f"SlateLog.target: list {i} slot {k} is {self.target[i, k]}; "
                             "expected a probability in [0, 1]")

    @property
    def n(self) -> int:
        return self.reward.shape[0]

    def take(self, rows: np.ndarray) -> "SlateLog":
        """The log of lists `rows` (a bootstrap resample)."""
        return SlateLog(**{f.name: (None if getattr(self, f.name) is None
                                    else getattr(self, f.name)[rows])
                           for f in dataclasses.fields(self)})


def _ratio(num, den, mask):
    """num / den on real slots (1 on padding, so products skip it)."""
    return np.where(mask > 0, num / np.where(mask > 0, den, 1.0), 1.0)


def slot_weights(log: SlateLog, clip: float = np.inf) -> np.ndarray:
    """w_ik = min(pi_k / mu_k, clip) [n, K] (0 on padding)."""
    return np.minimum(_ratio(log.target, log.logging, log.mask), clip) * log.mask


def prefix_weights(log: SlateLog, clip: float = np.inf) -> np.ndarray:
    """min(pi(a_1..k) / mu(a_1..k), clip) [n, K]: the given prefix probabilities, or the
    cumulative product of the per-slot ratios (0 on padding)."""
    if log.logging_prefix is not None and log.target_prefix is not None:
        w = _ratio(log.target_prefix, log.logging_prefix, log.mask)
    else:
        w = np.cumprod(_ratio(log.target, log.logging, log.mask), axis=1)
    return np.minimum(w, clip) * log.mask


def slate_weights(log: SlateLog, clip: float = np.inf) -> np.ndarray:
    """W_i = min(pi(s_i) / mu(s_i), clip) [n]: the prefix weight at the list's last real slot
    (unclipped products, clipped once)."""
    w = prefix_weights(log)
    last = np.maximum(log.mask.shape[1] - 1 - np.argmax(log.mask[:, ::-1] > 0, axis=1), 0)
    return np.minimum(w[np.arange(log.n), last], clip)


def pseudo_inverse_weights(log: SlateLog, clip: float = np.inf) -> np.ndarray:
    """g_i = sum_k min(w_ik, clip) - (K_i - 1) [n], K_i the list's real slots: the PI
    estimator's list weight q^T Gamma^+ 1_s where the logging policy draws each slot
    independently (Swaminathan et al. 2017, Example 4). May be negative."""
    return slot_weights(log, clip).sum(1) - (log.mask.sum(1) - 1.0)


def slate_indicator(slates: np.ndarray, n_items: int) -> np.ndarray:
    """1_s [n, K * n_items]: entry k * n_items + j is 1 when slate s shows item j at slot k."""
    slates = np.asarray(slates, np.int64)
    if slates.ndim != 2:
        raise ValueError(f"slate_indicator: slates expected [n, K], got shape {slates.shape}")
    if slates.size and (slates.min() < 0 or slates.max() >= n_items):
        raise ValueError(f"slate_indicator: item ids expected in [0, {n_items}), got "
                         f"[{slates.min()}, {slates.max()}]")
    n, k = slates.shape
    out = np.zeros((n, k * n_items))
    out[np.arange(n)[:, None], np.arange(k)[None, :] * n_items + slates] = 1.0
    return out


def slate_moments(slates: np.ndarray, probabilities: np.ndarray,
                  n_items: int) -> tuple[np.ndarray, np.ndarray]:
    """A slate distribution's marginals q = E[1_s] [K m] and pairwise marginals
    Gamma = E[1_s 1_s^T] [K m, K m], from every slate it can show and its probability."""
    ind = slate_indicator(slates, n_items)
    p = np.asarray(probabilities, np.float64)
    if p.shape != (ind.shape[0],) or np.any(p < 0) or not np.isclose(p.sum(), 1.0):
        raise ValueError(f"slate_moments: probabilities expected [{ind.shape[0]}], >= 0, "
                         f"summing to 1; got shape {p.shape}, sum {p.sum():.6g}")
    return p @ ind, (ind * p[:, None]).T @ ind


def pseudo_inverse_terms(reward: np.ndarray, slates: np.ndarray, target_marginals: np.ndarray,
                         gamma: np.ndarray) -> np.ndarray:
    """PI's per-list terms R_i q_i^T Gamma_i^+ 1_{s_i} [n] with the logging policy's Gamma
    known (the general Eq. 4 of Swaminathan et al. 2017); the estimate is their mean.

    reward: R_i [n], the list's total reward. slates: [n, K] item ids. target_marginals: q_i
    [n, K * m] (or [K * m] for every list). gamma: Gamma_i [n, K m, K m] (or [K m, K m])."""
    reward = np.asarray(reward, np.float64)
    n = reward.shape[0]
    q = np.broadcast_to(np.asarray(target_marginals, np.float64), (n,) + np.shape(
        target_marginals)[-1:])
    gamma = np.asarray(gamma, np.float64)
    dim = q.shape[1]
    if gamma.shape[-2:] != (dim, dim):
        raise ValueError(f"pseudo_inverse_terms: gamma expected [.., {dim}, {dim}] (K * m "
                         f"from the target marginals), got {gamma.shape}")
    ind = slate_indicator(slates, dim // np.asarray(slates).shape[1])
    pinv = np.linalg.pinv(gamma, hermitian=True)
    weight = (np.einsum("nd,nde,ne->n", q, np.broadcast_to(pinv, (n, dim, dim)), ind))
    return reward * weight


def per_slot_terms(log: SlateLog, estimator: str, clip: float = np.inf) -> np.ndarray:
    """Each list's and slot's term [n, K] of the estimators that are means over lists (all but
    SNIPS, whose slot terms are ratios of sums): the estimate is terms.sum(1).mean().

    PI's value is identified for the whole list only (a constant moved from one slot's
    (slot, item) terms to another's leaves every list's reward unchanged); its slot terms split
    the constant -(K_i - 1) equally: R_i (w_ik - (K_i - 1) / K_i)."""
    r = log.reward * log.mask
    if estimator == "pi":
        real = log.mask.sum(1, keepdims=True)
        share = (real - 1.0) / np.maximum(real, 1.0)
        return r.sum(1, keepdims=True) * (slot_weights(log, clip) - share) * log.mask
    if estimator == "ips":
        return slate_weights(log, clip)[:, None] * r
    if estimator == "iips":
        return slot_weights(log, clip) * r
    if estimator == "rips":
        return prefix_weights(log, clip) * r
    if estimator == "dr":
        if log.q_logged is None or log.q_target is None:
            raise ValueError("the DR estimator needs SlateLog.q_logged and q_target (a click "
                             "model's predictions)")
        return (log.q_target + slot_weights(log, clip) * (log.reward - log.q_logged)) * log.mask
    raise ValueError(f"estimator {estimator!r}: expected one of {ESTIMATORS} (snips has no "
                     "per-list terms)")


def estimate(log: SlateLog, estimator: str, clip: float = np.inf) -> float:
    """The estimator's value of the target policy: expected reward per list."""
    if estimator not in ESTIMATORS:
        raise ValueError(f"estimator {estimator!r}: expected one of {ESTIMATORS}")
    if estimator == "snips":
        w = slate_weights(log, clip)
        total = w.sum()
        return float((w * (log.reward * log.mask).sum(1)).sum() / total) if total > 0 else 0.0
    return float(per_slot_terms(log, estimator, clip).sum(1).mean())


def per_slot_estimate(log: SlateLog, estimator: str, clip: float = np.inf) -> np.ndarray:
    """Each slot's expected reward under the target [K] (SNIPS: each slot's self-normalised
    ratio with the slate weights)."""
    if estimator == "snips":
        w = slate_weights(log, clip)
        return (w[:, None] * log.reward * log.mask).sum(0) / max(w.sum(), 1e-300)
    return per_slot_terms(log, estimator, clip).mean(0)


def effective_sample_size(weights: np.ndarray) -> float:
    """ESS = (sum w)^2 / sum w^2 (0 when every weight is 0)."""
    w = np.asarray(weights, np.float64).ravel()
    sq = float(np.square(w).sum())
    return float(w.sum() ** 2 / sq) if sq > 0 else 0.0


def estimator_ess(log: SlateLog, estimator: str, clip: float = np.inf) -> float:
    """The effective number of lists behind an estimate: the slate weights' ESS for IPS and
    SNIPS, the list weights' for PI; for the slot-wise estimators the mean over slots of each
    slot's ESS (DR: IIPS's)."""
    if estimator in ("ips", "snips"):
        return effective_sample_size(slate_weights(log, clip))
    if estimator == "pi":
        return effective_sample_size(pseudo_inverse_weights(log, clip))
    w = prefix_weights(log, clip) if estimator == "rips" else slot_weights(log, clip)
    real = log.mask.sum(0) > 0
    return float(np.mean([effective_sample_size(w[:, k][log.mask[:, k] > 0])
                          for k in np.flatnonzero(real)])) if real.any() else 0.0


@dataclasses.dataclass
class Estimate:
    """One estimator's result: value (per list), its bootstrap interval at `level`, the
    per-slot values and the effective sample size."""
    estimator: str
    value: float
    low: float
    high: float
    level: float
    ess: float
    per_slot: np.ndarray
    n: int

    def covers(self, truth: float) -> bool:
        return self.low <= truth <= self.high

    def to_json(self) -> dict:
        return {"estimator": self.estimator, "value": self.value, "low": self.low,
                "high": self.high, "level": self.level, "ess": self.ess,
                "per_slot": [float(v) for v in self.per_slot], "n": self.n}


def bootstrap(log: SlateLog, estimator: str, clip: float = np.inf, samples: int = 1000,
              level: float = 0.95, seed: int = 0,
              on_sample: Optional[Callable[[int], None]] = None) -> Estimate:
    """The estimate with a percentile bootstrap interval over lists (Efron & Tibshirani 1993):
    `samples` resamples of n lists with replacement, drawn from a seeded generator."""
    if samples < 1:
        raise ValueError(f"bootstrap samples={samples}: expected >= 1")
    if not 0.0 < level < 1.0:
        raise ValueError(f"bootstrap level={level}: expected a value in (0, 1)")
    # every estimator is a ratio of per-list sums (the denominator n, or sum W for SNIPS), so
    # a resample only needs the per-list numerators and denominators
    if estimator == "snips":
        w = slate_weights(log, clip)
        num, den = w * (log.reward * log.mask).sum(1), w
    else:
        num, den = per_slot_terms(log, estimator, clip).sum(1), np.ones(log.n)
    rng = np.random.default_rng(seed)
    values = np.empty(samples)
    for b in range(samples):
        rows = rng.integers(0, log.n, log.n)
        total = den[rows].sum()
        values[b] = num[rows].sum() / total if total > 0 else 0.0
        if on_sample is not None:
            on_sample(b)
    alpha = (1.0 - level) / 2.0
    low, high = np.quantile(values, [alpha, 1.0 - alpha])
    return Estimate(estimator, estimate(log, estimator, clip), float(low), float(high), level,
                    estimator_ess(log, estimator, clip), per_slot_estimate(log, estimator, clip),
                    log.n)
