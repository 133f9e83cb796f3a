"""Off-policy Q-learning of Table 3's DQN rows on logged lists (one compiled step per batch).

For slot t of a logged list, with r_t = clicked_t (the paper adds diversity and novelty rewards
only to its two hierarchical rows, Sec. 4.5 (3)) and C_{t+1} the candidates slot t + 1 may pick:

    DQN:     y_t = r_t + gamma (1 - done_t) max_{d in C_{t+1}} Q'(s'_{t+1}, d)
    double:  y_t = r_t + gamma (1 - done_t) Q'(s'_{t+1}, argmax_{d in C_{t+1}} Q(s_{t+1}, d))
             (van Hasselt et al. 2016: the online network picks, the target network scores)
    loss:    mean over real slots of Huber_delta(y_t - Q(s_t, d_t)), d_t the logged item

Q' is the target network, softly updated (tau) every target_update_period steps; Adam with the
gradient clipped by global norm. No target where C_{t+1} is empty (done_t = 1 there).
"""
from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf
from sklearn.metrics import roc_auc_score

from baselines.dqn import DQNConfig, QNetwork, logged_q
from hrl_rec import losses
from hrl_rec.learner import transition_masks
from hrl_rec.model import soft_update


def masked_mean(x, weight):
    return tf.reduce_sum(x * weight) / tf.maximum(tf.reduce_sum(weight), 1.0)


def huber(error, delta: float):
    """0.5 e^2 where |e| <= delta, else delta (|e| - 0.5 delta)."""
    a = tf.abs(error)
    return tf.where(a <= delta, 0.5 * tf.square(error), delta * (a - 0.5 * delta))


def next_value(q_next_target, allowed_next, q_next_online=None):
    """max_{d in C} Q'(s', d), or (double) Q'(s', argmax_{d in C} Q(s', d)); 0 where C is empty.
    All [B, S, N] except allowed_next (bool) -> [B, S]."""
    low = tf.fill(tf.shape(q_next_target), tf.constant(-1e9, q_next_target.dtype))
    if q_next_online is None:
        best = tf.reduce_max(tf.where(allowed_next, q_next_target, low), -1)
    else:
        pick = tf.argmax(tf.where(allowed_next, q_next_online, low), -1, output_type=tf.int32)
        best = tf.gather(q_next_target, pick, batch_dims=2)
    return tf.where(tf.reduce_any(allowed_next, -1), best, tf.zeros_like(best))


def shift_allowed(allowed):
    """[B, S, N] -> C_{t+1} at position t (nothing after the last slot)."""
    return tf.pad(allowed[:, 1:], [[0, 0], [0, 1], [0, 0]])


class DQNLearner:
    """Owns the online and target networks, the optimizer and the step counter."""

    def __init__(self, net: QNetwork, target: QNetwork, cfg: DQNConfig, seed: int = 0):
        self.model, self.target, self.cfg = net, target, cfg
        self.m = net.max_seq_len
        self.optimizer = keras.optimizers.Adam(cfg.learning_rate, name="adam")
        self.optimizer.build(net.trainable_variables)
        self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
        self.seed = int(seed)
        self.train_step = tf.function(self._train_step, reduce_retracing=True)
        self.predict = tf.function(self._predict, reduce_retracing=True)

    def checkpointed(self) -> dict:
        return {"model": self.model, "target": self.target, "step": self.step,
                "optimizer": self.optimizer}

    def transition_masks(self, batch):
        return transition_masks(batch, self.m)

    def targets(self, batch, fwd):
        """y [B, S] (Eq. above) from the target network's next states; `fwd` is the online
        network's slot_q of the batch (double Q picks the next item by it). -> (y, r, weight)."""
        weight, done = self.transition_masks(batch)
        reward = tf.cast(batch["clicked"][:, self.m:], tf.float32)
        s_next, d_next, _, _ = self.target.slot_q(batch)
        s, d, allowed, _ = fwd
        allowed_next = shift_allowed(allowed)
        q_next_target = self.target.q(s_next[:, 1:], d_next, allowed_next)
        q_next_online = (tf.stop_gradient(self.model.q(s[:, 1:], d, allowed_next))
                         if self.cfg.double_q else None)
        v = next_value(q_next_target, allowed_next, q_next_online)
        return losses.td_target(reward, v, done, self.cfg.gamma), reward, weight

    def _train_step(self, batch):
        cfg = self.cfg
        with tf.GradientTape() as tape:
            fwd = self.model.slot_q(batch)
            y, reward, weight = self.targets(batch, fwd)
            q_taken = logged_q(fwd[3])
            td = masked_mean(huber(y - q_taken, cfg.huber_delta), weight)
            l2 = (losses.l2_penalty(self.model.embedding_tables, cfg.embedding_l2)
                  if cfg.embedding_l2 > 0 else tf.constant(0.0))
            total = td + l2
        variables = self.model.trainable_variables
        grads = [tf.zeros_like(v) if g is None else tf.convert_to_tensor(g)
                 for g, v in zip(tape.gradient(total, variables), variables)]
        clipped, norm = tf.clip_by_global_norm(grads, cfg.clip_norm)
        self.optimizer.apply_gradients(zip(clipped, variables))
        self.step.assign_add(1)
        if self.step % cfg.target_update_period == 0:
            soft_update(self.target, self.model, cfg.tau)
        return {"loss/total": total, "loss/td": td, "loss/embedding_l2": l2,
                "q/logged": masked_mean(q_taken, weight), "q/target": masked_mean(y, weight),
                "reward/click": masked_mean(reward, weight), "grad/norm": norm,
                "data/transitions": tf.reduce_sum(weight)}

    def _predict(self, batch):
        """Q(s_t, d_t) of the logged items and the real-slot mask, both [B, S]."""
        weight, _ = self.transition_masks(batch)
        return self.model(batch), weight


def evaluate(learner: DQNLearner, ds) -> dict:
    """AUC of Q(s_t, d_t) as a click score over every logged impression of `ds` (Q ranks what
    the agent would show; it is not a probability, so there is no logloss), the mean Q, and the
    oracle AUC of the true click probabilities when the data has them."""
    labels, scores, oracle = [], [], []
    for batch in ds:
        q, weight = learner.predict(batch)
        keep = weight.numpy() > 0
        scores.append(q.numpy()[keep])
        labels.append(batch["clicked"][:, learner.m:].numpy()[keep])
        oracle.append(batch["true_ctr"][:, learner.m:].numpy()[keep])
    y, q, o = (np.concatenate(x) for x in (labels, scores, oracle))
    if len(np.unique(y)) < 2:
        raise ValueError("evaluation data needs both clicked and unclicked impressions")
    out = {"auc": float(roc_auc_score(y, q)), "q_mean": float(q.mean()),
           "impressions": int(len(y))}
    if (o >= 0).all():
        out["oracle_auc"] = float(roc_auc_score(y, o))
    return out
