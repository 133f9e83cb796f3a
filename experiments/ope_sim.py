"""Off-policy evaluation of Table 3's arms in IRecSim, checked against their online value.

The exploration logs are the dataset's own test days: `collect` replays the dataset exactly
(experiments/online.py: the same users, random streams and bytes; the logging policy with its
online exploration epsilon acts at every request) and, at every logged request, asks each
target arm which slate it would have served there, from the same candidates and the same
history window (what the logging policy showed). That gives, per list i and slot k:

    r_ik      the logged click,
    mu_ik     the logged propensity: the logging policy's probability of the shown item given
              the slots before it (data/logging_policy.py), so prod_{j<=k} mu_ij is the exact
              probability of the logged prefix and of the whole slate,
    pi_ik     1 where the arm's own slate has the logged item at slot k (a deterministic arm;
              its prefix probability is 1 where every slot up to k agrees),
    q_ik      the click model's prediction for the logged item, and q~_ik for the arm's item:
              the logging policy's own LR (refit every day on the previous day), the only click
              model every arm shares. DR's direct part is sum_k q~_ik.

IIPS and DR treat mu_ik as slot k's marginal, which it is not (it is conditional on the
logged prefix); IPS, SNIPS and RIPS use it exactly. Two truths:

- on the logged requests (what every estimator estimates): the simulator's own click
  probabilities of the arm's slate at each logged request, `IRecSim.click_probabilities`
  (the state, the slots above and every mechanism as they were; nothing is drawn), summed
  over slots and averaged over the lists;
- online: each arm's value when it serves every request of the test days, `online.run_arm`
  (what experiments.ab_test reports). It differs from the first because the users' histories,
  sessions and returns change with what the arm serves, which logged requests cannot show.

Values are per shown slot (clicks per list / list size), so they compare with Table 3's CTR.
"""
from __future__ import annotations

import numpy as np

from data.sim_config import CONTEXT_FIELDS
from experiments import online
from hrl_rec import ope


def lr_click_probability(policy, req, slates: np.ndarray) -> np.ndarray:
    """[n, S] the logging policy's LR P(click) of item slates[i, k] shown at slot k, with the
    item's age bucket from the request's candidates."""
    n, s = slates.shape
    cand = req.candidates.reshape(n, -1)
    age = req.candidate_age.reshape(n, -1)
    where = np.argmax(cand[:, None, :] == slates[:, :, None], axis=2)       # [n, S]
    found = np.take_along_axis(cand, where, axis=1) == slates
    if not found.all():
        raise ValueError("a target slate holds an item that is not among the request's "
                         "candidates")
    ages = np.take_along_axis(age, where, axis=1)
    user = np.repeat(req.user_fields, s, axis=0)
    model = policy.model
    idx = model._feature_index(user, slates.ravel(), ages.ravel(), np.tile(np.arange(s), n))
    logit = model.weights[idx].sum(1)
    return (1.0 / (1.0 + np.exp(-logit))).reshape(n, s)


class Collector:
    """Accumulates each target's SlateLog columns over the logged test-day requests."""

    def __init__(self, names):
        self.names = list(names)
        self.reward, self.logging, self.q_logged = [], [], []
        self.match = {name: [] for name in self.names}
        self.q_target = {name: [] for name in self.names}
        self.expected = {name: [] for name in self.names}

    def add(self, clicked, props, q_logged, matches: dict, q_targets: dict,
            expected: dict) -> None:
        self.reward.append(clicked.astype(np.float64))
        self.logging.append(props)
        self.q_logged.append(q_logged)
        for name in self.names:
            self.match[name].append(matches[name].astype(np.float64))
            self.q_target[name].append(q_targets[name])
            self.expected[name].append(expected[name])

    def truth(self, name: str) -> float:
        """The target's expected clicks per list on the logged requests (the simulator's click
        probabilities of its slates there)."""
        return float(np.concatenate(self.expected[name]).sum(1).mean())

    def log(self, name: str) -> ope.SlateLog:
        cat = np.concatenate
        target = cat(self.match[name])
        return ope.SlateLog(reward=cat(self.reward), logging=cat(self.logging), target=target,
                            target_prefix=np.cumprod(target, axis=1),
                            logging_prefix=np.cumprod(cat(self.logging), axis=1),
                            q_logged=cat(self.q_logged), q_target=cat(self.q_target[name]))

    @property
    def lists(self) -> int:
        return int(sum(len(r) for r in self.reward))


def collect(cfg, world, n_shards: int, targets: dict, start_day: int | None = None,
            on_day=None) -> Collector:
    """Replays the dataset with its logging policy (exploration included) and records, at every
    request of the days >= start_day (default: the test days), each target's slate.
    `targets`: {name: (act, m)} as experiments.online's arms (act(req, policy, rng, history)
    -> (slates, propensities)); each sees the m most recent logged impressions."""
    start = cfg.test_start_day if start_day is None else start_day
    collector = Collector(targets)
    ms = sorted({m for _, m in targets.values() if m})
    for shard in range(n_shards):
        rows = len(range(shard, len(world.users), n_shards))
        histories = {m: online.UserHistory(rows, m, world.items.fields.shape[1],
                                           len(CONTEXT_FIELDS), world.items.tags.shape[1])
                     for m in ms}
        target_rng = np.random.default_rng([cfg.seed, 7, shard])   # never the logging stream
        pending, env = {}, []

        def act(req, policy, rng):
            if req.day < start:
                return None
            slates, props = policy.act(req.user_fields, req.candidates, req.candidate_age,
                                       cfg.epsilon, rng)
            chosen = {name: fn(req, policy, target_rng, histories.get(m))[0]
                      for name, (fn, m) in targets.items()}
            pending["step"] = (slates, props, chosen,
                               lr_click_probability(policy, req, slates),
                               {name: lr_click_probability(policy, req, t)
                                for name, t in chosen.items()},
                               {name: env[0].click_probabilities(req, t)
                                for name, t in chosen.items()})
            return slates, props

        def observe(req, slates, fb):
            if req.day >= 0:
                for history in histories.values():
                    history.push(req.rows, online.shown_fields(world, req, slates, fb))
            if req.day >= start:
                logged, props, chosen, q_logged, q_targets, expected = pending.pop("step")
                collector.add(fb.clicked, props, q_logged,
                              {name: t == logged for name, t in chosen.items()}, q_targets,
                              expected)

        from data.generate import simulate_shard
        simulate_shard(cfg, shard, n_shards, world=world, on_day=on_day, act=act,
                       observe=observe, on_env=env.append)
    return collector
