"""The flat DDPG row of the paper's Table 3: one actor-critic agent picks each slot's item from
every channel.

Table 3 places "DDPG" between Double-Dueling DQN and "DDPG (hierarchical)" and reads it as
"Actor-Critic based models such as DDPG could help model optimization" and "the hierarchical RL
structure can decouple the channel selector and item recommender" (Sec. 4.5 (2d), (2e)); the
diversity and novelty rewards go "to the last two RL models" only (Sec. 4.5 (3)). So here
(docs/hrl_rec_design.md, interpretation 21) the flat DDPG is HRL-Rec's item recommender without
the channel selector:

- the state s_t is the HRA's item-level state (Sec. 3.3, field self-attention Eq. 1 and GRU
  Eq. 2) without the channel constraint e(c_t);
- the actor gives a virtual item a_t = tanh(W_a s_t + b_a) (Eq. 6), the critic
  q(s_t, a_t) = ReLU(w_c1 . s_t + w_c2 . a_t + b_c) (Eq. 8, with HRL-Rec's --critic_direction
  and --critic_form options);
- the item shown is the candidate of ANY channel most cosine-similar to a_t (Sec. 3.5 without
  the channel constraint; no channel quotas);
- the reward is the click, r_t = clicked_t, as for the DQN rows;
- it trains with HRL-Rec's DDPG machinery and settings: the double-Q target, critic_steps
  critic updates per actor update, the actor loss through a frozen critic, Eq. 14's beta and
  the similarity loss Eq. 17 (L_s belongs to the training of the actor-critic; L_c, the
  supervised click loss, is what the paper says "further improves" DDPG (hierarchical) into
  HRL-Rec, so neither DDPG row has it).
"""
from __future__ import annotations

import dataclasses
from typing import NamedTuple

import keras
import tensorflow as tf

from data.config_flags import help_field
from hrl_rec.agents import Agent
from hrl_rec.features import PACKAGE, ItemEncoder, embedding_tables
from hrl_rec.losses import cosine
from hrl_rec.model import candidate_items, window_of

TARGET_Q = ("ddpg", "double")


@dataclasses.dataclass(frozen=True)
class DDPGConfig:
    """Every setting of a flat DDPG run; each shared one mirrors HRLConfig (hrl_rec/config.py)
    and takes configs/quickstart.flags' value in configs/ddpg.flags ("all models share the same
    features and experimental settings", Sec. 4.3)."""
    max_seq_len: int = help_field(50, "m: impressed behaviours per state (Sec. 4.3: 50).")
    embedding_dim: int = help_field(32, "Field and item embedding size; also the action size "
                                    "(Sec. 4.3: 32).")
    hidden_dim: int = help_field(128, "State size d_h (Sec. 4.3: 128).")
    heads: int = help_field(4, "Heads of the field self-attention, Eq. 1 (Sec. 4.3: 4).")
    state_window: str = help_field("sliding", "sliding or prefix, as HRL-Rec's --state_window.")
    critic_direction: bool = help_field(False, "The critic reads a/||a||, as HRL-Rec's flag.")
    critic_form: str = help_field("additive", "additive (Eq. 8 as printed), bilinear or joint, "
                                  "as HRL-Rec's flag.")
    gamma: float = help_field(0.3, "Discount factor (Sec. 4.3: 0.3).")
    target_q: str = help_field("double", f"Critic target, one of {list(TARGET_Q)}: ddpg = "
                               "target actor and critic (Eq. 12 as written); double = the "
                               "online actor picks a', the target critic scores it (HRL-Rec's "
                               "default).")
    critic_steps: int = help_field(5, "Critic updates per actor update (Sec. 3.4: 5 to 30).")
    action_noise: float = help_field(0.01, "sigma of the Gaussian noise on the action in "
                                     "training (Sec. 3.4; authors' code: 0.01).")
    tau: float = help_field(0.1, "Soft target update rate (authors' code: 0.1).")
    target_update_period: int = help_field(30, "Train steps between target updates (authors' "
                                           "code: 30).")
    beta: float = help_field(1.0, "Actor weight within the agent's loss, Eq. 14 (Sec. 3.4: 1).")
    agent_loss_weight: float = help_field(5.0, "Weight of the agent's loss (Eq. 14), lambda_h "
                                          "of Eq. 18 (Sec. 3.4: 5).")
    similarity_loss_weight: float = help_field(1.0, "lambda_s of Eq. 18, the similarity loss "
                                               "Eq. 17 (Sec. 3.4: 1).")
    batch_size: int = help_field(256, "Lists per batch (Sec. 4.3: 256).")
    learning_rate: float = help_field(2e-4, "Adam learning rate (authors' code: 2e-4).")
    clip_norm: float = help_field(5.0, "Gradient clipping by global norm (authors' code: 5).")
    candidates_per_channel: int = help_field(20, "Offline candidates sampled per channel per "
                                             "list, besides the list's own items.")
    embedding_l2: float = help_field(0.0, "L2 weight on every embedding table.")


