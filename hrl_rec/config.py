"""Every hyper-parameter of HRL-Rec, with its source. Each field is also a flag of hrl_rec.train.

Sources: the paper (Sec. 3-4.3), the authors' public TF1 channel selector (modriczhang/HRL-Rec,
"authors' code"), or our choice where neither says (docs/hrl_rec_design.md explains each choice).
`configs/paper.flags` sets the paper's values explicitly; defaults here equal them.
"""
from __future__ import annotations

import dataclasses

from data.config_flags import help_field

TARGET_Q = ("ddpg", "double", "twin", "logged")
REWARD_FORMS = ("power", "linear")
STATE_WINDOWS = ("sliding", "prefix")
# how the HRA serves an item (hrl_rec/policy.py): the nearest item by cosine (Sec. 3.5), the
# one of highest f (Eq. 16), or Wolpertinger: the k nearest by cosine, then Q or f chooses
ITEM_SCORES = ("cosine", "click", "wolpertinger_q", "wolpertinger_f")
CRITIC_FORMS = ("additive", "bilinear", "joint")
ACTOR_OBJECTIVES = ("critic", "critic_max")
SIMILARITY_TARGETS = ("nearest", "clicked")
SERVED_BIASES = ("action", "slot")  # hrl_rec.model.ServedScore's state term


