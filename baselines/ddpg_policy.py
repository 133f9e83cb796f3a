"""Slates from the flat DDPG agent (baselines/ddpg.py): S actor decisions over every channel.

Slot t shows the available candidate of ANY channel most cosine-similar to the virtual item
a_t = mu(s_t) (Eq. 6; Sec. 3.5 without a channel constraint), or with probability epsilon a
uniform draw (baselines/flat_policy.py has the slot loop); score is cos(a_t, d_t).
"""
from __future__ import annotations

from baselines.ddpg import FlatDDPG
from baselines.flat_policy import FlatSlatePolicy
from hrl_rec.policy import cosine_matrix, masked_argmax


class DDPGSlatePolicy(FlatSlatePolicy):
    """`policy(request)` -> slate dict (flat_policy.OUTPUTS, each [B, S]); epsilon > 0
    explores."""

    def __init__(self, model: FlatDDPG, list_size: int, epsilon: float = 0.0, seed: int = 0):
        super().__init__(model, list_size, epsilon, seed)

    @property
    def agent(self):
        return self.model.agent

    def greedy(self, state, d, available):
        similarity = cosine_matrix(self.agent.actor(state), d)                   # [B, N]
        return masked_argmax(similarity, available), similarity
