"""Off-policy DDPG learning of Table 3's flat DDPG row on logged lists (baselines/ddpg.py).

For slot t of a logged list, with r_t = clicked_t, a_t the logged item's embedding and
C_t the candidates of every channel that slot t may still pick:

    critic target  y_t = r_t + gamma (1 - done_t) Q'(s'_{t+1}, a'_{t+1})            (Eq. 12)
                   a'_{t+1} = mu(s_{t+1}) with target_q="double" (the online actor picks,
                   the target critic scores: HRL-Rec's default), mu'(s'_{t+1}) with "ddpg"
    critic loss    L(theta) = E[(y_t - Q(s_t, a_t))^2]                               (Eq. 12)
    actor loss     L(phi)   = E[-Q(stop(s_t), mu(s_t))], the critic frozen           (Eq. 13)
    similarity     L_s      = -E[cos(mu(s_t), d*_t)], d*_t = argmax_{d in C_t} cos    (Eq. 17)
    total          L = lambda_h (L(theta) + beta L(phi)) + lambda_s L_s (+ embedding L2)

As in HRL-Rec's learner (hrl_rec/learner.py): the critic's weights get only the critic loss
(their own Adam), everything else the rest (a second Adam), then critic_steps - 1 more critic
updates on the same states, actions and targets; every target_update_period steps the target
moves by tau. One device (no tf.distribute strategy).
"""
from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf
from sklearn.metrics import roc_auc_score

from baselines.ddpg import DDPGConfig, FlatDDPG
from hrl_rec import losses
from hrl_rec.diagnostics import action_alignment
from hrl_rec.learner import allowed_candidates, most_similar, transition_masks
from hrl_rec.model import soft_update


