"""The DQN rows of the paper's Table 3: one flat agent picks each slot's item from every channel.

Table 3 compares HRL-Rec with "DQN (LR)", "DQN (GRU)" and "Double-Dueling-DQN" and reads them as
"GRU outperforms LR as the state encoder in RL models" and "Double and Dueling strategies are
effective in DQN" (Sec. 4.5). The paper gives no more; here (docs/hrl_rec_design.md, interpretation 19):

- the state s_t is HRL-Rec's item-level state (the HRA's behaviour fields, Sec. 3.3) without a
  channel constraint, encoded as
      encoder="gru": field self-attention (Eq. 1) and a GRU (Eq. 2), HRL-Rec's encoder;
      encoder="lr":  f_i = W [fields of behaviour i] + b (linear) and s_t = their average with
                     the profile term h_0 (Table 4's "w/o GRU" pooling): a linear state;
- the action is an item d of the candidates (all channels), embedded as HRL-Rec's items;
- Q(s, d) = V(s) + A(s, d), with V(s) = w_v . s + b_v and A(s, d) = d . (W_a s + u_a): the
  item's value depends on the state through W_a (a Q linear in [s; d] would rank items the same
  for every user);
  dueling=True (Wang et al. 2016, Eq. 9): Q(s, d) = V(s) + A(s, d) - mean_{d' in C_t} A(s, d'),
  the mean over the candidates C_t slot t may still pick.
"""
from __future__ import annotations

import dataclasses

import keras
import tensorflow as tf

from data.config_flags import help_field
from hrl_rec.encoders import FieldSelfAttention, StateEncoder
from hrl_rec.features import PACKAGE, BehaviourFields, ItemEncoder, embedding_tables
from hrl_rec.learner import allowed_candidates
from hrl_rec.model import candidate_items, window_of

ENCODERS = ("lr", "gru")
# The paper's three DQN rows: (encoder, double Q, dueling).
VARIANTS = {"dqn_lr": ("lr", False, False), "dqn_gru": ("gru", False, False),
            "dd_dqn": ("gru", True, True)}


@dataclasses.dataclass(frozen=True)
class DQNConfig:
    """Every setting of a DQN run; the shared ones mirror HRLConfig (hrl_rec/config.py) and take
    configs/quickstart.flags' values in configs/dqn.flags ("all models share the same features
    and experimental settings", Sec. 4.3)."""
    variant: str = help_field("dqn_gru", f"Table 3's row: one of {list(VARIANTS)} (encoder, "
                              "double Q, dueling).")
    max_seq_len: int = help_field(50, "m: impressed behaviours per state (Sec. 4.3: 50).")
    embedding_dim: int = help_field(32, "Field and item embedding size (Sec. 4.3: 32).")
    hidden_dim: int = help_field(128, "State size d_h (Sec. 4.3: 128).")
    heads: int = help_field(4, "Heads of the field self-attention (Sec. 4.3: 4; GRU encoder).")
    state_window: str = help_field("sliding", "sliding or prefix, as HRL-Rec's --state_window.")
    gamma: float = help_field(0.3, "Discount factor (Sec. 4.3: 0.3, as HRL-Rec).")
    learning_rate: float = help_field(2e-4, "Adam learning rate.")
    batch_size: int = help_field(256, "Lists per batch (Sec. 4.3: 256).")
    candidates_per_channel: int = help_field(20, "Offline candidates sampled per channel per "
                                             "list, besides the list's own items.")
    tau: float = help_field(0.1, "Soft target update rate (1 = a periodic copy).")
    target_update_period: int = help_field(30, "Train steps between target updates.")
    clip_norm: float = help_field(5.0, "Gradient clipping by global norm.")
    huber_delta: float = help_field(1.0, "The TD loss is Huber with this delta (DQN, Mnih et "
                                    "al. 2015, clips the TD error at 1).")
    embedding_l2: float = help_field(0.0, "L2 weight on every embedding table.")

    @property
    def encoder(self) -> str:
        return VARIANTS[self.variant][0]

    @property
    def double_q(self) -> bool:
        return VARIANTS[self.variant][1]

    @property
    def dueling(self) -> bool:
        return VARIANTS[self.variant][2]


