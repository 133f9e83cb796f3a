"""Eq. 1, 2, 3, 5, 16 and the feature helpers, with fixed weights and hand-computed numbers."""
import keras
import numpy as np
import pytest
import tensorflow as tf

from hrl_rec.agents import Actor, Critic
from hrl_rec.encoders import FieldSelfAttention, StateEncoder
from hrl_rec.features import BehaviourFields, ItemEncoder, recent_sum
from hrl_rec.model import ClickModel, ServedScore
from tests.hrl_rec.helpers import SPEC_DICT, list_batch


def test_actor_eq3_hand_computed():
    actor = Actor(2)
    actor.build((None, 2))
    actor.dense.kernel.assign([[1.0, 0.0], [2.0, -1.0]])
    actor.dense.bias.assign([0.5, 0.0])
    a = actor(tf.constant([[1.0, 1.0]]))
    # W s + b = (1*1 + 2*1 + 0.5, 0 - 1 + 0) = (3.5, -1)
    np.testing.assert_allclose(a.numpy(), [[np.tanh(3.5), np.tanh(-1.0)]], rtol=1e-6)


def test_critic_eq5_hand_computed_and_frozen_weights_get_no_gradient():
    critic = Critic()
    critic.build((None, 2), (None, 2))
    critic.w_state.assign([1.0, 2.0])
    critic.w_action.assign([0.5, -1.0])
    critic.bias.assign(0.1)
    s = tf.constant([[1.0, 1.0], [-1.0, -1.0]])
    a = tf.constant([[2.0, 1.0], [0.0, 0.0]])
    # (1 + 2) + (1 - 1) + 0.1 = 3.1 ; -3 + 0 + 0.1 < 0 -> ReLU 0
    np.testing.assert_allclose(critic(s, a).numpy(), [3.1, 0.0], rtol=1e-6)
    with tf.GradientTape() as tape:
        tape.watch(a)
        q = tf.reduce_sum(critic(s, a, frozen=True))
    grads = tape.gradient(q, critic.trainable_variables + [a])
    assert all(g is None for g in grads[:3])
    np.testing.assert_allclose(grads[3].numpy(), [[0.5, -1.0], [0.0, 0.0]])


def test_field_self_attention_eq1_hand_computed():
    """One head, W_Q = W_K = 0 -> uniform attention; W_V = I, W_R = 0; W_O = ones."""
    layer = FieldSelfAttention(n_fields=2, hidden_dim=1, heads=1)
    layer.build((None, 2, 2))
    qkvr = np.zeros((2, 8), np.float32)
    qkvr[:, 4:6] = np.eye(2)
    layer.qkvr.assign(qkvr)
    layer.out.assign(np.ones((4, 1), np.float32))
    layer.out_bias.assign([-1.0])
    x = tf.constant([[[1.0, 2.0], [3.0, -4.0]]])
    # every field -> mean of values (2, -1) -> ReLU (2, 0); concat (2, 0, 2, 0); sum 4 - 1 = 3
    np.testing.assert_allclose(layer.interact(x).numpy(), [[[2.0, 0.0], [2.0, 0.0]]], rtol=1e-6)
    np.testing.assert_allclose(layer(x).numpy(), [[3.0]], rtol=1e-6)


def _attention_reference(x, qkvr, out, bias, heads):
    n, d = x.shape[-2:]
    dk = d // heads
    q, k, v, r = np.split(x @ qkvr, 4, axis=-1)
    merged = np.zeros_like(x)
    for h in range(heads):
        sl = slice(h * dk, (h + 1) * dk)
        scores = q[..., sl] @ np.swapaxes(k[..., sl], -1, -2) / np.sqrt(dk)
        p = np.exp(scores - scores.max(-1, keepdims=True))
        p /= p.sum(-1, keepdims=True)
        merged[..., sl] = p @ v[..., sl]
    e = np.maximum(merged + r, 0)
    return np.maximum(e.reshape(*x.shape[:-2], n * d) @ out + bias, 0)


