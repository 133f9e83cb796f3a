"""Tiny list batches and models for HRL-Rec tests (spec: tests/data/helpers.SPEC)."""
import numpy as np
import tensorflow as tf

from hrl_rec.config import HRLConfig
from hrl_rec.model import HRLRec
from tests.data.helpers import SPEC

SPEC_DICT = SPEC.to_json()
TINY = dict(max_seq_len=4, embedding_dim=4, hidden_dim=8, heads=2)


def tiny_config(**overrides) -> HRLConfig:
    base = dict(TINY, batch_size=4, candidates_per_channel=2, learning_rate=1e-2,
                target_update_period=1, critic_steps=3)
    base.update(overrides)
    return HRLConfig(**base)


def tiny_model(**overrides) -> HRLRec:
    options = dict(TINY, **overrides)
    return HRLRec(SPEC_DICT, **options)


def list_batch(b=3, m=4, s=10, k=2, seed=0, short_last=True) -> dict:
    """A random but valid list batch: W = m + s positions; the first list has one padded history
    position, the last list (if short_last) only 7 slots."""
    rng = np.random.default_rng(seed)
    w = m + s
    item = rng.integers(1, SPEC.n_items, size=(b, w))
    mask = np.ones((b, w), np.int64)
    mask[0, 0] = 0
    if short_last:
        mask[-1, m + 7:] = 0
    clicked = rng.integers(0, 2, size=(b, w)) * mask
    feedback = np.where(np.arange(w) < m, mask * (1 + clicked), 0)
    tags = np.stack([item % 19 + 1, (item * 7) % 19 + 1, np.zeros_like(item)], -1)
    batch = {
        "user_id": np.arange(b) % SPEC.n_users, "request_id": np.arange(b) + 100,
        "user_fields": np.stack([np.arange(b) % 6, np.arange(b) % 2], 1),
        "item_id": item * mask, "channel": (item % 4) * mask, "slot": np.tile(
            np.r_[np.arange(m) % 10, np.arange(s)], (b, 1)) * mask,
        "clicked": clicked, "novel_tags": rng.integers(0, 3, size=(b, w)) * mask,
        "timestamp": np.zeros((b, w), np.int64), "feedback": feedback, "mask": mask,
        "dwell": (30.0 * clicked).astype(np.float32), "propensity": np.full((b, w), 0.5, np.float32),
        "true_ctr": np.full((b, w), 0.1, np.float32), "item_fields": ((item % 5) * mask)[..., None],
        "tags": tags * mask[..., None], "context": np.stack([np.full((b, w), 9), np.ones((b, w), int)],
                                                          -1) * mask[..., None],
        "cand_item_id": rng.integers(1, SPEC.n_items, size=(b, 4, k)) // 4 * 4 + np.arange(4)[
            None, :, None],
    }
    batch["cand_item_id"] = np.minimum(batch["cand_item_id"], SPEC.n_items - 4 + np.arange(4)[
        None, :, None])
    batch["cand_item_fields"] = (batch["cand_item_id"] % 5)[..., None]
    c = batch["cand_item_id"]
    batch["cand_tags"] = np.stack([c % 19 + 1, (c * 7) % 19 + 1, np.zeros_like(c)], -1)
    return {k: tf.constant(v, tf.float32 if v.dtype.kind == "f" else tf.int64)
            for k, v in batch.items()}
