"""HRL-Rec as one Keras model: both agents, the shared item encoder and the click model (Eq. 16).

`HRLRec.forward(batch)` runs both agents over a list batch (data.pipeline.list_dataset) and
returns every tensor the losses need; `HRLRec(batch)` returns f(a, d) for each logged slot, the
click probability used for offline AUC (Sec. 4.4). The target network is a second instance made
by `target_copy`.
"""
from __future__ import annotations

from typing import NamedTuple

import keras
import numpy as np
import tensorflow as tf

from hrl_rec.agents import ChannelSelector, ItemRecommender
from hrl_rec.config import SERVED_BIASES
from hrl_rec.distribute import replica_normal
from hrl_rec.features import PACKAGE, ItemEncoder, embedding_tables
from hrl_rec.losses import cosine

WINDOW_KEYS = ("item_id", "channel", "slot", "item_fields", "tags", "context", "feedback", "mask",
               "user_id", "user_fields")
ITEM_KEYS = ("item_id", "channel", "item_fields", "tags", "context")


@keras.saving.register_keras_serializable(package=PACKAGE)
class ClickModel(keras.layers.Layer):
    """Eq. 16: f(a, d) = sigmoid(w_f . concat(a, d) + b_f), with a = concat(a^l, a^h).

    call(a [..., d_a], d [..., d], slot [...] int, optional) -> the logit [...] (the sigmoid is
    applied by the loss, for numerical stability; `probability` applies it).

    `interaction=True` adds a^T W_f d, a relation between the virtual action and the real item
    ("L_c aims to build implicit relations between the virtual actions and their corresponding
    real clicked items"); the literal Eq. 16 is additive in a and d, so it cannot say which
    item suits which state.

    `position_slots=S` (> 0) adds b_k for the slot k the item is shown at (the examination
    term of position-biased click models: P(click) = P(examined at k) P(attractive)); logged
    clicks fall steeply with the slot, and Eq. 16 otherwise sees the slot only as far as the
    state encoder infers it from the behaviours before it. Needs `slot`.
    """

    def __init__(self, interaction: bool = False, position_slots: int = 0, **kwargs):
        super().__init__(**kwargs)
        self.interaction = interaction
        self.position_slots = position_slots

    def build(self, action_shape, item_shape=None):
        d_a, d_i = int(action_shape[-1]), int((item_shape or action_shape)[-1])
        self.w = self.add_weight(name="w", shape=(d_a + d_i,), initializer="glorot_uniform")
        self.b = self.add_weight(name="b", shape=(), initializer="zeros")
        if self.interaction:
            self.w_ad = self.add_weight(name="w_ad", shape=(d_a, d_i), initializer="zeros")
        if self.position_slots:
            self.b_slot = self.add_weight(name="b_slot", shape=(self.position_slots,),
                                          initializer="zeros")

    def call(self, a, d, slot=None):
        logit = tf.tensordot(tf.concat([a, d], axis=-1), self.w, 1) + self.b
        if self.interaction:
            logit += tf.reduce_sum(tf.tensordot(a, self.w_ad, 1) * d, axis=-1)
        if self.position_slots:
            if slot is None:
                raise ValueError("ClickModel(position_slots > 0) needs the slot of each item")
            logit += tf.gather(self.b_slot, slot)
        return logit

    def get_config(self):
        return {**super().get_config(), "interaction": self.interaction,
                "position_slots": self.position_slots}

    def probability(self, a, d, slot=None):
        return tf.sigmoid(self(a, d, slot))

SERVED_SCALE_INIT = 5.0  # kappa at the start: cosines in [-1, 1] span logits of +-5


