"""The off-policy DDPG learner of HRL-Rec: one compiled train step per list batch (Sec. 3.4).

A train step on a batch of logged lists:
  1. the target network (forward only) gives the next states s_{t+1} and the critic targets
         y_t = r_t + gamma * (1 - done_t) * Q'(s_{t+1}, a_{t+1})                    (Eq. 9, 12)
     with a_{t+1} chosen by --target_q (see `next_actions`);
  2. one joint update of Eq. 18 on every weight. The critics are trained on the LOGGED action
     (the embedding of the item the log shows at slot t) and get only the critic losses; the
     actors, state encoders, item encoder and click model get
         L = lambda_l (L(theta^l) + beta L(phi^l)) + lambda_h (L(theta^h) + beta L(phi^h))
             + lambda_c L_c + lambda_s L_s,
     where the actor losses read the critics with frozen weights and a stopped state (the
     encoder must not learn to inflate Q through s);
  3. critic_steps - 1 further critic updates on the same transitions (states, actions and
     targets held fixed): the critic-heavy schedule of Sec. 3.4 ("update Critics with a higher
     frequency (usually 5 to 30 times) than Actors");
  4. every target_update_period steps, theta' <- tau theta + (1 - tau) theta'.
Two Adam optimizers keep the counts checkable: `critic_optimizer.iterations` grows by
critic_steps per step, `actor_optimizer.iterations` by one. Gradients are clipped by global
norm per optimizer. Build the Learner inside a tf.distribute strategy's scope to train with it
(hrl_rec/distribute.py: replicas compute the single-device step of the global batch).
"""
from __future__ import annotations

import keras
import tensorflow as tf

from hrl_rec import distribute, losses, rewards
from hrl_rec.config import HRLConfig, loss_weights, reward_weights
from hrl_rec.model import HRLRec, candidate_items, slot_items, soft_update


def most_similar(a, candidates, allowed):
    """For each action, the allowed candidate with the highest cosine similarity.

    a [B, S, d], candidates [B, N, d], allowed [B, S, N] bool -> (items [B, S, d], index [B, S]).
    """
    sim = tf.einsum("bsd,bnd->bsn", tf.math.l2_normalize(a, -1),
                    tf.math.l2_normalize(candidates, -1))
    sim = tf.where(allowed, sim, -2.0 * tf.ones_like(sim))
    index = tf.argmax(sim, axis=-1, output_type=tf.int32)
    return tf.gather(candidates, index, batch_dims=1), index


def transition_masks(batch: dict, m: int):
    """(weight, done) [B, S]: real slots, and slots without a successor."""
    slot = tf.cast(batch["mask"][:, m:] > 0, tf.float32)
    nxt = tf.pad(slot[:, 1:], [[0, 0], [0, 1]])
    return slot, slot * (1.0 - nxt)


def allowed_candidates(batch: dict, m: int):
    """(LRA, HRA) masks [B, S, N] of the candidates slot t may pick. The list's own items at
    slots < t are already placed; the HRA may only pick items of the slot's logged channel c_t
    (its hard channel constraint, Sec. 3.3)."""
    _, channel, valid = candidate_items(batch, m)
    s = tf.shape(batch["mask"])[1] - m
    n = tf.shape(channel)[1]
    placed = tf.range(n)[None, :] < tf.minimum(tf.range(s), n)[:, None]   # own item n < t
    placed &= (tf.range(n) < s)[None, :]
    allowed = valid[:, None, :] & ~placed[None]
    return allowed, allowed & tf.equal(channel[:, None, :], batch["channel"][:, m:, None])


def list_negatives(batch: dict, m: int):
    """(LRA, HRA) masks [B, S, S]: for slot t, the list's items j != t that are real and were
    not clicked (the LRA's), and of those the ones of slot t's channel (the HRA's): the
    negatives of the within-state ranking loss (`losses.served_rank_loss`)."""
    real = batch["mask"][:, m:] > 0
    unclicked = real & (batch["clicked"][:, m:] == 0)
    s = tf.shape(real)[1]
    other = ~tf.eye(s, dtype=tf.bool)[None]
    negatives = unclicked[:, None, :] & other & real[:, :, None]
    channel = batch["channel"][:, m:]
    return negatives, negatives & tf.equal(channel[:, :, None], channel[:, None, :])


