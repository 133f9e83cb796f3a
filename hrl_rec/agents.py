"""The two agents: ChannelSelector (LRA, Sec. 3.2) and ItemRecommender (HRA, Sec. 3.3).

Each agent is one state encoder shared by its actor and its critic(s), as in the paper's Fig. 2:
behaviour fields -> field self-attention (Eq. 1) -> GRU (Eq. 2) -> s_t -> actor a_t, critic q_t.
Online and target copies are two instances of the same class (see `hrl_rec.model`).
"""
from __future__ import annotations

import keras
import tensorflow as tf

from hrl_rec.encoders import FieldSelfAttention, StateEncoder
from hrl_rec.config import CRITIC_FORMS
from hrl_rec.features import PACKAGE, BehaviourFields, map_positions


@keras.saving.register_keras_serializable(package=PACKAGE)
class Actor(keras.layers.Layer):
    """Eq. 3 / Eq. 6: a_t = tanh(W_a s_t + b_a). [..., d_s] -> [..., d_a]."""

    def __init__(self, action_dim: int, **kwargs):
        super().__init__(**kwargs)
        self.action_dim = action_dim
        self.dense = keras.layers.Dense(action_dim, activation="tanh", name="dense")

    def build(self, input_shape):
        self.dense.build(input_shape)

    def call(self, s):
        return self.dense(s)

    def get_config(self):
        return {**super().get_config(), "action_dim": self.action_dim}


@keras.saving.register_keras_serializable(package=PACKAGE)
class Critic(keras.layers.Layer):
    """Eq. 5 / Eq. 8 and two state-dependent forms. s [..., d_s], a [..., d_a] -> q [...].

    form="additive" (Eq. 5/8 as printed):  q = ReLU(w_c1 . s + w_c2 . a + b_c)
    form="bilinear":                       q = ReLU(w_c1 . s + (w_c2 + W_sa^T s) . a + b_c)
    form="joint" (the authors' code):      q = ReLU(w_c1 . s + w_c2 . a
                                                    + w_o . ReLU(W_hs^T s + W_ha^T a + b_h) + b_c)

    The additive form's dQ/da = w_c2 is the same for every state, so its best action is one
    direction for all users. "bilinear" makes that direction w_c2 + W_sa^T s (W_sa starts
    non-zero, glorot-uniform, so the state term acts from the first step); "joint" lets the
    action join the state before a nonlinear layer of `hidden_dim` units, as the authors'
    channel selector concatenates the action with the state's inputs before its nonlinear
    layers (ours is one ReLU layer over [s; a], not their attention and GRU).
    `direction=True`: the critic reads a / ||a|| (actions act only through cosine similarity,
    Sec. 3.2-3.3; the literal form lets the actor raise Q by growing ||a|| until tanh
    saturates). `frozen=True` stops the gradient into the critic's weights (the actor loss,
    Eq. 10/13, must move the actor, not the critic).
    """

    def __init__(self, direction: bool = False, form: str = "additive", hidden_dim: int = 0,
                 **kwargs):
        super().__init__(**kwargs)
        if form not in CRITIC_FORMS:
            raise ValueError(f"critic form {form!r}: expected one of {CRITIC_FORMS}")
        if form == "joint" and hidden_dim < 1:
            raise ValueError("the joint critic needs hidden_dim >= 1")
        self.direction, self.form, self.hidden_dim = direction, form, hidden_dim

    def build(self, state_shape, action_shape=None):
        d_s = int(state_shape[-1])
        d_a = int(action_shape[-1]) if action_shape is not None else d_s
        self.w_state = self.add_weight(name="w_state", shape=(d_s,), initializer="glorot_uniform")
        self.w_action = self.add_weight(name="w_action", shape=(d_a,),
                                        initializer="glorot_uniform")
        self.bias = self.add_weight(name="bias", shape=(), initializer="zeros")
        if self.form == "bilinear":
            self.w_state_action = self.add_weight(name="w_state_action", shape=(d_s, d_a),
                                                  initializer="glorot_uniform")
        elif self.form == "joint":
            h = self.hidden_dim
            self.w_hidden_state = self.add_weight(name="w_hidden_state", shape=(d_s, h),
                                                  initializer="glorot_uniform")
            self.w_hidden_action = self.add_weight(name="w_hidden_action", shape=(d_a, h),
                                                   initializer="glorot_uniform")
            self.b_hidden = self.add_weight(name="b_hidden", shape=(h,), initializer="zeros")
            self.w_out = self.add_weight(name="w_out", shape=(h,), initializer="glorot_uniform")

    def _weights(self, frozen: bool) -> dict:
        names = ["w_state", "w_action", "bias"] + {
            "additive": [], "bilinear": ["w_state_action"],
            "joint": ["w_hidden_state", "w_hidden_action", "b_hidden", "w_out"]}[self.form]
        return {n: tf.stop_gradient(getattr(self, n)) if frozen else getattr(self, n)
                for n in names}

    def action_weight(self, s, frozen: bool = False):
        """dq/da before the ReLU for the additive and bilinear forms: w_c2 (+ W_sa^T s), [..., d_a].
        The best action direction of a `direction` critic is its normalisation."""
        if self.form == "joint":
            raise ValueError("the joint critic's best action has no closed form")
        w = self._weights(frozen)
        if self.form == "bilinear":
            return w["w_action"] + tf.tensordot(s, w["w_state_action"], 1)
        return w["w_action"] + tf.zeros_like(s[..., :1])

    def call(self, s, a, frozen: bool = False):
        w = self._weights(frozen)
        if self.direction:
            a = tf.math.l2_normalize(a, axis=-1)
        pre = tf.tensordot(s, w["w_state"], 1) + w["bias"]
        if self.form == "bilinear":
            pre += tf.reduce_sum(a * (w["w_action"] + tf.tensordot(s, w["w_state_action"], 1)),
                                 -1)
        else:
            pre += tf.tensordot(a, w["w_action"], 1)
        if self.form == "joint":
            hidden = tf.nn.relu(tf.tensordot(s, w["w_hidden_state"], 1)
                                + tf.tensordot(a, w["w_hidden_action"], 1) + w["b_hidden"])
            pre += tf.tensordot(hidden, w["w_out"], 1)
        return tf.nn.relu(pre)

    def get_config(self):
        return {**super().get_config(), "direction": self.direction, "form": self.form,
                "hidden_dim": self.hidden_dim}