def test_field_self_attention_matches_numpy_reference_and_ablation_is_dense():
    keras.utils.set_random_seed(1)
    x = np.random.default_rng(0).normal(size=(3, 2, 5, 4)).astype(np.float32)
    layer = FieldSelfAttention(n_fields=5, hidden_dim=6, heads=2)
    y = layer(tf.constant(x)).numpy()
    ref = _attention_reference(x, layer.qkvr.numpy(), layer.out.numpy(), layer.out_bias.numpy(), 2)
    np.testing.assert_allclose(y, ref, rtol=1e-4, atol=1e-5)
    dense = FieldSelfAttention(n_fields=5, hidden_dim=6, heads=2, attention=False)
    y = dense(tf.constant(x)).numpy()
    np.testing.assert_allclose(y, np.maximum(x.reshape(3, 2, 20) @ dense.out.numpy(), 0), rtol=1e-5)
    assert len(dense.weights) == 2


def test_field_self_attention_rejects_indivisible_heads():
    with pytest.raises(ValueError, match="not a multiple of heads=3"):
        FieldSelfAttention(n_fields=2, hidden_dim=4, heads=3).build((None, 2, 4))


def _f(b=2, length=7, d=3, seed=0):
    return tf.constant(np.random.default_rng(seed).normal(size=(b, length, d)), tf.float32)


def test_state_encoder_average_hand_computed():
    enc = StateEncoder(hidden_dim=1, max_seq_len=2, gru=False, window="sliding")
    f = tf.constant([[[1.0], [3.0], [5.0], [7.0]]])
    mask = tf.constant([[0, 1, 1, 1]])
    h0 = tf.constant([[2.0]])
    # windows [0:2] -> (2 + 3) / 2, [1:3] -> (2 + 3 + 5) / 3, [2:4] -> (2 + 5 + 7) / 3
    np.testing.assert_allclose(enc(f, mask, h0).numpy()[0, :, 0], [2.5, 10 / 3, 14 / 3], rtol=1e-6)
    prefix = StateEncoder(hidden_dim=1, max_seq_len=2, gru=False, window="prefix")
    # prefix: all impressions so far: (2 + 3) / 2, (2 + 3 + 5) / 3, (2 + 3 + 5 + 7) / 4
    np.testing.assert_allclose(prefix(f, mask, h0).numpy()[0, :, 0], [2.5, 10 / 3, 17 / 4],
                               rtol=1e-6)


def test_state_encoder_gru_eq2_sliding_and_prefix_against_plain_gru_runs():
    keras.utils.set_random_seed(0)
    m, d = 3, 3
    f, h0 = _f(d=d), tf.constant(np.random.default_rng(1).normal(size=(2, d)), tf.float32)
    mask = tf.constant([[0, 1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 1, 0, 0]])
    sliding = StateEncoder(hidden_dim=d, max_seq_len=m, window="sliding")
    states = sliding(f, mask, h0).numpy()
    assert states.shape == (2, 5, d)
    gru = sliding.cell
    for t in range(5):
        one = gru(f[:, t:t + m], mask=tf.cast(mask[:, t:t + m], bool), initial_state=h0).numpy()
        np.testing.assert_allclose(states[:, t], one, rtol=1e-5, atol=1e-6)
    prefix = StateEncoder(hidden_dim=d, max_seq_len=m, window="prefix")
    prefix.build()
    prefix.cell.set_weights(gru.get_weights())
    out = prefix(f, mask, h0).numpy()
    for t in range(5):
        run = gru(f[:, :t + m], mask=tf.cast(mask[:, :t + m], bool), initial_state=h0).numpy()
        np.testing.assert_allclose(out[:, t], run, rtol=1e-5, atol=1e-6)
    # the first window of a new user holds only padding before position 1: the same state as
    # a GRU started at h0 over positions 1..m-1 (padding leaves the state unchanged)
    empty = sliding(f, tf.zeros_like(mask), h0).numpy()
    np.testing.assert_allclose(empty, np.repeat(h0.numpy()[:, None], 5, 1), rtol=1e-6)