def batch_negatives(batch: dict, m: int, n_lists: int):
    """(rows [B, K], (LRA, HRA) masks [B, S, K]) with K = n_lists * S: the logged items of
    lists b-1..b-n_lists of the batch (wrapping around) as negatives of list b's slots, for
    `losses.served_rank_loss`'s extra negatives. rows index the batch's logged items flattened
    to [B * S]. A slot's negative is a real item of another list whose id is not the slot's
    own item's; the HRA's are also of the slot's channel. Lists that wrap back to b itself
    (batches smaller than n_lists + 1) are masked out."""
    real = batch["mask"][:, m:] > 0
    ids, channel = batch["item_id"][:, m:], batch["channel"][:, m:]
    b, s = tf.shape(real)[0], tf.shape(real)[1]
    lists = tf.math.floormod(tf.range(b)[:, None] - tf.range(1, n_lists + 1)[None, :], b)
    other = tf.not_equal(lists, tf.range(b)[:, None])                          # [B, N]
    rows = tf.reshape(lists[:, :, None] * s + tf.range(s)[None, None, :], [b, -1])  # [B, K]
    flat = lambda x: tf.gather(tf.reshape(x, [-1]), rows)                      # noqa: E731
    ok = (flat(real) & tf.reshape(tf.repeat(other, s, axis=1), [b, -1]))[:, None, :]
    ok = ok & real[:, :, None] & tf.not_equal(flat(ids)[:, None, :], ids[:, :, None])
    return rows, (ok, ok & tf.equal(flat(channel)[:, None, :], channel[:, :, None]))


def pairwise_wins(scores, negatives, clicked):
    """(wins, pairs) [B, S]: for each clicked slot t, how many of its negatives j score below
    the positive (ties count a half), and how many negatives it has. sum(wins) / sum(pairs)
    is the AUC of the served score within states (`rank_auc_high`)."""
    positive = tf.linalg.diag_part(scores)[..., None]
    neg = tf.cast(negatives, scores.dtype) * tf.cast(clicked, scores.dtype)[..., None]
    wins = (tf.cast(positive > scores, scores.dtype)
            + 0.5 * tf.cast(tf.equal(positive, scores), scores.dtype)) * neg
    return tf.reduce_sum(wins, -1), tf.reduce_sum(neg, -1)


