"""The slot loop of a flat agent's slates (baselines/dqn_policy.py, baselines/ddpg_policy.py).

For slot t of every request: s_t from the history and the t items already placed (the agent's
behaviour encoder and state window, as HRL-Rec's policy reads them), the agent's greedy item
among the available candidates of every channel, or with probability epsilon a uniform draw,
with HRL-Rec's exact propensities; no item twice. The request and output formats are
hrl_rec.policy's (the online A/B serves every model alike); ctr and lra_channel are not
produced (a flat agent has neither f nor a channel decision).
"""
from __future__ import annotations

import abc

import tensorflow as tf

from hrl_rec.policy import SlatePolicy

OUTPUTS = ("item_id", "channel", "index", "score", "propensity", "explored")


class FlatSlatePolicy(SlatePolicy, abc.ABC):
    """`policy(request)` -> slate dict (OUTPUTS, each [B, S]). Subclasses give `agent` (what
    has `behaviours(window)` and `encoder`) and `greedy`."""

    @property
    @abc.abstractmethod
    def agent(self):
        """The network whose behaviour encoder and state window read the slate's state."""

    @abc.abstractmethod
    def greedy(self, state, d, available):
        """state [B, d_s], candidates d [B, N, k], available [B, N] -> (the greedy pick [B],
        every candidate's score [B, N])."""

    def slate(self, request):
        agent = self.agent
        d, window, available = self._start(request)
        outputs = {k: [] for k in OUTPUTS}
        seed = tf.stack([self.seed, tf.constant(0, tf.int64)])
        for t in range(self.list_size):
            # every position's fields again: only the new one changed, but the window is short
            f, h0 = agent.behaviours(window)
            state = self._states(agent, f, window["mask"], h0, t)
            greedy, scores = self.greedy(state, d, available)
            pick, explore, prob, any_left = self._explore(greedy, available, seed + [0, t])
            item = tf.gather(request["cand_item_id"], pick, batch_dims=1)
            available &= ~(tf.equal(request["cand_item_id"], item[:, None]) & any_left[:, None])
            for key, value in (("item_id", tf.where(any_left, item, -tf.ones_like(item))),
                               ("channel", tf.gather(request["cand_channel"], pick,
                                                     batch_dims=1)),
                               ("index", pick), ("score", tf.gather(scores, pick, batch_dims=1)),
                               ("propensity", prob), ("explored", explore)):
                outputs[key].append(value)
            window = self._place(window, request, pick, t, any_left)
        self.seed.assign_add(1)
        return {k: tf.stack(v, axis=1) for k, v in outputs.items()}