@pytest.mark.parametrize("hoisted", [True, False])
def test_prefix_gru_hand_computed_with_a_masked_step_both_implementations(hoisted, monkeypatch):
    monkeypatch.setattr(StateEncoder, "hoisted_gru", hoisted)
    enc = StateEncoder(hidden_dim=1, max_seq_len=1, window="prefix")
    enc.build()
    # kernel W = (W_z, W_r, W_h), recurrent U, biases (b input, c recurrent), d_h = 1
    enc.cell.set_weights([np.array([[0.5, -1.0, 2.0]], np.float32),
                          np.array([[1.0, 0.5, -0.5]], np.float32),
                          np.array([[0.1, 0.0, -0.2], [0.0, 0.3, 0.1]], np.float32)])
    f = tf.constant([[[1.0], [4.0], [-1.0]]])
    mask = tf.constant([[1, 0, 1]])
    h0 = tf.constant([[0.2]])
    sig = lambda v: 1 / (1 + np.exp(-v))  # noqa: E731

    def gru(x, h):
        z = sig(0.5 * x + 0.1 + 1.0 * h + 0.0)
        r = sig(-1.0 * x + 0.0 + 0.5 * h + 0.3)
        cand = np.tanh(2.0 * x - 0.2 + r * (-0.5 * h + 0.1))
        return z * h + (1 - z) * cand

    h1 = gru(1.0, 0.2)
    h3 = gru(-1.0, h1)                    # position 1 is masked: h stays h1
    np.testing.assert_allclose(enc(f, mask, h0).numpy()[0, :, 0], [h1, h1, h3], rtol=1e-5)


def test_state_encoder_rejects_unknown_window():
    with pytest.raises(ValueError, match="window must be 'sliding' or 'prefix'"):
        StateEncoder(window="full")


def test_click_model_eq16_hand_computed():
    click = ClickModel()
    click.build((None, 2), (None, 1))
    click.w.assign([1.0, -2.0, 0.5])
    click.b.assign(0.25)
    a, d = tf.constant([[0.5, 0.25]]), tf.constant([[2.0]])
    # 0.5 - 0.5 + 1.0 + 0.25 = 1.25
    np.testing.assert_allclose(click(a, d).numpy(), [1.25], rtol=1e-6)
    np.testing.assert_allclose(click.probability(a, d).numpy(), [1 / (1 + np.exp(-1.25))],
                               rtol=1e-6)


def test_recent_sum_reads_only_earlier_positions():
    x = tf.constant([[[1.0], [2.0], [4.0], [8.0]]])
    np.testing.assert_allclose(recent_sum(x, 2).numpy()[0, :, 0], [0, 1, 3, 6])


def test_behaviour_fields_shapes_and_cumulative_channel_counts():
    batch = list_batch()
    window = {k: batch[k] for k in ("item_id", "channel", "slot", "item_fields", "tags", "context",
                                    "feedback", "mask", "user_id", "user_fields")}
    low = BehaviourFields(SPEC_DICT, "channel", embedding_dim=4, span=10)
    high = BehaviourFields(SPEC_DICT, "item", embedding_dim=4, span=10)
    fl, pl = low(window)
    fh, ph = high(window)
    # channel: user id + 2 user + 2 context + slot, feedback, channel, cumulative = 9 fields
    assert fl.shape == (3, 14, 9, 4) and low.n_fields == 9 and pl.shape == (3, 12)
    # item: + item id, item field, tags
    assert fh.shape == (3, 14, 12, 4) and high.n_fields == 12
    with pytest.raises(ValueError, match="level must be one of"):
        BehaviourFields(SPEC_DICT, "user")


def test_item_encoder_formula():
    enc = ItemEncoder(SPEC_DICT, embedding_dim=2)
    enc.build()
    items = {"item_id": tf.constant([3]), "channel": tf.constant([1]),
             "item_fields": tf.constant([[2]]), "tags": tf.constant([[4, 6, 0]])}
    e = lambda t, i: t.embeddings.numpy()[i]  # noqa: E731
    expected = np.tanh(e(enc.id_table, 3) + e(enc.channel_table, 1) + e(enc.field_tables[0], 2)
                       + (e(enc.tag_table, 4) + e(enc.tag_table, 6)) / 2)
    np.testing.assert_allclose(enc(items).numpy()[0], expected, rtol=1e-6)