class Agent(keras.layers.Layer):
    """One agent: behaviour fields of `level` -> field self-attention (Eq. 1) -> GRU (Eq. 2)
    -> s_t, read by an actor (Eq. 3 / 6) and `n_critics` critics (Eq. 5 / 8). Subclasses set
    `level` ("channel" or "item") and say what `call` returns."""

    level = ""

    def __init__(self, spec: dict, max_seq_len: int = 50, embedding_dim: int = 32,
                 hidden_dim: int = 128, heads: int = 4, field_self_attention: bool = True,
                 state_encoder_gru: bool = True, state_window: str = "sliding",
                 n_critics: int = 1, critic_direction: bool = False,
                 critic_form: str = "additive", **kwargs):
        super().__init__(**kwargs)
        self.spec = dict(spec)
        self.options = dict(max_seq_len=max_seq_len, embedding_dim=embedding_dim,
                            hidden_dim=hidden_dim, heads=heads,
                            field_self_attention=field_self_attention,
                            state_encoder_gru=state_encoder_gru, state_window=state_window,
                            n_critics=n_critics, critic_direction=critic_direction,
                            critic_form=critic_form)
        self.fields = BehaviourFields(spec, self.level, embedding_dim, span=spec["list_size"],
                                      name="fields")
        self.attention = FieldSelfAttention(self.fields.n_fields, hidden_dim, heads,
                                            attention=field_self_attention, name="attention")
        self.initial_state = keras.layers.Dense(hidden_dim, activation="tanh",
                                                name="initial_state")
        self.encoder = StateEncoder(hidden_dim, max_seq_len, gru=state_encoder_gru,
                                    window=state_window, name="encoder")
        self.actor = Actor(embedding_dim, name="actor")
        self.critics = [Critic(critic_direction, critic_form, hidden_dim, name=f"critic_{k}")
                        for k in range(n_critics)]

    @property
    def state_dim(self) -> int:
        return self.options["hidden_dim"]

    def build(self, input_shape=None):
        d = self.options["embedding_dim"]
        self.fields.build()
        self.attention.build((None, self.fields.n_fields, d))
        self.initial_state.build((None, (1 + len(self.spec["user_field_names"])) * d))
        self.encoder.build()
        self.actor.build((None, self.state_dim))
        for critic in self.critics:
            critic.build((None, self.state_dim), (None, d))

    def behaviours(self, window: dict):
        """-> (f [B, L, d_h] per position, h_0 [B, d_h])."""
        fields, profile = self.fields(window)
        return self.attention(fields), self.initial_state(profile)

    def sequence_states(self, window: dict, per_slot: bool = False) -> tf.Tensor:
        """[B, L - m + 1, d_h]: the GRU state of each window of m positions (Eq. 2).

        per_slot=True is the straightforward reference for the sliding window: one state at a
        time, each from its own m behaviours' raw fields (the field encodings are not shared
        between the overlapping windows). Same values, about S times the field-attention work.
        """
        if per_slot:
            return self._per_slot_states(window)
        f, h0 = self.behaviours(window)
        return self.encoder(f, window["mask"], h0)

    def _per_slot_states(self, window: dict) -> tf.Tensor:
        if self.options["state_window"] != "sliding":
            raise ValueError("per-slot states are the reference of state_window='sliding'")
        m, span = self.options["max_seq_len"], self.fields.span
        # `span` earlier positions feed each position's cumulative fields; zero padding adds
        # nothing to them, so window t's fields equal those of the whole-list computation.
        padded = map_positions(window, lambda v: tf.pad(
            v, [[0, 0], [span, 0]] + [[0, 0]] * (len(v.shape) - 2)))

        def state(t):
            part = map_positions(padded, lambda v: v[:, t:t + span + m])
            fields, profile = self.fields(part)
            f = self.attention(fields[:, span:])
            return self.encoder(f, part["mask"][:, span:], self.initial_state(profile))[:, 0]

        n = tf.shape(window["mask"])[1] - m + 1
        states = tf.map_fn(state, tf.range(n), fn_output_signature=tf.float32)
        return tf.transpose(states, [1, 0, 2])

    def q(self, s, a, k: int = 0, frozen: bool = False):
        return self.critics[k](s, a, frozen=frozen)

    def get_config(self):
        return {**super().get_config(), "spec": self.spec, **self.options}


