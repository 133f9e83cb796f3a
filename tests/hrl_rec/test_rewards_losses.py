"""Eq. 7, 9-18 with hand-computed numbers."""
import numpy as np
import pytest
import tensorflow as tf

from hrl_rec import losses, rewards


def test_low_level_reward_is_the_slot_click():
    np.testing.assert_array_equal(rewards.low_level_reward(tf.constant([[1, 0, 1]])).numpy(),
                                  [[1.0, 0.0, 1.0]])


def test_diversity_counts_new_deduplicated_tags():
    tags = tf.constant([[[1, 2, 0], [2, 3, 3], [1, 2, 3], [4, 0, 0]]])
    # slot 0: {1, 2} -> 2; slot 1: 3 new (once), 2 seen -> 1; slot 2: none new; slot 3: 4 -> 1
    np.testing.assert_array_equal(rewards.diversity(tags).numpy(), [[2, 1, 0, 1]])


def test_components_scale_dwell_and_pass_novelty():
    r = rewards.components(tf.constant([[1, 0]]), tf.constant([[90.0, 0.0]]),
                           tf.constant([[[1, 0, 0], [1, 2, 0]]]), tf.constant([[2, 0]]), 60.0)
    np.testing.assert_allclose(r.numpy(), [[[1, 1.5, 1, 2], [0, 0, 1, 0]]])


def test_high_level_reward_eq7_power_and_linear():
    r = tf.constant([[[1.0, 4.0, 2.0, 0.0], [0.0, 0.0, 1.0, 3.0]]])
    channel = tf.constant([[0, 1]])
    weights = [[1.0, 0.5, 1.0, 1.0], [2.0, 1.0, 2.0, 0.5]]
    # slot 0, channel 0: 1^1 + 4^0.5 + 2^1 + 0 = 5; slot 1, channel 1: 0 + 0 + 1^2 + 3^0.5
    power = rewards.high_level_reward(r, channel, weights, [0, 0, 0, 0], "power")
    np.testing.assert_allclose(power.numpy(), [[5.0, 1 + np.sqrt(3)]], rtol=1e-6)
    # with b = (1, 0, 0, 1): slot 0: 2^1 + 2 + 2 + 1^1 = 7
    biased = rewards.high_level_reward(r, channel, weights, [1, 0, 0, 1], "power")
    np.testing.assert_allclose(biased.numpy()[0, 0], 7.0, rtol=1e-6)
    linear = rewards.high_level_reward(r, channel, weights, [0, 0, 0, 0], "linear")
    # slot 0: 1 + 2 + 2 + 0 = 5; slot 1: 0 + 0 + 2 + 1.5 = 3.5
    np.testing.assert_allclose(linear.numpy(), [[5.0, 3.5]], rtol=1e-6)
    with pytest.raises(ValueError, match="reward form"):
        rewards.high_level_reward(r, channel, weights, [0, 0, 0, 0], "log")


def test_td_target_eq9_and_critic_loss():
    y = losses.td_target(tf.constant([1.0, 1.0]), tf.constant([2.0, 2.0]), tf.constant([0.0, 1.0]),
                         0.3)
    np.testing.assert_allclose(y.numpy(), [1.6, 1.0], rtol=1e-6)
    q = tf.constant([1.0, 3.0, 9.0])
    target = tf.constant([1.6, 1.0, 0.0])
    # (0.6^2 + 2^2) / 2, the third transition is padding
    np.testing.assert_allclose(losses.critic_loss(q, target, tf.constant([1.0, 1.0, 0.0])).numpy(),
                               (0.36 + 4.0) / 2, rtol=1e-6)


def test_actor_and_agent_losses_eq10_11():
    actor = losses.actor_loss(tf.constant([1.0, 3.0]), tf.constant([1.0, 1.0]))
    assert float(actor) == pytest.approx(-2.0)
    assert float(losses.agent_loss(tf.constant(0.5), actor, beta=0.5)) == pytest.approx(-0.5)


def test_click_loss_eq15():
    logits = tf.constant([0.0, np.log(3.0)], tf.float32)  # p = 0.5, 0.75
    loss = losses.click_loss(logits, tf.constant([1, 0]), tf.constant([1.0, 1.0]))
    assert float(loss) == pytest.approx((-np.log(0.5) - np.log(0.25)) / 2, rel=1e-6)


def test_similarity_loss_eq17():
    a = tf.constant([[1.0, 0.0], [0.0, 2.0]])
    d = tf.constant([[1.0, 1.0], [0.0, -1.0]])
    # cos = 1/sqrt(2), -1
    loss = losses.similarity_loss(a, d, tf.constant([1.0, 1.0]))
    assert float(loss) == pytest.approx(-(1 / np.sqrt(2) - 1) / 2, rel=1e-6)


def test_total_loss_eq18():
    assert float(losses.total_loss(1.0, 2.0, 3.0, 4.0, (5, 5, 1, 1))) == pytest.approx(22.0)


def test_l2_penalty_sums_squares_of_every_table():
    tables = [tf.constant([[1.0, -2.0]]), tf.constant([[0.5], [3.0]])]
    # 0.1 * (1 + 4 + 0.25 + 9)
    assert float(losses.l2_penalty(tables, 0.1)) == pytest.approx(1.425, rel=1e-6)