class Learner:
    """Owns the online and target networks, both optimizers and the step counter.

    One train step (`_train_step`, in graph): `rewards` (Eq. 12-14) -> `targets` (Eq. 9-10
    with `next_actions` and `next_q`) -> the critic losses (Eq. 6) and the actor, click,
    similarity, served-score and distillation losses (Eq. 15-18, `served_losses`,
    `distill_loss`) -> the two Adam updates and the soft target update.

    To change a part, subclass and override it, then return the subclass from a Runner
    subclass's `build` (hrl_rec/runner.py says how): a reward shaping overrides `rewards(batch)
    -> (r^l, r^h, components)` (same shapes); another target (e.g. a clipped double Q)
    overrides `targets(...) -> (y^l, y^h)`; another served-score supervision overrides
    `served_losses(fwd, batch, weight) -> (click loss, ranking loss)` or `distill_loss`, which
    `_replica_step` weighs with --served_click_weight, --served_rank_weight and
    --served_distill_weight. Anything the subclass adds that must survive a resume goes into
    `checkpointed()`.
    """

    def __init__(self, model: HRLRec, target: HRLRec, cfg: HRLConfig, seed: int = 0):
        self.model, self.target, self.cfg = model, target, cfg
        self.m = model.max_seq_len
        self.critic_optimizer = keras.optimizers.Adam(cfg.learning_rate, name="critic_adam")
        self.actor_optimizer = keras.optimizers.Adam(cfg.learning_rate, name="actor_adam")
        self.critic_optimizer.build(model.critic_variables)
        self.actor_optimizer.build(model.non_critic_variables)
        self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
        self.seed = int(seed)
        self.weights = reward_weights(cfg, len(model.spec["channel_names"]))
        self.strategy = tf.distribute.get_strategy()
        self.train_step = tf.function(self._train_step, reduce_retracing=True)
        self.step_on = tf.function(self._step_on)   # next(iterator) in graph: parameter servers
        self.predict = tf.function(self._predict, reduce_retracing=True)

    def learning_rate_for_epoch(self, epoch: int) -> float:
        """--learning_rate * --learning_rate_decay**epoch (epoch from 0): the rate both Adam
        optimizers train at in that epoch. The runner sets it at every epoch start, resumes
        included, so a checkpoint needs no schedule state."""
        return float(self.cfg.learning_rate * self.cfg.learning_rate_decay ** int(epoch))

    def set_epoch(self, epoch: int) -> float:
        """Sets both optimizers' learning rate for `epoch` -> the rate."""
        rate = self.learning_rate_for_epoch(epoch)
        for optimizer in (self.critic_optimizer, self.actor_optimizer):
            optimizer.learning_rate = rate
        return rate

    def checkpointed(self) -> dict:
        """What a checkpoint holds of the learner (the runner adds its epoch counters)."""
        return {"model": self.model, "target": self.target, "step": self.step,
                "critic_optimizer": self.critic_optimizer,
                "actor_optimizer": self.actor_optimizer}

    # -- pieces, each testable ---------------------------------------------------------------
    def rewards(self, batch):
        """(r^l, r^h, components) at the S slots, [B, S], [B, S], [B, S, 4]."""
        m, cfg = self.m, self.cfg
        r = rewards.components(batch["clicked"][:, m:], batch["dwell"][:, m:],
                               batch["tags"][:, m:], batch["novel_tags"][:, m:],
                               cfg.dwell_unit_s)
        r_high = rewards.high_level_reward(r, batch["channel"][:, m:], self.weights,
                                           cfg.reward_bias, cfg.reward_form)
        return rewards.low_level_reward(batch["clicked"][:, m:]), r_high, r

    def next_actions(self, online, target, seed):
        """a_{t+1} for both agents by --target_q:
            ddpg:   mu'(s'_{t+1}) (target actor on the target network's state, Eq. 9 as written)
            double: mu(s_{t+1}) (the online actor picks, the target critic scores it: the
                    double-Q reading of "we also adopt the double strategy" that fits DDPG)
            twin:   mu'(s'_{t+1}), scored by the minimum of two target critics (TD3's clipped
                    double Q)
            logged: the logged item of slot t + 1 (the authors' public code)
        """
        mode, sigma = self.cfg.target_q, self.cfg.action_noise
        if mode == "logged":
            pad = [[0, 0], [0, 1], [0, 0]]
            nxt = tf.pad(target.logged[:, 1:], pad)
            return nxt, nxt
        if mode == "double":
            a_l = self.model.lra.actor(tf.stop_gradient(online.s_low[:, 1:]))
            a_h = self.model.hra.actor(tf.stop_gradient(online.s_high[:, 1:]))
        else:
            a_l = self.target.lra.actor(target.s_low[:, 1:])
            a_h = self.target.hra.actor(target.s_high[:, 1:])
        if sigma > 0:
            a_l += sigma * distribute.replica_normal(tf.shape(a_l), seed + [0, 2])
            a_h += sigma * distribute.replica_normal(tf.shape(a_h), seed + [0, 3])
        return tf.stop_gradient(a_l), tf.stop_gradient(a_h)

    def next_q(self, agent, s_next, a_next):
        qs = [agent.q(s_next, a_next, k) for k in range(len(agent.critics))]
        return qs[0] if len(qs) == 1 else tf.reduce_min(tf.stack(qs), axis=0)

    def targets(self, online, target, r_low, r_high, done, seed):
        """(y^l, y^h) [B, S]: Eq. 9 and Eq. 12 with a_{t+1} from `next_actions`."""
        a_next_l, a_next_h = self.next_actions(online, target, seed)
        q_low = self.next_q(self.target.lra, target.s_low[:, 1:], a_next_l)
        q_high = self.next_q(self.target.hra, target.s_high[:, 1:], a_next_h)
        return (losses.td_target(r_low, q_low, done, self.cfg.gamma),
                losses.td_target(r_high, q_high, done, self.cfg.gamma))

    def transition_masks(self, batch):
        return transition_masks(batch, self.m)

    def _critic_losses(self, model, s_low, s_high, action, y_low, y_high, weight):
        l_low = tf.add_n([losses.critic_loss(model.lra.q(s_low, action, k), y_low, weight)
                          for k in range(len(model.lra.critics))])
        l_high = tf.add_n([losses.critic_loss(model.hra.q(s_high, action, k), y_high, weight)
                           for k in range(len(model.hra.critics))])
        return l_low, l_high

    # -- the step ----------------------------------------------------------------------------
    def _train_step(self, batch):
        """One step on a list batch: a dict of tensors, or a strategy's distributed batch."""
        per_replica, hist = self.strategy.run(self._replica_step, args=(batch,))
        metrics = {k: self.strategy.reduce(tf.distribute.ReduceOp.SUM, v, axis=None)
                   for k, v in per_replica.items()}
        for k, v in hist.items():  # the first local replica's actions
            metrics[k] = self.strategy.experimental_local_results(v)[0]
        self.step.assign_add(1)
        if self.step % self.cfg.target_update_period == 0:
            soft_update(self.target, self.model, self.cfg.tau)
        return metrics

    def _step_on(self, iterator):
        return self._train_step(next(iterator))

    def _replica_step(self, batch):
        """The step's gradient updates on this replica's rows. Returns its part of each metric
        (summed over replicas: the global batch's value) and its action histograms."""
        cfg, m, model = self.cfg, self.m, self.model
        seed = tf.stack([tf.constant(self.seed, tf.int64), self.step])
        weight, done = self.transition_masks(batch)
        share = distribute.transition_share(weight)
        r_low, r_high, r_parts = self.rewards(batch)
        per_slot = cfg.per_slot_states
        tgt = self.target.forward(batch, with_actions=False, per_slot=per_slot)
        s = tf.shape(weight)[1]
        with tf.GradientTape() as tape:
            fwd = model.forward(batch, noise=cfg.action_noise, seed=seed, per_slot=per_slot)
            y_low, y_high = self.targets(fwd, tgt, r_low, r_high, done, seed)
            s_low, s_high = fwd.s_low[:, :s], fwd.s_high[:, :s]
            critic_low, critic_high = self._critic_losses(model, s_low, s_high, fwd.logged,
                                                          y_low, y_high, weight)
            actor_low = losses.actor_loss(
                model.lra.q(tf.stop_gradient(s_low), fwd.a_low, frozen=True), weight)
            actor_high = losses.actor_loss(
                model.hra.q(tf.stop_gradient(s_high), fwd.a_high, frozen=True), weight)
            if cfg.actor_objective == "critic_max":   # the critic's exact best direction
                actor_low = losses.direction_loss(fwd.a_low, model.lra.critics[0].action_weight(
                    tf.stop_gradient(s_low), frozen=True), weight)
                actor_high = losses.direction_loss(fwd.a_high, model.hra.critics[0].action_weight(
                    tf.stop_gradient(s_high), frozen=True), weight)
            l_low = losses.agent_loss(critic_low, actor_low, cfg.beta)
            l_high = losses.agent_loss(critic_high, actor_high, cfg.beta)
            click = losses.click_loss(model.click_logits(fwd), batch["clicked"][:, m:], weight)
            if cfg.similarity_target == "clicked":   # the logged item, where it was clicked
                d_low = d_high = fwd.logged
                sim_weight = weight * tf.cast(batch["clicked"][:, m:], tf.float32)
            else:                                     # Eq. 17: the nearest allowed candidate
                allowed_low, allowed_high = allowed_candidates(batch, m)
                d_low, _ = most_similar(fwd.a_low, fwd.candidates, allowed_low)
                d_high, _ = most_similar(fwd.a_high, fwd.candidates, allowed_high)
                sim_weight = weight
            if not cfg.similarity_moves_items:
                d_low, d_high = tf.stop_gradient(d_low), tf.stop_gradient(d_high)
            similarity = (losses.similarity_loss(fwd.a_low, d_low, sim_weight)
                          + losses.similarity_loss(fwd.a_high, d_high, sim_weight))
            total = losses.total_loss(l_low, l_high, click, similarity, loss_weights(cfg))
            served_click, served_rank = self.served_losses(fwd, batch, weight)
            total += cfg.served_click_weight * served_click + cfg.served_rank_weight * served_rank
            distill = (self.distill_loss(fwd, batch, weight) if cfg.served_distill_weight > 0
                       else tf.constant(0.0))
            total += cfg.served_distill_weight * distill
            uniformity = tf.constant(0.0)
            if cfg.uniformity_weight > 0:
                uniformity = (losses.uniformity_loss(fwd.a_low, weight)
                              + losses.uniformity_loss(fwd.a_high, weight)
                              + losses.uniformity_loss(fwd.logged, weight))
                total += cfg.uniformity_weight * uniformity
            anchor = (losses.anchor_loss(fwd.a_low, fwd.logged, weight)
                      + losses.anchor_loss(fwd.a_high, fwd.logged, weight))
            if cfg.action_anchor > 0:
                total += cfg.action_anchor * anchor
            l2 = (losses.l2_penalty(model.embedding_tables, cfg.embedding_l2)
                  if cfg.embedding_l2 > 0 else tf.constant(0.0))
            total += l2
            scaled = total * share
        critic_vars, other_vars = model.critic_variables, model.non_critic_variables
        grads = tape.gradient(scaled, critic_vars + other_vars)
        critic_norm = self._apply(self.critic_optimizer, grads[:len(critic_vars)], critic_vars)
        actor_norm = self._apply(self.actor_optimizer, grads[len(critic_vars):], other_vars)
        self._extra_critic_steps(
            [tf.stop_gradient(x) for x in (s_low, s_high, fwd.logged, y_low, y_high)],
            weight, share)
        mean = lambda x: tf.reduce_sum(x * weight) / tf.maximum(tf.reduce_sum(weight), 1.0)  # noqa
        metrics = {
            "loss/total": total, "loss/lra": l_low, "loss/hra": l_high,
            "loss/lra_critic": critic_low, "loss/lra_actor": actor_low,
            "loss/hra_critic": critic_high, "loss/hra_actor": actor_high,
            "loss/click": click, "loss/similarity": similarity, "loss/anchor": anchor,
            "loss/served_click": served_click, "loss/served_rank": served_rank,
            "loss/uniformity": uniformity, "loss/served_distill": distill,
            "loss/embedding_l2": l2,
            "q/lra": mean(model.lra.q(s_low, fwd.logged)), "q/hra": mean(
                model.hra.q(s_high, fwd.logged)),
            "q/lra_target": mean(y_low), "q/hra_target": mean(y_high),
            "q/lra_policy": -actor_low, "q/hra_policy": -actor_high,
            "reward/low": mean(r_low), "reward/high": mean(r_high),
        }
        for i, name in enumerate(rewards.COMPONENTS):
            metrics[f"reward/{name}"] = mean(r_parts[..., i])
        metrics = {k: v * share for k, v in metrics.items()}   # weighted means -> their part
        replicas = float(distribute.num_replicas())
        metrics["grad/critic_norm"] = critic_norm / replicas     # equal on every replica
        metrics["grad/actor_norm"] = actor_norm / replicas
        metrics["data/transitions"] = tf.reduce_sum(weight)
        return metrics, {"hist/lra_action": fwd.a_low, "hist/hra_action": fwd.a_high}

    def served_losses(self, fwd, batch, weight):
        """(served click loss, within-state ranking loss), each summed over both agents: the
        BCE of `ServedScore` u(a_t, d_t) on every logged slot, and `losses.served_rank_loss`
        of kappa cos(a_t, d_j) over the list's logged items (negatives: `list_negatives`).
        Both are 0 (and not computed) when their weight is."""
        m, model, cfg = self.m, self.model, self.cfg
        clicked = batch["clicked"][:, m:]
        zero = tf.constant(0.0)
        pairs = ((fwd.a_low, model.served_low), (fwd.a_high, model.served_high))
        served_click = zero
        if cfg.served_click_weight > 0:
            served_click = tf.add_n([losses.click_loss(head(a, fwd.logged, fwd.slot), clicked,
                                                       weight) for a, head in pairs])
        served_rank = zero
        if cfg.served_rank_weight > 0:
            negatives = list_negatives(batch, m)
            extra = [(None, None)] * 2
            if cfg.served_batch_negatives > 0:
                rows, masks = batch_negatives(batch, m, cfg.served_batch_negatives)
                item, context = model.items.parts(slot_items(batch, m))
                other = tf.gather(tf.reshape(item, [-1, tf.shape(item)[-1]]), rows)  # [B, K, d]
                if context is not None:   # other lists' items as if shown in slot t's context
                    d_other = tf.tanh(other[:, None] + context[:, :, None])         # [B, S, K, d]
                else:
                    d_other = tf.tanh(other)[:, None]
                extra = [(head.cosine_logit(a[:, :, None], d_other), mask)
                         for (a, head), mask in zip(pairs, masks)]
            served_rank = tf.add_n([
                losses.served_rank_loss(
                    head.cosine_logit(a[:, :, None], fwd.logged[:, None]), neg, clicked, weight,
                    *more)
                for (a, head), neg, more in zip(pairs, negatives, extra)])
        return served_click, served_rank

    def distill_loss(self, fwd, batch, weight):
        """`losses.distill_loss` summed over both agents: each agent's kappa cos(a_t, d_j)
        against Eq. 16's f(a_t, d_j) (the slot's joint action [a^l_t; a^h_t]) over the
        candidates slot t may pick (`allowed_candidates`: the LRA's of every channel, the
        HRA's of the slot's channel), the list's items and the sampled ones as embedded in
        `fwd.candidates`."""
        model, cfg = self.model, self.cfg
        allowed = allowed_candidates(batch, self.m)
        joint = tf.concat([fwd.a_low, fwd.a_high], -1)[:, :, None]                # [B, S, 1, 2d]
        cand = fwd.candidates[:, None]                                              # [B, 1, N, d]
        shape = tf.concat([tf.shape(joint)[:2], tf.shape(cand)[2:3]], 0)            # B, S, N
        teacher = model.click(
            tf.broadcast_to(joint, tf.concat([shape, tf.shape(joint)[-1:]], 0)),
            tf.broadcast_to(cand, tf.concat([shape, tf.shape(cand)[-1:]], 0)),
            tf.broadcast_to(fwd.slot[:, :, None], shape))                           # [B, S, N]
        student_cand = cand if cfg.served_distill_moves_items else tf.stop_gradient(cand)
        return tf.add_n([
            losses.distill_loss(head.cosine_logit(a[:, :, None], student_cand), teacher, mask,
                                weight, cfg.served_distill_temperature)
            for (a, head), mask in zip(((fwd.a_low, model.served_low),
                                        (fwd.a_high, model.served_high)), allowed)])

    def _extra_critic_steps(self, fixed, weight, share):
        """critic_steps - 1 critic updates on fixed states, actions and targets."""
        w_l, w_h = self.cfg.lra_loss_weight, self.cfg.hra_loss_weight
        critic_vars = self.model.critic_variables
        # Under a tf.distribute strategy each update synchronises (merge_call), which cannot
        # happen inside a graph while-loop: unroll the loop there.
        steps = (range if tf.distribute.has_strategy() else tf.range)(self.cfg.critic_steps - 1)
        for _ in steps:
            with tf.GradientTape() as critic_tape:
                extra_low, extra_high = self._critic_losses(self.model, *fixed, weight)
                extra = (w_l * extra_low + w_h * extra_high) * share
            self._apply(self.critic_optimizer, critic_tape.gradient(extra, critic_vars),
                        critic_vars)

    def _apply(self, optimizer, grads, variables):
        """Sums the replicas' gradients, clips the sum by its global norm, applies it. (Keras's
        optimizer sums over replicas again, hence the division.)"""
        # Dense: the global norm of an embedding's IndexedSlices counts a row gathered twice as
        # two rows, not as their sum, and so under-clips.
        grads = [tf.zeros_like(v) if g is None else tf.convert_to_tensor(g)
                 for g, v in zip(grads, variables)]
        grads = distribute.all_reduce_sum(grads)
        replicas = distribute.num_replicas()
        clipped, norm = tf.clip_by_global_norm(grads, self.cfg.clip_norm)
        if replicas > 1:
            clipped = [g / replicas for g in clipped]
        optimizer.apply_gradients(zip(clipped, variables))
        return norm

    def _predict(self, batch):
        """Every per-transition score evaluation needs, for the logged items (no noise), each
        [B, S] unless said:
            click      f(a_t, d_t) of Eq. 16
            cosine     cos(a^h_t, d_t), the score the HRA serves by (Sec. 3.5: "the most
                       similar item of the predicted action")
            q_item     the HRA critic's Q(s^h_t, d_t)
            weight     the real-slot mask;  slot  the slot shown at;  clicked  the label
            rank_wins, rank_pairs   `pairwise_wins` of cos(a^h_t, .) over the list's unclicked
                       items of slot t's channel
            lra_channel    the channel of the allowed candidate most similar to a^l_t
            prior_channel  the user's most clicked channel in the m history positions
                           (most shown where none was clicked)
            channel        the logged channel
            a_low, a_high  [B, S, d] the actions;  logged [B, S, d] the items' embeddings
        """
        m = self.m
        fwd = self.model.forward(batch, per_slot=self.cfg.per_slot_states)
        weight, _ = self.transition_masks(batch)
        s = tf.shape(weight)[1]
        cosine = losses.cosine(fwd.a_high, fwd.logged)
        clicked = batch["clicked"][:, m:]
        _, neg_high = list_negatives(batch, m)
        wins, pairs = pairwise_wins(losses.cosine(fwd.a_high[:, :, None], fwd.logged[:, None]),
                                    neg_high, clicked)
        allowed_low, _ = allowed_candidates(batch, m)
        _, pick = most_similar(fwd.a_low, fwd.candidates, allowed_low)
        _, cand_channel, _ = candidate_items(batch, m)
        n_ch = len(self.model.spec["channel_names"])
        hist = batch["mask"][:, :m] > 0
        shown = tf.one_hot(batch["channel"][:, :m], n_ch) * tf.cast(hist, tf.float32)[..., None]
        hits = shown * tf.cast(batch["feedback"][:, :m] == 2, tf.float32)[..., None]
        prior = tf.argmax(tf.reduce_sum(hits, 1) + 1e-3 * tf.reduce_sum(shown, 1), axis=-1,
                          output_type=tf.int32)
        return {"click": tf.sigmoid(self.model.click_logits(fwd)), "cosine": cosine,
                "q_item": self.model.hra.q(fwd.s_high[:, :s], fwd.logged), "weight": weight,
                "slot": fwd.slot, "clicked": clicked, "rank_wins": wins, "rank_pairs": pairs,
                "lra_channel": tf.gather(cand_channel, pick, batch_dims=1),
                "prior_channel": tf.repeat(tf.cast(prior, batch["channel"].dtype)[:, None], s,
                                           axis=1),
                "channel": batch["channel"][:, m:], "a_low": fwd.a_low, "a_high": fwd.a_high,
                "logged": fwd.logged}
