"""What HRL-Rec's actions do, measured on logged impressions (eval.json and TensorBoard keys).

All from `Learner.predict` over a dataset (`hrl_rec.runner.evaluate` collects them):
    auc_cosine_by_slot, auc_click_by_slot   mean over slots of the within-slot AUC of the
        served cosine cos(a^h_t, d_t) / of f (Eq. 16) (`data.stats.auc_by_slot`)
    action_alignment_low, action_alignment_high   mean cosine of each action with the mean
        action (1 = every state gets the same action)
    rank_auc_high   AUC of cos(a^h_t, .) within a state: the clicked item against the list's
        unclicked items of its channel (pairs pooled over states)
    channel_hit_rate   share of clicked slots whose logged channel is the LRA's (the channel of
        the allowed candidate most similar to a^l_t); channel_hit_rate_prior: the same for the
        user's most clicked channel in the history (a rule with no model)
    auc_q_item   AUC of the HRA critic's Q(s^h_t, d_t) for the logged item
    item_cosine_within_channel   mean cosine between the embeddings of different items of one
        channel (near 1 = the item space collapsed)
"""
from __future__ import annotations

import numpy as np
from sklearn.metrics import roc_auc_score

from data.stats import auc_by_slot

DIAGNOSTICS = ("auc_cosine_by_slot", "auc_click_by_slot", "action_alignment_low",
               "action_alignment_high", "rank_auc_high", "channel_hit_rate",
               "channel_hit_rate_prior", "auc_q_item", "item_cosine_within_channel")
PAIRS_PER_CHANNEL = 2000  # item pairs drawn per channel for item_cosine_within_channel


def action_alignment(actions: np.ndarray) -> float:
    """Mean cosine between each action [N, d] and the mean action's direction."""
    unit = actions / np.maximum(np.linalg.norm(actions, axis=-1, keepdims=True), 1e-12)
    mean = unit.mean(0)
    return float((unit @ (mean / max(np.linalg.norm(mean), 1e-12))).mean())


def item_cosine_within_channel(items: np.ndarray, item_ids: np.ndarray, channels: np.ndarray,
                               seed: int = 0) -> float:
    """Mean over channels of the mean cosine of random pairs of distinct items of that channel
    (`PAIRS_PER_CHANNEL` draws; one embedding per item id: its first occurrence)."""
    _, first = np.unique(item_ids, return_index=True)
    items, channels = items[first], channels[first]
    unit = items / np.maximum(np.linalg.norm(items, axis=-1, keepdims=True), 1e-12)
    rng = np.random.default_rng(seed)
    cos = []
    for c in np.unique(channels):
        idx = np.flatnonzero(channels == c)
        if len(idx) < 2:
            continue
        i, j = rng.choice(idx, PAIRS_PER_CHANNEL), rng.choice(idx, PAIRS_PER_CHANNEL)
        keep = i != j
        cos.append((unit[i[keep]] * unit[j[keep]]).sum(-1).mean())
    return float(np.mean(cos)) if cos else float("nan")


def action_metrics(out: dict) -> dict:
    """The module's keys from the concatenated real transitions of `Learner.predict`'s dict
    (each value [N] or [N, d])."""
    y, slot = out["clicked"], out["slot"]
    hit = y > 0
    pairs = out["rank_pairs"].sum()
    metrics = {
        "auc_cosine_by_slot": auc_by_slot(y, out["cosine"], slot),
        "auc_click_by_slot": auc_by_slot(y, out["click"], slot),
        "action_alignment_low": action_alignment(out["a_low"]),
        "action_alignment_high": action_alignment(out["a_high"]),
        "rank_auc_high": float(out["rank_wins"].sum() / pairs) if pairs else float("nan"),
        "channel_hit_rate": float((out["lra_channel"][hit] == out["channel"][hit]).mean()),
        "channel_hit_rate_prior": float(
            (out["prior_channel"][hit] == out["channel"][hit]).mean()),
        "auc_q_item": float(roc_auc_score(y, out["q_item"])),
        "item_cosine_within_channel": item_cosine_within_channel(
            out["logged"], out["item_id"], out["channel"]),
    }
    return metrics
