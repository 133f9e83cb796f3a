"""Slates from a DQN agent (baselines/dqn.py): S greedy Q decisions over every channel's candidates.

Slot t shows the available candidate of highest Q(s_t, d) (any channel), or with probability
epsilon a uniform draw (baselines/flat_policy.py has the slot loop); score is Q(s_t, d_t).
"""
from __future__ import annotations

import tensorflow as tf

from baselines.dqn import QNetwork
from baselines.flat_policy import FlatSlatePolicy


class QSlatePolicy(FlatSlatePolicy):
    """`policy(request)` -> slate dict (flat_policy.OUTPUTS, each [B, S]); epsilon > 0
    explores."""

    def __init__(self, model: QNetwork, list_size: int, epsilon: float = 0.0, seed: int = 0):
        super().__init__(model, list_size, epsilon, seed)

    @property
    def agent(self):
        return self.model

    def greedy(self, state, d, available):
        q = self.model.q(state[:, None], d, available[:, None])[:, 0]             # [B, N]
        greedy = tf.argmax(tf.where(available, q, tf.fill(tf.shape(q), q.dtype.min)),
                           axis=-1, output_type=tf.int32)   # Q is unbounded below
        return greedy, q