def test_critic_direction_and_bilinear_options_hand_computed():
    critic = Critic(direction=True, form="bilinear")
    critic.build((None, 1), (None, 2))
    critic.w_state.assign([1.0])
    critic.w_action.assign([1.0, 0.0])
    critic.bias.assign(0.0)
    critic.w_state_action.assign([[0.0, 2.0]])
    s = tf.constant([[0.5]])
    # a = (3, 4) -> direction (0.6, 0.8); action weight (1, 0) + 0.5 * (0, 2) = (1, 1)
    # q = 0.5 + 0.6 + 0.8 = 1.9, and the same for any positive multiple of a
    np.testing.assert_allclose(critic(s, tf.constant([[3.0, 4.0]])).numpy(), [1.9], rtol=1e-6)
    np.testing.assert_allclose(critic(s, tf.constant([[0.3, 0.4]])).numpy(), [1.9], rtol=1e-6)
    np.testing.assert_allclose(critic.action_weight(s).numpy(), [[1.0, 1.0]])
    assert Critic.from_config(critic.get_config()).form == "bilinear"


def test_bilinear_critic_starts_with_a_state_dependent_best_action():
    critic = Critic(form="bilinear")
    critic.build((None, 3), (None, 2))
    assert np.abs(critic.w_state_action.numpy()).sum() > 0
    g = critic.action_weight(tf.constant([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])).numpy()
    assert not np.allclose(g[0], g[1])


def test_additive_critic_eq5_hand_computed_and_one_best_action_for_all_states():
    critic = Critic()
    critic.build((None, 1), (None, 2))
    critic.w_state.assign([2.0])
    critic.w_action.assign([1.0, -1.0])
    critic.bias.assign(0.5)
    # ReLU(2 * 1 + (0.5 - 0.25) + 0.5) = 2.75; a state of -2: ReLU(-4 + 0.25 + 0.5) = 0
    q = critic(tf.constant([[1.0], [-2.0]]), tf.constant([[0.5, 0.25], [0.5, 0.25]]))
    np.testing.assert_allclose(q.numpy(), [2.75, 0.0], rtol=1e-6)
    np.testing.assert_allclose(critic.action_weight(tf.constant([[1.0], [-2.0]])).numpy(),
                               [[1.0, -1.0], [1.0, -1.0]])


def test_joint_critic_hand_computed():
    critic = Critic(form="joint", hidden_dim=2)
    critic.build((None, 1), (None, 2))
    critic.w_state.assign([1.0])
    critic.w_action.assign([0.0, 1.0])
    critic.bias.assign(0.0)
    critic.w_hidden_state.assign([[1.0, -1.0]])
    critic.w_hidden_action.assign([[2.0, 0.0], [0.0, 1.0]])
    critic.b_hidden.assign([0.0, 0.5])
    critic.w_out.assign([1.0, 2.0])
    s, a = tf.constant([[1.0]]), tf.constant([[1.0, -1.0]])
    # additive part 1 + (-1) = 0; hidden ReLU(1 + 2, -1 - 1 + 0.5) = (3, 0); q = 0 + 3 = 3
    np.testing.assert_allclose(critic(s, a).numpy(), [3.0], rtol=1e-6)
    # the hidden layer couples state and action: for s = -1 and a = (0, 1) the additive part
    # is -1 + 1 = 0, hidden ReLU(-1 + 0, 1 + 1 + 0.5) = (0, 2.5), q = 2 * 2.5 = 5
    np.testing.assert_allclose(critic(-s, tf.constant([[0.0, 1.0]])).numpy(), [5.0], rtol=1e-6)
    with pytest.raises(ValueError, match="no closed form"):
        critic.action_weight(s)
    assert Critic.from_config(critic.get_config()).hidden_dim == 2
    with pytest.raises(ValueError, match="critic form 'quadratic'"):
        Critic(form="quadratic")
    with pytest.raises(ValueError, match="the joint critic needs hidden_dim >= 1"):
        Critic(form="joint")


