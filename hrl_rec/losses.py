"""The four losses of HRL-Rec (Sec. 3.4) as plain functions of tensors.

`weight` is the [B, S] mask of real transitions (1) and padding (0); every loss is a mean over
real transitions (the paper writes expectations for Eq. 9-14 and sums for Eq. 15, 17; a mean
keeps the loss weights of Eq. 18 independent of the batch size).
"""
from __future__ import annotations

import keras
import tensorflow as tf


def _mean(x, weight):
    weight = tf.cast(weight, x.dtype)
    return tf.reduce_sum(x * weight) / tf.maximum(tf.reduce_sum(weight), 1.0)


def td_target(reward, next_q, done, gamma: float):
    """The critic target of Eq. 9 / 12: y_t = r_t + gamma * (1 - done_t) * Q'(s_{t+1}, a_{t+1}).

    `done` is 1 where slot t has no successor (the list's last slot). No gradient flows
    through y."""
    return tf.stop_gradient(reward + gamma * (1.0 - tf.cast(done, reward.dtype)) * next_q)


def critic_loss(q, y, weight):
    """Eq. 9 / 12: L(theta) = E[(y_t - Q(s_t, a_t | theta))^2]."""
    return _mean(tf.square(tf.stop_gradient(y) - q), weight)


def actor_loss(q_pi, weight):
    """Eq. 10 / 13: L(phi) = E[-Q(s, mu(s | phi) | theta)] (q_pi from a frozen critic)."""
    return -_mean(q_pi, weight)


def agent_loss(critic, actor, beta: float):
    """Eq. 11 / 14: L_l = L(theta^l) + beta * L(phi^l); the same for L_h."""
    return critic + beta * actor


def click_loss(logits, clicked, weight):
    """Eq. 15: L_c = -sum_{d in C_u} log f(a, d) - sum_{d not in C_u} log(1 - f(a, d)),
    with f = sigmoid(logits) (Eq. 16), averaged over the logged impressions."""
    labels = tf.cast(clicked, logits.dtype)
    return _mean(tf.nn.sigmoid_cross_entropy_with_logits(labels, logits), weight)


def cosine(a, d, axis: int = -1):
    """cosine_similarity(a, d) along `axis` (0 when either vector is 0)."""
    return tf.reduce_sum(tf.math.l2_normalize(a, axis) * tf.math.l2_normalize(d, axis), axis)


def similarity_loss(a, d, weight):
    """Eq. 17: L_s = -sum_(a, d) cosine_similarity(a, d), a the action, d its most similar
    real item; averaged over transitions."""
    return -_mean(cosine(a, d), weight)


def anchor_loss(a, d_logged, weight):
    """The authors' code's supervised term (not in the paper): E[||a_t - d_t||^2 / k], the
    action pulled toward the embedding of the item the log shows at slot t."""
    return _mean(tf.reduce_mean(tf.square(a - tf.stop_gradient(d_logged)), -1), weight)


def l2_penalty(tables, weight: float):
    """weight * sum_k ||E_k||^2 over the embedding tables E_k: Keras's L2 regulariser, the one
    the baselines' --l2 puts on their tables."""
    regulariser = keras.regularizers.L2(weight)
    return tf.add_n([regulariser(t) for t in tables])


def total_loss(l_low, l_high, l_click, l_similarity, weights):
    """Eq. 18: L = lambda_l L_l + lambda_h L_h + lambda_c L_c + lambda_s L_s (paper 5:5:1:1)."""
    w_l, w_h, w_c, w_s = weights
    return w_l * l_low + w_h * l_high + w_c * l_click + w_s * l_similarity


