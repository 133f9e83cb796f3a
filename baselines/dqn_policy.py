"""Slates from a DQN agent (baselines/dqn.py): S greedy Q decisions over every channel's candidates.

For slot t of every request: s_t from the history and the t items already placed, then the
available candidate of highest Q(s_t, d) (any channel; no item twice), or with probability
epsilon a uniform draw, with the same exact propensities as HRL-Rec's policy. The request and
output formats are hrl_rec.policy's (the online A/B serves both alike); score is Q(s_t, d_t),
and ctr, lra_channel are not produced (a flat agent has neither f nor a channel decision).
"""
from __future__ import annotations

import tensorflow as tf

from baselines.dqn import QNetwork
from hrl_rec.policy import SlatePolicy

OUTPUTS = ("item_id", "channel", "index", "score", "propensity", "explored")


class QSlatePolicy(SlatePolicy):
    """`policy(request)` -> slate dict (OUTPUTS, each [B, S]); epsilon > 0 explores."""

    def __init__(self, model: QNetwork, list_size: int, epsilon: float = 0.0, seed: int = 0):
        super().__init__(model, list_size, epsilon, seed)

    def slate(self, request):
        net, s, m = self.model, self.list_size, self.model.max_seq_len
        d, window, available = self._start(request)
        outputs = {k: [] for k in OUTPUTS}
        seed = tf.stack([self.seed, tf.constant(0, tf.int64)])
        lo_fixed = net.encoder.window == "prefix"
        for t in range(s):
            # every position's fields again: only the new one changed, but the window is short
            f, h0 = net.behaviours(window)
            lo = 0 if lo_fixed else t
            state = net.encoder(f[:, lo:t + m], window["mask"][:, lo:t + m], h0)[:, -1]
            q = net.q(state[:, None], d, available[:, None])[:, 0]              # [B, N]
            greedy = tf.argmax(tf.where(available, q, tf.fill(tf.shape(q), q.dtype.min)),
                               axis=-1, output_type=tf.int32)   # Q is unbounded below
            pick, explore, prob, any_left = self._explore(greedy, available, seed + [0, t])
            item = tf.gather(request["cand_item_id"], pick, batch_dims=1)
            available &= ~(tf.equal(request["cand_item_id"], item[:, None]) & any_left[:, None])
            for key, value in (("item_id", tf.where(any_left, item, -tf.ones_like(item))),
                               ("channel", tf.gather(request["cand_channel"], pick,
                                                     batch_dims=1)),
                               ("index", pick), ("score", tf.gather(q, pick, batch_dims=1)),
                               ("propensity", prob), ("explored", explore)):
                outputs[key].append(value)
            window = self._place(window, request, pick, t, any_left)
        self.seed.assign_add(1)
        return {k: tf.stack(v, axis=1) for k, v in outputs.items()}