class DDPGLearner:
    """Owns the online and target networks, both optimizers and the step counter."""

    def __init__(self, model: FlatDDPG, target: FlatDDPG, cfg: DDPGConfig, seed: int = 0):
        self.model, self.target, self.cfg = model, target, cfg
        self.m = model.max_seq_len
        self.critic_optimizer = keras.optimizers.Adam(cfg.learning_rate, name="critic_adam")
        self.actor_optimizer = keras.optimizers.Adam(cfg.learning_rate, name="actor_adam")
        self.critic_optimizer.build(model.critic_variables)
        self.actor_optimizer.build(model.non_critic_variables)
        self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
        self.seed = int(seed)
        self.train_step = tf.function(self._train_step, reduce_retracing=True)
        self.predict = tf.function(self._predict, reduce_retracing=True)

    def checkpointed(self) -> dict:
        return {"model": self.model, "target": self.target, "step": self.step,
                "critic_optimizer": self.critic_optimizer,
                "actor_optimizer": self.actor_optimizer}

    def transition_masks(self, batch):
        return transition_masks(batch, self.m)

    def next_actions(self, fwd, s_target, seed):
        """a'_{t+1} [B, S, d] by --target_q (see the module docstring), with the training
        noise; `s_target` [B, S + 1, d_h] are the target network's states."""
        if self.cfg.target_q == "double":
            a = self.model.agent.actor(tf.stop_gradient(fwd.s[:, 1:]))
        else:
            a = self.target.agent.actor(s_target[:, 1:])
        if self.cfg.action_noise > 0:
            a += self.cfg.action_noise * tf.random.stateless_normal(tf.shape(a), seed + [0, 1])
        return tf.stop_gradient(a)

    def targets(self, fwd, s_target, reward, done, seed):
        """y [B, S] of Eq. 12 from the target network's next states."""
        q_next = self.target.agent.q(s_target[:, 1:], self.next_actions(fwd, s_target, seed))
        return losses.td_target(reward, q_next, done, self.cfg.gamma)

    def _train_step(self, batch):
        cfg, m, model = self.cfg, self.m, self.model
        seed = tf.stack([tf.constant(self.seed, tf.int64), self.step])
        weight, done = self.transition_masks(batch)
        reward = tf.cast(batch["clicked"][:, m:], tf.float32)
        s_target = self.target.states(batch)
        n_slots = tf.shape(weight)[1]
        with tf.GradientTape() as tape:
            fwd = model.forward(batch, noise=cfg.action_noise, seed=seed)
            y = self.targets(fwd, s_target, reward, done, seed)
            s = fwd.s[:, :n_slots]
            critic = losses.critic_loss(model.agent.q(s, fwd.logged), y, weight)
            actor = losses.actor_loss(model.agent.q(tf.stop_gradient(s), fwd.a, frozen=True),
                                      weight)
            agent = losses.agent_loss(critic, actor, cfg.beta)
            allowed, _ = allowed_candidates(batch, m)          # every channel: no constraint
            nearest, _ = most_similar(fwd.a, fwd.candidates, allowed)
            similarity = losses.similarity_loss(fwd.a, tf.stop_gradient(nearest), weight)
            l2 = (losses.l2_penalty(model.embedding_tables, cfg.embedding_l2)
                  if cfg.embedding_l2 > 0 else tf.constant(0.0))
            total = cfg.agent_loss_weight * agent + cfg.similarity_loss_weight * similarity + l2
        critic_vars, other_vars = model.critic_variables, model.non_critic_variables
        grads = tape.gradient(total, critic_vars + other_vars)
        critic_norm = self._apply(self.critic_optimizer, grads[:len(critic_vars)], critic_vars)
        actor_norm = self._apply(self.actor_optimizer, grads[len(critic_vars):], other_vars)
        fixed = [tf.stop_gradient(x) for x in (s, fwd.logged, y)]
        for _ in tf.range(cfg.critic_steps - 1):
            with tf.GradientTape() as critic_tape:
                extra = cfg.agent_loss_weight * losses.critic_loss(
                    model.agent.q(fixed[0], fixed[1]), fixed[2], weight)
            self._apply(self.critic_optimizer, critic_tape.gradient(extra, critic_vars),
                        critic_vars)
        self.step.assign_add(1)
        if self.step % cfg.target_update_period == 0:
            soft_update(self.target, model, cfg.tau)
        mean = lambda x: tf.reduce_sum(x * weight) / tf.maximum(tf.reduce_sum(weight), 1.0)  # noqa
        return {"loss/total": total, "loss/agent": agent, "loss/critic": critic,
                "loss/actor": actor, "loss/similarity": similarity, "loss/embedding_l2": l2,
                "q/logged": mean(model.agent.q(s, fwd.logged)), "q/target": mean(y),
                "q/policy": -actor, "reward/click": mean(reward),
                "grad/critic_norm": critic_norm, "grad/actor_norm": actor_norm,
                "data/transitions": tf.reduce_sum(weight)}

    def _apply(self, optimizer, grads, variables):
        """Clips by global norm and applies; returns the norm before clipping."""
        # Dense: an embedding's IndexedSlices would count a row gathered twice as two rows.
        grads = [tf.zeros_like(v) if g is None else tf.convert_to_tensor(g)
                 for g, v in zip(grads, variables)]
        clipped, norm = tf.clip_by_global_norm(grads, self.cfg.clip_norm)
        optimizer.apply_gradients(zip(clipped, variables))
        return norm

    def _predict(self, batch):
        """For the logged items (no noise): cos(a_t, d_t), the score the agent serves by;
        Q(s_t, d_t), the critic's value of showing d_t; the real-slot mask (all [B, S]); the
        actions a_t [B, S, d]."""
        fwd = self.model.forward(batch)
        weight, _ = self.transition_masks(batch)
        s = fwd.s[:, :tf.shape(weight)[1]]
        return (losses.cosine(fwd.a, fwd.logged), self.model.agent.q(s, fwd.logged), weight,
                fwd.a)


def evaluate(learner: DDPGLearner, ds) -> dict:
    """Over every logged impression of `ds`: `auc` of cos(a_t, d_t) as a click score (what the
    agent serves by, so what chooses the best epoch), `auc_q` of the critic's Q(s_t, d_t),
    `action_alignment` of the actions, the oracle AUC of the true click probabilities when the
    data has them."""
    labels, cosines, qs, actions, oracle = [], [], [], [], []
    for batch in ds:
        cos, q, weight, a = learner.predict(batch)
        keep = weight.numpy() > 0
        cosines.append(cos.numpy()[keep])
        qs.append(q.numpy()[keep])
        actions.append(a.numpy()[keep])
        labels.append(batch["clicked"][:, learner.m:].numpy()[keep])
        oracle.append(batch["true_ctr"][:, learner.m:].numpy()[keep])
    y, c, q, o = (np.concatenate(x) for x in (labels, cosines, qs, oracle))
    if len(np.unique(y)) < 2:
        raise ValueError("evaluation data needs both clicked and unclicked impressions")
    out = {"auc": float(roc_auc_score(y, c)), "auc_q": float(roc_auc_score(y, q)),
           "q_mean": float(q.mean()), "impressions": int(len(y)),
           "action_alignment": action_alignment(np.concatenate(actions))}
    if (o >= 0).all():
        out["oracle_auc"] = float(roc_auc_score(y, o))
    return out