def validate(cfg: DQNConfig) -> None:
    """Raises ValueError naming the flag when a setting is out of range."""
    checks = [
        (cfg.variant in VARIANTS, "variant", f"one of {list(VARIANTS)}"),
        (cfg.state_window in ("sliding", "prefix"), "state_window", "sliding or prefix"),
        (cfg.max_seq_len >= 1, "max_seq_len", ">= 1"),
        (cfg.embedding_dim % cfg.heads == 0, "embedding_dim", f"a multiple of --heads={cfg.heads}"),
        (0.0 <= cfg.gamma <= 1.0, "gamma", "in [0, 1]"),
        (0.0 < cfg.tau <= 1.0, "tau", "in (0, 1]"),
        (cfg.target_update_period >= 1, "target_update_period", ">= 1"),
        (cfg.batch_size >= 1, "batch_size", ">= 1"),
        (cfg.candidates_per_channel >= 1, "candidates_per_channel", ">= 1"),
        (cfg.huber_delta > 0, "huber_delta", "> 0"),
        (cfg.embedding_l2 >= 0, "embedding_l2", ">= 0"),
    ]
    for ok, name, expected in checks:
        if not ok:
            raise ValueError(f"--{name}={getattr(cfg, name)}: expected {expected}")


@keras.saving.register_keras_serializable(package=PACKAGE)
class QHead(keras.layers.Layer):
    """Q(s, d) = V(s) + A(s, d) [- mean_{d' in C} A(s, d') with dueling=True].

    V(s) = w_v . s + b_v; A(s, d) = d . (W_a s + u_a).
    call(s [B, T, d_s], d [B, N, k], allowed [B, T, N] bool) -> Q [B, T, N] (any value where
    not allowed). Example: QHead(dueling=True)(s, d, allowed) with s [4, 11, 64], d [4, 90, 16].
    """

    def __init__(self, dueling: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.dueling = dueling

    def build(self, state_shape, item_shape=None):
        d_s = int(state_shape[-1])
        k = int((item_shape or state_shape)[-1])
        self.w_v = self.add_weight(name="w_v", shape=(d_s,), initializer="glorot_uniform")
        self.b_v = self.add_weight(name="b_v", shape=(), initializer="zeros")
        self.w_a = self.add_weight(name="w_a", shape=(d_s, k), initializer="glorot_uniform")
        self.u_a = self.add_weight(name="u_a", shape=(k,), initializer="zeros")

    def call(self, s, d, allowed):
        value = tf.tensordot(s, self.w_v, 1) + self.b_v                        # [B, T]
        advantage = tf.einsum("btk,bnk->btn", tf.tensordot(s, self.w_a, 1) + self.u_a, d)
        if self.dueling:
            w = tf.cast(allowed, advantage.dtype)
            mean = tf.reduce_sum(advantage * w, -1) / tf.maximum(tf.reduce_sum(w, -1), 1.0)
            advantage -= mean[..., None]
        return value[..., None] + advantage

    def get_config(self):
        return {**super().get_config(), "dueling": self.dueling}


@keras.saving.register_keras_serializable(package=PACKAGE)
class QNetwork(keras.Model):
    """A DQN agent's network: the state encoder, HRL-Rec's item encoder and the Q head.

    states(window) -> s [B, L - m + 1, d_h] (one per window of m positions, as HRL-Rec's
    agents); q(s, d, allowed) -> [B, T, N]. Example:

        net = QNetwork(spec, encoder="gru", dueling=True, max_seq_len=20)
        s = net.states(window)                       # [B, S + 1, d_h] for a list batch
    """

    def __init__(self, spec: dict, encoder: str = "gru", dueling: bool = False,
                 max_seq_len: int = 50, embedding_dim: int = 32, hidden_dim: int = 128,
                 heads: int = 4, state_window: str = "sliding", name: str | None = None,
                 trainable: bool = True, dtype=None):
        super().__init__(name=name, trainable=trainable, dtype=dtype)
        if encoder not in ENCODERS:
            raise ValueError(f"encoder must be one of {ENCODERS}, got {encoder!r}")
        self.spec = dict(spec)
        self.options = dict(encoder=encoder, dueling=dueling, max_seq_len=max_seq_len,
                            embedding_dim=embedding_dim, hidden_dim=hidden_dim, heads=heads,
                            state_window=state_window)
        gru = encoder == "gru"
        self.fields = BehaviourFields(spec, "item", embedding_dim, span=spec["list_size"],
                                      name="fields")
        n = self.fields.n_fields
        self.behaviour = (FieldSelfAttention(n, hidden_dim, heads, name="attention") if gru
                          else keras.layers.Dense(hidden_dim, name="linear"))
        self.initial_state = keras.layers.Dense(hidden_dim, activation="tanh",
                                                name="initial_state")
        self.encoder = StateEncoder(hidden_dim, max_seq_len, gru=gru, window=state_window,
                                    name="encoder")
        self.items = ItemEncoder(spec, embedding_dim, name="items")
        self.head = QHead(dueling, name="q")
        self.fields.build()
        self.behaviour.build((None, n, embedding_dim) if gru else (None, n * embedding_dim))
        self.initial_state.build((None, (1 + len(spec["user_field_names"])) * embedding_dim))
        self.encoder.build()
        self.items.build()
        self.head.build((None, hidden_dim), (None, embedding_dim))
        self.built = True

    @property
    def max_seq_len(self) -> int:
        return self.options["max_seq_len"]

    @property
    def embedding_tables(self) -> list:
        return embedding_tables(self)

    def behaviours(self, window: dict):
        """-> (f [B, L, d_h] per position, h_0 [B, d_h])."""
        fields, profile = self.fields(window)
        if self.options["encoder"] == "lr":
            shape = tf.concat([tf.shape(fields)[:2], [fields.shape[2] * fields.shape[3]]], 0)
            f = self.behaviour(tf.reshape(fields, shape))
        else:
            f = self.behaviour(fields)
        return f, self.initial_state(profile)

    def states(self, window: dict) -> tf.Tensor:
        f, h0 = self.behaviours(window)
        return self.encoder(f, window["mask"], h0)

    def q(self, s, d, allowed):
        return self.head(s, d, allowed)

    def slot_q(self, batch: dict):
        """Over a list batch (data.pipeline.list_dataset, S slots, N candidates) ->
        (s [B, S + 1, d_h] the states before each slot and after the last, d [B, N, k] the
        candidates (the list's own items first), allowed [B, S, N] what slot t may pick,
        q [B, S, N])."""
        m = self.max_seq_len
        s = self.states(window_of(batch))
        items, _, _ = candidate_items(batch, m)
        d = self.items(items)
        allowed, _ = allowed_candidates(batch, m)
        return s, d, allowed, self.q(s[:, :-1], d, allowed)

    def call(self, batch):
        """Q(s_t, d_t) of each logged item [B, S] (slot t's own item is candidate t)."""
        return logged_q(self.slot_q(batch)[3])

    def get_config(self):
        return {**super().get_config(), "spec": self.spec, **self.options}

    def get_build_config(self):
        return None  # every weight is created in __init__


def logged_q(q):
    """Q of slot t's logged item, which is candidate t: [B, S, N] -> [B, S]."""
    return tf.linalg.diag_part(q[:, :, :tf.shape(q)[1]])


def build_network(spec: dict, cfg: DQNConfig) -> QNetwork:
    return QNetwork(spec, encoder=cfg.encoder, dueling=cfg.dueling, max_seq_len=cfg.max_seq_len,
                    embedding_dim=cfg.embedding_dim, hidden_dim=cfg.hidden_dim, heads=cfg.heads,
                    state_window=cfg.state_window)