def validate(cfg: DDPGConfig) -> None:
    """Raises ValueError naming the flag when a setting is out of range."""
    checks = [
        (cfg.state_window in ("sliding", "prefix"), "state_window", "sliding or prefix"),
        (cfg.target_q in TARGET_Q, "target_q", f"one of {list(TARGET_Q)}"),
        (cfg.max_seq_len >= 1, "max_seq_len", ">= 1"),
        (cfg.embedding_dim % cfg.heads == 0, "embedding_dim", f"a multiple of --heads={cfg.heads}"),
        (0.0 <= cfg.gamma <= 1.0, "gamma", "in [0, 1]"),
        (cfg.critic_steps >= 1, "critic_steps", ">= 1"),
        (cfg.action_noise >= 0.0, "action_noise", ">= 0"),
        (0.0 < cfg.tau <= 1.0, "tau", "in (0, 1]"),
        (cfg.target_update_period >= 1, "target_update_period", ">= 1"),
        (cfg.batch_size >= 1, "batch_size", ">= 1"),
        (cfg.candidates_per_channel >= 1, "candidates_per_channel", ">= 1"),
    ]
    for name in ("beta", "agent_loss_weight", "similarity_loss_weight", "embedding_l2"):
        checks.append((getattr(cfg, name) >= 0.0, name, ">= 0"))
    for ok, name, expected in checks:
        if not ok:
            raise ValueError(f"--{name}={getattr(cfg, name)}: expected {expected}")


@keras.saving.register_keras_serializable(package=PACKAGE)
class FlatAgent(Agent):
    """The flat agent: item-level behaviour fields (the HRA's, Sec. 3.3) and no channel
    constraint. call(window) -> s [B, L - m + 1, d_h]."""

    level = "item"

    def call(self, window, per_slot: bool = False):
        return self.sequence_states(window, per_slot)


class FlatForward(NamedTuple):
    """One pass of the flat agent over a list batch (B lists, S slots, N candidates)."""
    s: tf.Tensor            # [B, S + 1, d_h]  states before each slot and after the last
    a: tf.Tensor            # [B, S, d]  actor outputs at slots 0..S-1 (+ noise if asked)
    logged: tf.Tensor       # [B, S, d]  embeddings of the logged items
    candidates: tf.Tensor   # [B, N, d]  the list's own items, then the sampled candidates


@keras.saving.register_keras_serializable(package=PACKAGE)
class FlatDDPG(keras.Model):
    """The flat DDPG network: the agent (state encoder, actor, critic) and HRL-Rec's item
    encoder. `FlatDDPG(batch)` -> cos(a_t, d_t) [B, S] of each logged item, the score it serves
    by. Example:

        net = FlatDDPG(spec, max_seq_len=20, state_window="prefix", critic_direction=True)
        fwd = net.forward(batch)        # s [B, S + 1, d_h], a [B, S, d], ...
    """

    def __init__(self, spec: dict, name: str | None = None, trainable: bool = True, dtype=None,
                 **agent_options):
        super().__init__(name=name, trainable=trainable, dtype=dtype)
        self.spec = dict(spec)
        self.agent = FlatAgent(spec, name="agent", **agent_options)
        self.options = dict(self.agent.options)
        self.items = ItemEncoder(spec, self.options["embedding_dim"], name="items")
        self.agent.build()
        self.items.build()
        self.built = True

    @property
    def max_seq_len(self) -> int:
        return self.options["max_seq_len"]

    @property
    def embedding_tables(self) -> list:
        return embedding_tables(self)

    @property
    def critic_variables(self) -> list:
        return [v for c in self.agent.critics for v in c.trainable_variables]

    @property
    def non_critic_variables(self) -> list:
        ids = {id(v) for v in self.critic_variables}
        return [v for v in self.trainable_variables if id(v) not in ids]

    def states(self, batch: dict) -> tf.Tensor:
        """s [B, S + 1, d_h]: the states before each slot and after the last (all a target
        pass needs)."""
        return self.agent(window_of(batch))

    def forward(self, batch: dict, noise: float = 0.0, seed=None) -> FlatForward:
        """The agent over a list batch; `noise` is the sigma of the Gaussian action noise and
        `seed` a stateless seed [2] for it."""
        m = self.max_seq_len
        s = self.states(batch)
        n_slots = tf.shape(batch["mask"])[1] - m
        cand = self.items(candidate_items(batch, m)[0])
        a = self.agent.actor(s[:, :-1])
        if noise > 0:
            seed = tf.zeros([2], tf.int32) if seed is None else seed
            a += noise * tf.random.stateless_normal(tf.shape(a), seed)
        return FlatForward(s, a, cand[:, :n_slots], cand)

    def call(self, batch):
        fwd = self.forward(batch)
        return cosine(fwd.a, fwd.logged)

    def get_config(self):
        return {**super().get_config(), "spec": self.spec, **self.options}

    def get_build_config(self):
        return None  # every weight is created in __init__


ARCHITECTURE = ("max_seq_len", "embedding_dim", "hidden_dim", "heads", "state_window",
                "critic_direction", "critic_form")


def build_network(spec: dict, cfg: DDPGConfig) -> FlatDDPG:
    return FlatDDPG(spec, **{k: getattr(cfg, k) for k in ARCHITECTURE})