@dataclasses.dataclass(frozen=True)
class HRLConfig:
    # --- sizes (Sec. 4.3) ---
    max_seq_len: int = help_field(50, "m: impressed behaviours per state (Sec. 4.3: 50).")
    embedding_dim: int = help_field(32, "Field and item/channel embedding size; also the action "
                                    "size (Sec. 4.3: 32).")
    hidden_dim: int = help_field(128, "d_h: aggregated behaviour feature f_i and GRU state size "
                                 "(Sec. 4.3: 128).")
    heads: int = help_field(4, "Heads of the field self-attention, Eq. 1 (Sec. 4.3: 4).")
    # --- ablations (Table 4) ---
    field_self_attention: bool = help_field(True, "Eq. 1 field self-attention; false = a fully "
                                            "connected layer over the concatenated fields.")
    state_encoder_gru: bool = help_field(True, "Eq. 2 GRU state encoder; false = average pooling "
                                         "of the m behaviour features.")
    state_window: str = help_field("sliding", "sliding: each slot's state is a GRU run over "
                                   "exactly its m behaviours (Eq. 2); prefix: one GRU run over "
                                   "the m + S window, slot t reads step m + t (faster, sees "
                                   "up to t more behaviours).")
    per_slot_states: bool = help_field(
        False, "The straightforward reference (sliding window only): each slot's state from its "
        "own m behaviours' raw fields, one slot at a time, nothing shared between the "
        "overlapping windows. Same values as sliding, for speed comparisons (benchmarks/"
        "train_speed.py).")
    critic_direction: bool = help_field(
        False, "The critics read the action's direction a/||a|| (actions act only through "
        "cosine similarity); false = Eq. 5/8 literally, on the raw action.")
    critic_form: str = help_field(
        "additive", "additive = Eq. 5/8 as printed, ReLU(w_c1 . s + w_c2 . a + b) (its best "
        "action is one direction for every state); bilinear = (w_c2 + W s) . a with W "
        "non-zero from the start; joint = the action joins the state before a ReLU layer of "
        "d_h units (the authors' code puts it before its encoder's nonlinear layers).")
    click_interaction: bool = help_field(
        False, "Add a^T W d to Eq. 16's logit (a relation between action and item); false = the "
        "literal additive f(a, d) = sigmoid(w . [a; d] + b).")
    click_position_bias: bool = help_field(
        False, "Add a bias b_k per slot k to Eq. 16's logit (the examination term of position-"
        "biased click models); false = Eq. 16's one bias b, the slot seen only through the state.")
    # --- RL (Sec. 3.4) ---
    gamma: float = help_field(0.3, "Discount factor (Sec. 4.3: 0.3).")
    target_q: str = help_field("double", "Critic target: ddpg = Eq. 9 literally (target actor, "
                               "target critic); double = online actor picks a', target critic "
                               "scores it (the paper's 'double strategy'); twin = clipped double "
                               "critics (min of two target critics); logged = the logged next "
                               "item (authors' code).")
    critic_steps: int = help_field(5, "Critic updates per actor update (Sec. 3.4: 5 to 30).")
    action_noise: float = help_field(0.01, "sigma of the Gaussian noise added to both actions in "
                                     "training (Sec. 3.4; authors' code: 0.01).")
    tau: float = help_field(0.1, "Soft target update rate; 1 = a periodic copy (authors' code: "
                            "0.1).")
    target_update_period: int = help_field(30, "Train steps between target updates (authors' "
                                           "code: 30).")
    beta: float = help_field(1.0, "Actor weight within each agent's loss, Eq. 11/14 (Sec. 3.4: "
                             "1).")
    # Eq. 18: L = lambda_l L_l + lambda_h L_h + lambda_c L_c + lambda_s L_s (Sec. 3.4: 5:5:1:1).
    # Table 4's "w/o L_c" and "w/o L_s" set the last two to 0.
    lra_loss_weight: float = help_field(5.0, "lambda_l of Eq. 18, the LRA's loss (Sec. 3.4: 5).")
    hra_loss_weight: float = help_field(5.0, "lambda_h of Eq. 18, the HRA's loss (Sec. 3.4: 5).")
    click_loss_weight: float = help_field(1.0, "lambda_c of Eq. 18, the CTR-supervised loss "
                                          "Eq. 15 (Sec. 3.4: 1; 0 = Table 4's w/o L_c).")
    similarity_loss_weight: float = help_field(1.0, "lambda_s of Eq. 18, the similarity loss "
                                               "Eq. 17 (Sec. 3.4: 1; 0 = Table 4's w/o L_s).")
    similarity_moves_items: bool = help_field(
        False, "Let Eq. 17's gradient move the item embeddings too. The paper says L_s 'forces "
        "Actors to generate more realistic actions', so by default only the actions move "
        "(letting items chase the actions collapses the item space, see docs/quickstart.md).")
    actor_objective: str = help_field(
        "critic", "critic = Eq. 10/13, E[-Q(s, mu(s))]; critic_max = -E[cos(mu(s), g(s))], the "
        "exact maximiser g(s) = w_c2 + W s of a direction-reading additive or bilinear critic "
        "(needs --critic_direction), a target that does not vanish with the ReLU.")
    similarity_target: str = help_field(
        "nearest", "Eq. 17's d: nearest = the allowed candidate most similar to the action "
        "(the paper, no labels); clicked = the logged item, at clicked slots only.")
    served_click_weight: float = help_field(
        0.0, "Weight of a click loss on the score each agent serves by: BCE of kappa cos(a, d) "
        "+ w . a + b for the logged item of every slot, for a^l and a^h (hrl_rec.model."
        "ServedScore; HAC's behaviour loss). 0 = off (the paper).")
    served_bias: str = help_field(
        "action", "The served score's state term: action = w . a + b (absorbs the slot and the "
        "user's propensity, so the cosine need not carry them); slot = b_k per slot (the "
        "cosine must carry the user's propensity too).")
    served_rank_weight: float = help_field(
        0.0, "Weight of a within-state ranking loss on the served cosine: softmax of kappa "
        "cos(a, d), the clicked item against the list's logged unclicked items (of its channel "
        "for the HRA, of every channel for the LRA). 0 = off (the paper).")
    served_batch_negatives: int = help_field(
        0, "Lists whose logged items join each slot's negatives in the ranking loss (in-batch "
        "negatives, as two-tower retrieval trains; Yi et al., RecSys 2019): list b also ranks "
        "its clicked item above the items of lists b-1..b-N of the batch (of the slot's "
        "channel for the HRA; never the clicked item's own id), each re-encoded with slot t's "
        "context fields (the item-age bucket included). 0 = the list's own items only "
        "(docs/hrl_rec_actions.md, BN8: every figure fell).")
    served_distill_weight: float = help_field(
        0.0, "Weight of a listwise distillation of Eq. 16's ranking into the served cosine "
        "(losses.distill_loss): at every slot, softmax of kappa cos(a, d_j) over the allowed "
        "candidates (the list's items and the sampled ones; the slot's channel for the HRA) "
        "is fitted to softmax of f(a, d_j) / --served_distill_temperature, f held fixed. "
        "0 = off (the paper).")
    served_distill_moves_items: bool = help_field(
        True, "Whether --served_distill_weight's gradient reaches the item embeddings (true) or "
        "only the actions and their encoders (false: the items stay where f's other losses put "
        "them).")
    served_distill_temperature: float = help_field(
        1.0, "T of --served_distill_weight's teacher softmax (f's logits / T).")
    uniformity_weight: float = help_field(
        0.0, "Weight of a uniformity loss (DirectAU, Wang et al., KDD 2022; losses."
        "uniformity_loss): the log mean Gaussian potential between the batch's LRA actions, "
        "between its HRA actions and between its logged items' embeddings, summed; it spreads "
        "the directions the served cosine compares. 0 = off (the paper).")
    action_anchor: float = help_field(
        0.0, "Weight of a supervised MSE between each action and the logged item's embedding "
        "(the authors' public code has one; the paper does not). 0 = off.")
    embedding_l2: float = help_field(
        0.0, "L2 weight on every embedding table, added to Eq. 18 as embedding_l2 * sum(w^2) "
        "(the baselines' --l2; the paper names no regulariser). 0 = off.")
    # --- rewards (Eq. 7) ---
    reward_form: str = help_field("power", "Eq. 7: power = sum_i (r_i + b_i)^lambda_i (the "
                                  "literal form); linear = sum_i lambda_i (r_i + b_i).")
    reward_click: tuple[float, ...] = help_field(
        (1.0,), "lambda for the click reward: one value for every channel, or one per channel "
        "in the dataset's channel order (sim_small: news, article, long_video, short_video). "
        "The paper sets them 'empirically'; ours is 1.")
    reward_time: tuple[float, ...] = help_field(
        (0.5,), "lambda for the dwell-time reward, one value or one per channel (0.5: a square "
        "root, so long videos' minutes do not drown the clicks).")
    reward_diversity: tuple[float, ...] = help_field(
        (1.0,), "lambda for the diversity reward, one value or one per channel.")
    reward_novelty: tuple[float, ...] = help_field(
        (1.0,), "lambda for the novelty reward, one value or one per channel.")
    reward_bias: tuple[float, ...] = help_field(
        (0.0, 0.0, 0.0, 0.0), "b_i of Eq. 7 for click, time, diversity, novelty.")
    dwell_unit_s: float = help_field(60.0, "Dwell seconds per unit of r_time (minutes).")
    # --- optimisation (Sec. 4.3 and the authors' code) ---
    batch_size: int = help_field(256, "Lists per batch (Sec. 4.3: 256); each list gives S "
                                 "transitions per agent.")
    learning_rate: float = help_field(2e-4, "Adam learning rate (authors' code: 2e-4).")
    learning_rate_decay: float = help_field(
        1.0, "Multiplies both Adam learning rates once per epoch: epoch e (from 0) trains at "
        "learning_rate * learning_rate_decay**e. 1 keeps the rate constant (the paper).")
    clip_norm: float = help_field(5.0, "Gradient clipping by global norm (authors' code: 5).")
    candidates_per_channel: int = help_field(
        20, "Offline candidates sampled per channel per list, besides the list's own items "
        "(for the argmax of Eq. 17). Serving uses the matching stage's top 200 per channel.")