def test_served_score_hand_computed():
    head = ServedScore()
    head.build((None, 2), (None, 2))
    np.testing.assert_allclose(np.exp(head.log_kappa.numpy()), 5.0, rtol=1e-6)
    head.log_kappa.assign(np.log(2.0))
    head.w.assign([1.0, 0.5])
    head.b.assign(-1.0)
    a, d = tf.constant([[3.0, 4.0]]), tf.constant([[0.0, 1.0]])
    # kappa cos = 2 * 0.8 = 1.6; w . a + b = 3 + 2 - 1 = 4
    np.testing.assert_allclose(head.cosine_logit(a, d).numpy(), [1.6], rtol=1e-6)
    np.testing.assert_allclose(head(a, d).numpy(), [5.6], rtol=1e-6)


def test_served_score_with_a_slot_bias_hand_computed():
    head = ServedScore(bias="slot", slots=3)
    head.build((None, 2), (None, 2))
    head.log_kappa.assign(np.log(2.0))
    head.b_slot.assign([0.0, -1.0, -2.5])
    a, d = tf.constant([[3.0, 4.0], [3.0, 4.0]]), tf.constant([[0.0, 1.0], [0.0, 1.0]])
    # kappa cos = 1.6, plus b_k of slots 1 and 2
    np.testing.assert_allclose(head(a, d, tf.constant([1, 2])).numpy(), [0.6, -0.9], rtol=1e-6)
    assert ServedScore.from_config(head.get_config()).slots == 3
    with pytest.raises(ValueError, match="needs the slot of each item"):
        head(a, d)
    with pytest.raises(ValueError, match="served score bias 'user'"):
        ServedScore(bias="user")
    with pytest.raises(ValueError, match=r"ServedScore\(bias='slot'\) needs slots >= 1"):
        ServedScore(bias="slot")


def test_click_model_interaction_option_hand_computed():
    click = ClickModel(interaction=True)
    click.build((None, 2), (None, 1))
    click.w.assign([1.0, -2.0, 0.5])
    click.b.assign(0.25)
    click.w_ad.assign([[2.0], [0.0]])
    # 1.25 as in Eq. 16, plus a^T W d = 0.5 * 2 * 2 = 2
    logit = click(tf.constant([[0.5, 0.25]]), tf.constant([[2.0]]))
    np.testing.assert_allclose(logit.numpy(), [3.25], rtol=1e-6)
    assert ClickModel.from_config(click.get_config()).interaction


def test_click_model_position_bias_option_hand_computed():
    click = ClickModel(position_slots=3)
    click.build((None, 2), (None, 1))
    click.w.assign([1.0, -2.0, 0.5])
    click.b.assign(0.25)
    click.b_slot.assign([0.0, -1.0, -3.0])
    a, d = tf.constant([[0.5, 0.25], [0.5, 0.25]]), tf.constant([[2.0], [2.0]])
    # 1.25 as in Eq. 16, plus b_k of the slot each item was shown at (1 and 2)
    logit = click(a, d, tf.constant([1, 2]))
    np.testing.assert_allclose(logit.numpy(), [0.25, -1.75], rtol=1e-6)
    assert ClickModel.from_config(click.get_config()).position_slots == 3
    with pytest.raises(ValueError, match="needs the slot of each item"):
        click(a, d)


def test_item_encoder_adds_the_impression_context_when_given():
    enc = ItemEncoder(SPEC_DICT, embedding_dim=2)
    enc.build()
    items = {"item_id": tf.constant([3]), "channel": tf.constant([1]),
             "item_fields": tf.constant([[2]]), "tags": tf.constant([[4, 0, 0]])}
    plain = np.arctanh(enc(items).numpy()[0])
    shown = np.arctanh(enc({**items, "context": tf.constant([[9, 3]])}).numpy()[0])
    expected = enc.context_tables[0].embeddings.numpy()[9] + \
        enc.context_tables[1].embeddings.numpy()[3]
    np.testing.assert_allclose(shown - plain, expected, rtol=1e-4, atol=1e-6)