@keras.saving.register_keras_serializable(package=PACKAGE)
class ServedScore(keras.layers.Layer):
    """The click logit of the score an agent serves by (ours; the paper has no such head):

        bias="action":  u(a, d) = kappa * cos(a, d) + w_u . a + b_u
        bias="slot":    u(a, d) = kappa * cos(a, d) + b_k    (k: the slot the item is shown at)

    kappa = exp(log_kappa) > 0. Within one state (a fixed) u ranks candidates exactly as the
    cosine does, so a loss on u supervises the serving rule itself (HAC's behaviour loss, Liu
    et al., WWW 2023, on a dot-product scorer). The action term absorbs what the state alone
    says about the click (its slot, the user's click propensity), which a cosine need then not
    carry; the slot term absorbs only the position, so the cosine must also carry the user's
    propensity. a [..., d_a], d [..., d], slot [...] int (bias="slot") -> [...];
    `cosine_logit` gives kappa * cos alone (the ranking loss's scores).
    """

    def __init__(self, bias: str = "action", slots: int = 0, **kwargs):
        super().__init__(**kwargs)
        if bias not in SERVED_BIASES:
            raise ValueError(f"served score bias {bias!r}: expected one of {SERVED_BIASES}")
        if bias == "slot" and slots < 1:
            raise ValueError("ServedScore(bias='slot') needs slots >= 1")
        self.bias, self.slots = bias, slots

    def build(self, action_shape, item_shape=None):
        d_a = int(action_shape[-1])
        self.log_kappa = self.add_weight(
            name="log_kappa", shape=(),
            initializer=keras.initializers.Constant(float(np.log(SERVED_SCALE_INIT))))
        if self.bias == "slot":
            self.b_slot = self.add_weight(name="b_slot", shape=(self.slots,),
                                          initializer="zeros")
        else:
            self.w = self.add_weight(name="w", shape=(d_a,), initializer="zeros")
            self.b = self.add_weight(name="b", shape=(), initializer="zeros")

    def cosine_logit(self, a, d):
        return tf.exp(self.log_kappa) * cosine(a, d)

    def call(self, a, d, slot=None):
        if self.bias == "slot":
            if slot is None:
                raise ValueError("ServedScore(bias='slot') needs the slot of each item")
            return self.cosine_logit(a, d) + tf.gather(self.b_slot, slot)
        return self.cosine_logit(a, d) + tf.tensordot(a, self.w, 1) + self.b

    def get_config(self):
        return {**super().get_config(), "bias": self.bias, "slots": self.slots}


class Forward(NamedTuple):
    """What one pass of both agents over a list batch gives (B lists, S slots, N candidates)."""
    s_low: tf.Tensor        # [B, S + 1, d_s^l]  states before each slot and after the last
    s_high: tf.Tensor       # [B, S + 1, d_s^h]  (constraint: the logged channel of each slot)
    a_low: tf.Tensor        # [B, S, d]  actor outputs at slots 0..S-1 (+ noise if asked)
    a_high: tf.Tensor       # [B, S, d]
    logged: tf.Tensor       # [B, S, d]  item embeddings of the logged items
    candidates: tf.Tensor   # [B, N, d]  the list's own items, then the sampled candidates
                            #            (own items only in a pass without actions)
    slot: tf.Tensor         # [B, S]  the slot each logged item was shown at


def window_of(batch: dict) -> dict:
    return {k: batch[k] for k in WINDOW_KEYS}


def slot_items(batch: dict, m: int) -> dict:
    """The logged items of the list's slots: [B, S, ...]."""
    return {k: batch[k][:, m:] for k in ITEM_KEYS}


def candidate_items(batch: dict, m: int) -> tuple[dict, tf.Tensor, tf.Tensor]:
    """(items [B, N, ...], channel [B, N], valid [B, N]): the list's items then the sampled ones.

    Offline logs have no matching stage, so candidates are the list's own items plus
    `candidates_per_channel` items sampled per channel (data.pipeline.CandidateSampler), with
    the context of slot 0. A sampled item that repeats an earlier candidate is not valid (an
    item is one candidate).
    """
    own = slot_items(batch, m)
    valid = [batch["mask"][:, m:] > 0]
    items = {k: [own[k]] for k in ITEM_KEYS}
    if "cand_item_id" in batch:
        shape = tf.shape(batch["cand_item_id"])
        b, c, k = shape[0], shape[1], shape[2]
        items["item_id"].append(tf.reshape(batch["cand_item_id"], [b, c * k]))
        items["channel"].append(tf.reshape(tf.tile(tf.range(c, dtype=batch["channel"].dtype)[
            None, :, None], [b, 1, k]), [b, c * k]))
        for key in ("item_fields", "tags"):
            x = batch[f"cand_{key}"]
            items[key].append(tf.reshape(x, [b, c * k, x.shape[-1]]))
        # sampled items have no logged context: they are seen as if shown at slot 0
        items["context"].append(tf.repeat(own["context"][:, :1], c * k, axis=1))
        valid.append(tf.ones([b, c * k], tf.bool))
    items = {k: tf.concat(v, axis=1) for k, v in items.items()}
    valid = tf.concat(valid, axis=1)
    ids = tf.where(valid, items["item_id"], -1 - items["item_id"])
    n = tf.shape(ids)[1]
    earlier = tf.range(n)[None, :] < tf.range(n)[:, None]                 # [N, N]: j < i
    repeat = tf.reduce_any(tf.equal(ids[:, :, None], ids[:, None, :]) & earlier[None], axis=2)
    return items, items["channel"], valid & ~repeat