@keras.saving.register_keras_serializable(package=PACKAGE)
class ChannelSelector(Agent):
    """LRA (Sec. 3.2): s^l_t from channel-level behaviour fields; actor Eq. 3; critic Eq. 5.

    call(window) -> s^l [B, L - m + 1, d_h]. The channel c_t is the channel of the candidate
    item most cosine-similar to a^l_t (see `hrl_rec.policy`).
    """

    level = "channel"

    def call(self, window, per_slot: bool = False):
        return self.sequence_states(window, per_slot)


@keras.saving.register_keras_serializable(package=PACKAGE)
class ItemRecommender(Agent):
    """HRA (Sec. 3.3): s^h_t = [GRU state of item-level behaviours ; e(c_t)], where c_t is the
    channel constraint given by the LRA; actor Eq. 6; critic Eq. 8.

    call(window, constraint [B, L - m + 1]) -> s^h [B, L - m + 1, d_h + d]. The item d_t is the
    candidate of channel c_t most cosine-similar to a^h_t.
    """

    level = "item"

    def __init__(self, spec: dict, **kwargs):
        super().__init__(spec, **kwargs)
        self.constraint_table = keras.layers.Embedding(
            len(spec["channel_names"]), self.options["embedding_dim"],
            embeddings_initializer="uniform", name="constraint")

    @property
    def state_dim(self) -> int:
        return self.options["hidden_dim"] + self.options["embedding_dim"]

    def build(self, input_shape=None):
        self.constraint_table.build((None,))
        super().build(input_shape)

    def with_constraint(self, states, constraint):
        return tf.concat([states, self.constraint_table(constraint)], axis=-1)

    def call(self, window, constraint, per_slot: bool = False):
        return self.with_constraint(self.sequence_states(window, per_slot), constraint)