def loss_weights(cfg: HRLConfig) -> tuple[float, float, float, float]:
    """(lambda_l, lambda_h, lambda_c, lambda_s) of Eq. 18."""
    return (cfg.lra_loss_weight, cfg.hra_loss_weight, cfg.click_loss_weight,
            cfg.similarity_loss_weight)


def validate(cfg: HRLConfig, n_channels: int) -> None:
    """Raises ValueError naming the flag when settings are inconsistent."""
    checks = [
        (cfg.state_window in STATE_WINDOWS, "state_window", f"one of {STATE_WINDOWS}"),
        (cfg.state_window == "sliding" or not cfg.per_slot_states, "per_slot_states",
         f"false with --state_window={cfg.state_window} (it is the sliding window's reference)"),
        (cfg.target_q in TARGET_Q, "target_q", f"one of {TARGET_Q}"),
        (cfg.critic_form in CRITIC_FORMS, "critic_form", f"one of {CRITIC_FORMS}"),
        (cfg.actor_objective in ACTOR_OBJECTIVES, "actor_objective",
         f"one of {ACTOR_OBJECTIVES}"),
        (cfg.actor_objective == "critic" or (cfg.critic_form != "joint"
                                             and cfg.critic_direction), "actor_objective",
         "critic with --critic_form=joint or --critic_direction=false (critic_max is the "
         "closed-form maximiser of a direction-reading additive or bilinear critic)"),
        (cfg.served_bias in SERVED_BIASES, "served_bias", f"one of {SERVED_BIASES}"),
        (cfg.similarity_target in SIMILARITY_TARGETS, "similarity_target",
         f"one of {SIMILARITY_TARGETS}"),
        (cfg.reward_form in REWARD_FORMS, "reward_form", f"one of {REWARD_FORMS}"),
        (cfg.max_seq_len >= 1, "max_seq_len", ">= 1"),
        (cfg.embedding_dim % cfg.heads == 0, "embedding_dim", f"a multiple of --heads={cfg.heads}"),
        (cfg.critic_steps >= 1, "critic_steps", ">= 1"),
        (0.0 <= cfg.gamma <= 1.0, "gamma", "in [0, 1]"),
        (0.0 < cfg.tau <= 1.0, "tau", "in (0, 1]"),
        (cfg.target_update_period >= 1, "target_update_period", ">= 1"),
        (cfg.action_noise >= 0.0, "action_noise", ">= 0"),
        (len(cfg.reward_bias) == 4, "reward_bias", "4 values (click, time, diversity, novelty)"),
        (cfg.batch_size >= 1, "batch_size", ">= 1"),
        (cfg.candidates_per_channel >= 1, "candidates_per_channel", ">= 1"),
        (cfg.learning_rate > 0.0, "learning_rate", "> 0"),
        (0.0 < cfg.learning_rate_decay <= 1.0, "learning_rate_decay", "in (0, 1]"),
        (cfg.dwell_unit_s > 0, "dwell_unit_s", "> 0"),
        (cfg.served_batch_negatives >= 0, "served_batch_negatives", ">= 0"),
        (cfg.served_distill_temperature > 0, "served_distill_temperature", "> 0"),
        (cfg.served_batch_negatives == 0 or cfg.served_rank_weight > 0,
         "served_batch_negatives", "0 unless --served_rank_weight > 0 (they are its negatives)"),
    ]
    for name in ("lra_loss_weight", "hra_loss_weight", "click_loss_weight",
                 "similarity_loss_weight", "embedding_l2", "served_click_weight",
                 "served_rank_weight", "served_distill_weight", "uniformity_weight"):
        checks.append((getattr(cfg, name) >= 0.0, name, ">= 0"))
    for name in ("reward_click", "reward_time", "reward_diversity", "reward_novelty"):
        checks.append((len(getattr(cfg, name)) in (1, n_channels), name,
                       f"1 value (for every channel) or {n_channels} values, one per channel"))
    for ok, name, expected in checks:
        if not ok:
            raise ValueError(f"--{name}={getattr(cfg, name)}: expected {expected}")


def reward_weights(cfg: HRLConfig, n_channels: int) -> list[list[float]]:
    """-> [channel][reward] lambda matrix (click, time, diversity, novelty); a flag given one
    value applies it to every channel."""
    cols = [tuple(v) * n_channels if len(v) == 1 else tuple(v)
            for v in (cfg.reward_click, cfg.reward_time, cfg.reward_diversity,
                      cfg.reward_novelty)]
    for name, col in zip(("reward_click", "reward_time", "reward_diversity", "reward_novelty"),
                         cols):
        if len(col) != n_channels:
            raise ValueError(f"--{name}={getattr(cfg, name)}: expected 1 value (for every "
                             f"channel) or {n_channels} values, one per channel")
    return [list(row) for row in zip(*cols)]