@keras.saving.register_keras_serializable(package=PACKAGE)
class HRLRec(keras.Model):
    """The channel selector (LRA), the item recommender (HRA), the item encoder and Eq. 16.

    `agent_options` are the `HRLConfig` fields the agents' architecture depends on
    (max_seq_len, embedding_dim, hidden_dim, heads, field_self_attention, state_encoder_gru,
    state_window, critic_direction, critic_form) plus n_critics (2 for the twin-critic
    target); both agents get the same ones. Example:

        model = HRLRec(spec, max_seq_len=50)
        p = model(batch)      # [B, S] click probabilities f(a_t, d_t) of the logged items
    """

    def __init__(self, spec: dict, click_interaction: bool = False,
                 click_position_bias: bool = False, served_bias: str = "action",
                 name: str | None = None,
                 trainable: bool = True, dtype=None, **agent_options):
        super().__init__(name=name, trainable=trainable, dtype=dtype)
        self.spec = dict(spec)
        self.lra = ChannelSelector(spec, name="lra", **agent_options)
        self.hra = ItemRecommender(spec, name="hra", **agent_options)
        self.options = {**self.lra.options, "click_interaction": click_interaction,
                        "click_position_bias": click_position_bias, "served_bias": served_bias}
        embedding_dim = self.options["embedding_dim"]
        self.items = ItemEncoder(spec, embedding_dim, name="items")
        self.click = ClickModel(click_interaction,
                                spec["list_size"] if click_position_bias else 0, name="click")
        self.lra.build()
        self.hra.build()
        self.items.build()
        self.click.build((None, 2 * embedding_dim), (None, embedding_dim))
        # the served scores of the LRA (a^l with an item) and the HRA (a^h with an item)
        self.served_low = ServedScore(served_bias, spec["list_size"], name="served_low")
        self.served_high = ServedScore(served_bias, spec["list_size"], name="served_high")
        for head in (self.served_low, self.served_high):
            head.build((None, embedding_dim), (None, embedding_dim))
        self.built = True

    @property
    def max_seq_len(self) -> int:
        return self.options["max_seq_len"]

    @property
    def embedding_tables(self) -> list:
        """Every embedding table of both agents and the item encoder (for --embedding_l2)."""
        return embedding_tables(self)

    @property
    def critic_variables(self) -> list:
        return [v for c in self.lra.critics + self.hra.critics for v in c.trainable_variables]

    @property
    def non_critic_variables(self) -> list:
        ids = {id(v) for v in self.critic_variables}
        return [v for v in self.trainable_variables if id(v) not in ids]

    def forward(self, batch: dict, noise: float = 0.0, seed=None,
                with_actions: bool = True, per_slot: bool = False) -> Forward:
        """Both agents over a list batch. `noise` is the sigma of the Gaussian action noise
        (Sec. 3.4); `seed` a stateless seed [2] for it. Without actions (a target pass) only
        the logged items are embedded, not the sampled candidates. `per_slot`: the states by
        the straightforward per-slot reference (`Agent.sequence_states`)."""
        m = self.max_seq_len
        window = window_of(batch)
        s_low = self.lra(window, per_slot=per_slot)
        s = tf.shape(batch["mask"])[1] - m
        constraint = tf.pad(batch["channel"][:, m:], [[0, 0], [0, 1]])  # after the list: unused
        s_high = self.hra(window, constraint[:, :s + 1], per_slot=per_slot)
        if with_actions:
            items, _, _ = candidate_items(batch, m)
        else:
            items = slot_items(batch, m)
        cand = self.items(items)
        logged = cand[:, :s]
        a_low = a_high = None
        if with_actions:
            a_low = self.lra.actor(s_low[:, :-1])
            a_high = self.hra.actor(s_high[:, :-1])
            if noise > 0:
                seed = tf.zeros([2], tf.int32) if seed is None else seed
                a_low += noise * replica_normal(tf.shape(a_low), seed)
                a_high += noise * replica_normal(tf.shape(a_high), seed + [0, 1])
        return Forward(s_low, s_high, a_low, a_high, logged, cand, batch["slot"][:, m:])

    def click_logits(self, fwd: Forward) -> tf.Tensor:
        """Eq. 16 at each logged slot: [B, S]."""
        return self.click(tf.concat([fwd.a_low, fwd.a_high], -1), fwd.logged, fwd.slot)

    def call(self, batch):
        return tf.sigmoid(self.click_logits(self.forward(batch)))

    def get_config(self):
        return {**super().get_config(), "spec": self.spec, **self.options}

    def get_build_config(self):
        return None  # every weight is created in __init__


def target_copy(model: keras.Model) -> keras.Model:
    """A second network of the same class and architecture with (initially) the same weights:
    HRL-Rec's or a DQN's (baselines/dqn.py)."""
    target = type(model).from_config(model.get_config())
    for t, v in zip(target.weights, model.weights, strict=True):
        t.assign(v)
    return target


def soft_update(target: HRLRec, online: HRLRec, tau: float) -> None:
    """theta' <- tau * theta + (1 - tau) * theta' for every weight (tau = 1: a copy)."""
    for t, v in zip(target.weights, online.weights, strict=True):
        t.assign(tau * v + (1.0 - tau) * t)