def served_rank_loss(scores, negatives, clicked, weight, extra_scores=None,
                     extra_negatives=None):
    """Within-state ranking of the served score (ours; a listwise softmax, as a sampled-softmax
    retrieval loss): for each clicked slot t with at least one negative,

        L_rank = E_t[ -u_tt + log(exp(u_tt) + sum_{j in N_t} exp(u_tj)) ],

    u_tj = kappa cos(a_t, d_j) the served score of the list's item j in slot t's state, N_t the
    logged negatives of slot t (`negatives`). scores [B, S, S], negatives [B, S, S] bool,
    clicked and weight [B, S] -> scalar. The negatives are logged impressions of the same list,
    shown in the same request and context, never sampled candidates, whose cold ids and slot-0
    context would tell the model which item is the positive. `extra_scores` [B, S, K] with
    `extra_negatives` [B, S, K] bool add K more negatives per slot to N_t (the other lists'
    items of `served_batch_negatives`, re-encoded in slot t's context).
    """
    positive = tf.linalg.diag_part(scores)                                      # [B, S]
    masked = tf.where(negatives, scores, tf.fill(tf.shape(scores), -1e9))
    pieces, any_negative = [positive[..., None], masked], tf.reduce_any(negatives, -1)
    if extra_scores is not None:
        pieces.append(tf.where(extra_negatives, extra_scores,
                               tf.fill(tf.shape(extra_scores), -1e9)))
        any_negative |= tf.reduce_any(extra_negatives, -1)
    logits = tf.concat(pieces, axis=-1)
    per_slot = tf.reduce_logsumexp(logits, axis=-1) - positive
    has_negative = tf.cast(any_negative, per_slot.dtype)
    return _mean(per_slot, tf.cast(weight, per_slot.dtype) * tf.cast(clicked, per_slot.dtype)
                 * has_negative)


def distill_loss(student, teacher, allowed, weight, temperature: float = 1.0):
    """Listwise distillation of a ranking (ours; Hinton et al. 2015's soft targets, as
    ranking distillation does for recommenders, Tang & Wang, KDD 2018): over the allowed
    candidates j of each slot t,

        L = E_t[ -sum_j p_tj log q_tj ],  p_t = softmax_j(teacher_tj / T),
                                          q_t = softmax_j(student_tj),

    the teacher held fixed (no gradient). HRL-Rec uses it to teach the served cosine
    (student: kappa cos(a_t, d_j)) the ranking of Eq. 16's f (teacher: f(a_t, d_j)) over every
    candidate, sampled ones included, as serving ranks them. student, teacher [B, S, N],
    allowed [B, S, N] bool, weight [B, S] -> scalar; a slot with < 2 allowed candidates adds
    nothing.
    """
    fill = lambda x: tf.where(allowed, x, tf.fill(tf.shape(x), -1e9))  # noqa: E731
    p = tf.nn.softmax(fill(tf.stop_gradient(teacher) / temperature), axis=-1)
    log_q = tf.nn.log_softmax(fill(student), axis=-1)
    per_slot = -tf.reduce_sum(tf.where(allowed, p * log_q, tf.zeros_like(log_q)), axis=-1)
    several = tf.reduce_sum(tf.cast(allowed, per_slot.dtype), -1) >= 2
    return _mean(per_slot, tf.cast(weight, per_slot.dtype) * tf.cast(several, per_slot.dtype))


def uniformity_loss(x, weight, t: float = 2.0):
    """Uniformity of directions on the unit sphere (ours; DirectAU, Wang et al., KDD 2022, after
    Wang & Isola, ICML 2020): with x_i = v_i / ||v_i|| over the real rows i (weight w_i > 0),

        L_unif = log( sum_{i != j} w_i w_j exp(-t ||x_i - x_j||^2) / sum_{i != j} w_i w_j ),

    ||x_i - x_j||^2 = 2 - 2 cos(v_i, v_j). It is 0 when every vector points the same way and
    falls as they spread, so it counters the collapse of the actions (alignment) and of the
    item embeddings into one cone. x [..., d], weight [...] -> scalar (0 with < 2 real rows).
    """
    d = tf.shape(x)[-1]
    unit = tf.math.l2_normalize(tf.reshape(x, [-1, d]), -1)
    w = tf.reshape(tf.cast(weight, unit.dtype), [-1])
    sq = tf.maximum(2.0 - 2.0 * tf.matmul(unit, unit, transpose_b=True), 0.0)
    pair = w[:, None] * w[None, :] * (1.0 - tf.eye(tf.shape(w)[0], dtype=unit.dtype))
    total = tf.reduce_sum(pair)
    value = tf.math.log(tf.reduce_sum(pair * tf.exp(-t * sq)) / tf.maximum(total, 1e-12))
    return tf.where(total > 0, value, tf.zeros_like(value))


def direction_loss(a, target, weight):
    """-E[cos(a, target)] with the target held fixed: the actor objective that follows a
    critic's exact maximiser (`--actor_objective=critic_max`): for a critic that reads the
    action's direction and is linear in it, q = ReLU(c(s) + g(s) . a/||a||), the best
    direction is g(s)/||g(s)||."""
    return -_mean(cosine(a, tf.stop_gradient(target)), weight)