def test_served_rank_loss_hand_computed():
    # one list of 3 slots; slot 0 clicked with negatives {1, 2}; slot 1 clicked with only the
    # negative 2; slot 2 not clicked (no term). Scores u[t, j]:
    u = tf.constant([[[2.0, 1.0, 0.0], [9.0, 1.0, 3.0], [5.0, 5.0, 5.0]]])
    neg = tf.constant([[[False, True, True], [False, False, True], [True, True, False]]])
    clicked = tf.constant([[1, 1, 0]])
    loss = losses.served_rank_loss(u, neg, clicked, tf.constant([[1.0, 1.0, 1.0]]))
    slot0 = -2.0 + np.log(np.exp(2.0) + np.exp(1.0) + np.exp(0.0))
    slot1 = -1.0 + np.log(np.exp(1.0) + np.exp(3.0))
    assert float(loss) == pytest.approx((slot0 + slot1) / 2, rel=1e-5)
    # a clicked slot with no negative adds nothing
    none = tf.zeros_like(neg)
    assert float(losses.served_rank_loss(u, none, clicked, tf.ones([1, 3]))) == 0.0
    # extra negatives join the softmax; a slot whose only negatives are extra ones counts too
    extra = tf.constant([[[4.0, -1.0], [0.5, 2.0], [7.0, 7.0]]])
    extra_neg = tf.constant([[[True, False], [False, True], [True, True]]])
    loss = losses.served_rank_loss(u, none, clicked, tf.ones([1, 3]), extra, extra_neg)
    slot0 = -2.0 + np.log(np.exp(2.0) + np.exp(4.0))
    slot1 = -1.0 + np.log(np.exp(1.0) + np.exp(2.0))
    assert float(loss) == pytest.approx((slot0 + slot1) / 2, rel=1e-5)
    loss = losses.served_rank_loss(u, neg, clicked, tf.ones([1, 3]), extra, extra_neg)
    slot0 = -2.0 + np.log(np.exp(2.0) + np.exp(1.0) + np.exp(0.0) + np.exp(4.0))
    slot1 = -1.0 + np.log(np.exp(1.0) + np.exp(3.0) + np.exp(2.0))
    assert float(loss) == pytest.approx((slot0 + slot1) / 2, rel=1e-5)


def test_distill_loss_hand_computed():
    # one list, 2 slots, 3 candidates. Slot 0 allows all three, slot 1 only candidates 0 and 2.
    student = tf.constant([[[1.0, 0.0, -1.0], [2.0, 5.0, 0.0]]])
    teacher = tf.constant([[[0.0, 2.0, 0.0], [1.0, 9.0, -1.0]]])
    allowed = tf.constant([[[True, True, True], [True, False, True]]])
    weight = tf.constant([[1.0, 1.0]])

    def ce(t, s):
        p = np.exp(t) / np.exp(t).sum()
        return -(p * (s - np.log(np.exp(s).sum()))).sum()

    want = (ce(np.array([0.0, 2.0, 0.0]), np.array([1.0, 0.0, -1.0]))
            + ce(np.array([1.0, -1.0]), np.array([2.0, 0.0]))) / 2
    assert float(losses.distill_loss(student, teacher, allowed, weight)) == pytest.approx(
        want, rel=1e-5)
    # the temperature divides the teacher's logits; a slot with one allowed candidate is skipped
    one = tf.constant([[[True, True, True], [False, False, True]]])
    want = ce(np.array([0.0, 1.0, 0.0]), np.array([1.0, 0.0, -1.0]))
    assert float(losses.distill_loss(student, teacher, one, weight, temperature=2.0)) == \
        pytest.approx(want, rel=1e-5)
    # it is minimised by the teacher's own ranking: student = teacher gives the entropy
    p = np.exp([0.0, 2.0, 0.0]) / np.exp([0.0, 2.0, 0.0]).sum()
    assert float(losses.distill_loss(teacher[:, :1], teacher[:, :1], allowed[:, :1],
                                     weight[:, :1])) == pytest.approx(-(p * np.log(p)).sum(),
                                                                      rel=1e-5)


def test_uniformity_loss_hand_computed():
    # three real rows in 2-D (the third padded out) and a padding row: x0 = (1, 0), x1 = (0, 2)
    # (unit (0, 1)), x2 = (-3, 0) (unit (-1, 0)). Squared distances: |x0-x1|^2 = 2,
    # |x0-x2|^2 = 4, |x1-x2|^2 = 2; six ordered pairs, each distance twice.
    x = tf.constant([[[1.0, 0.0], [0.0, 2.0]], [[-3.0, 0.0], [5.0, 5.0]]])
    weight = tf.constant([[1.0, 1.0], [1.0, 0.0]])
    expected = np.log((2 * np.exp(-4.0) + 2 * np.exp(-8.0) + 2 * np.exp(-4.0)) / 6)
    assert float(losses.uniformity_loss(x, weight)) == pytest.approx(expected, rel=1e-5)
    # t scales the potential: t = 1 gives log((4 e^-2 + 2 e^-4) / 6)
    assert float(losses.uniformity_loss(x, weight, t=1.0)) == pytest.approx(
        np.log((4 * np.exp(-2.0) + 2 * np.exp(-4.0)) / 6), rel=1e-5)
    # every vector the same way: the maximum, 0; fewer than two real rows: 0
    same = tf.constant([[[1.0, 1.0], [2.0, 2.0], [0.5, 0.5]]])
    assert float(losses.uniformity_loss(same, tf.ones([1, 3]))) == pytest.approx(0.0, abs=1e-6)
    assert float(losses.uniformity_loss(x, tf.constant([[1.0, 0.0], [0.0, 0.0]]))) == 0.0


def test_direction_loss_follows_the_critic_maximiser():
    a = tf.constant([[1.0, 0.0], [1.0, 1.0]])
    g = tf.constant([[0.0, 3.0], [2.0, 2.0]])
    # cos = 0, 1
    assert float(losses.direction_loss(a, g, tf.constant([1.0, 1.0]))) == pytest.approx(-0.5)
    with tf.GradientTape() as tape:
        tape.watch(g)
        loss = losses.direction_loss(a, g, tf.constant([1.0, 1.0]))
    assert tape.gradient(loss, g) is None
