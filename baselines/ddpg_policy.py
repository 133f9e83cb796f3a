"""Slates from the flat DDPG agent (baselines/ddpg.py): S actor decisions over every channel.

For slot t of every request: s_t from the history and the t items already placed, the virtual
item a_t = mu(s_t) (Eq. 6), and the available candidate of ANY channel most cosine-similar to
it (Sec. 3.5 without a channel constraint; no item twice), or with probability epsilon a
uniform draw, with the same exact propensities as HRL-Rec's policy. The request and output
formats are hrl_rec.policy's (the online A/B serves all models alike); score is cos(a_t, d_t),
and ctr, lra_channel are not produced (a flat agent has neither f nor a channel decision).
"""
from __future__ import annotations

import tensorflow as tf

from baselines.ddpg import FlatDDPG
from hrl_rec.policy import SlatePolicy, cosine_matrix, masked_argmax

OUTPUTS = ("item_id", "channel", "index", "score", "propensity", "explored")


class DDPGSlatePolicy(SlatePolicy):
    """`policy(request)` -> slate dict (OUTPUTS, each [B, S]); epsilon > 0 explores."""

    def __init__(self, model: FlatDDPG, list_size: int, epsilon: float = 0.0, seed: int = 0):
        super().__init__(model, list_size, epsilon, seed)

    def slate(self, request):
        agent, s = self.model.agent, self.list_size
        d, window, available = self._start(request)
        outputs = {k: [] for k in OUTPUTS}
        seed = tf.stack([self.seed, tf.constant(0, tf.int64)])
        for t in range(s):
            # every position's fields again: only the new one changed, but the window is short
            f, h0 = agent.behaviours(window)
            state = self._states(agent, f, window["mask"], h0, t)
            similarity = cosine_matrix(agent.actor(state), d)                  # [B, N]
            greedy = masked_argmax(similarity, available)
            pick, explore, prob, any_left = self._explore(greedy, available, seed + [0, t])
            item = tf.gather(request["cand_item_id"], pick, batch_dims=1)
            available &= ~(tf.equal(request["cand_item_id"], item[:, None]) & any_left[:, None])
            for key, value in (("item_id", tf.where(any_left, item, -tf.ones_like(item))),
                               ("channel", tf.gather(request["cand_channel"], pick,
                                                     batch_dims=1)),
                               ("index", pick),
                               ("score", tf.gather(similarity, pick, batch_dims=1)),
                               ("propensity", prob), ("explored", explore)):
                outputs[key].append(value)
            window = self._place(window, request, pick, t, any_left)
        self.seed.assign_add(1)
        return {k: tf.stack(v, axis=1) for k, v in outputs.items()}
