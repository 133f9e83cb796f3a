"""The agents' rewards, computed in graph from a logged list (Sec. 3.2, 3.3, Eq. 7).

All functions take the S slots of a list batch: [B, S] (or [B, S, T] for tags).
"""
from __future__ import annotations

import tensorflow as tf

COMPONENTS = ("click", "time", "diversity", "novelty")


def low_level_reward(clicked: tf.Tensor) -> tf.Tensor:
    """r^l_t: how many times channel c_t was clicked at slot t (Sec. 3.2). One item per slot,
    so it is that item's click: [B, S] -> [B, S] float."""
    return tf.cast(clicked, tf.float32)


def diversity(tags: tf.Tensor) -> tf.Tensor:
    """r^diver_t: deduplicated tags of the item at slot t absent from the items at slots < t.

    tags [B, S, T] (0 = no tag) -> [B, S] float. Example: slot 0 tags (1, 2), slot 1 tags (2, 3, 3)
    -> r = (2, 1): tag 3 is new (counted once), tag 2 was shown at slot 0.
    """
    s, t = tags.shape[1], tags.shape[2]
    same = tf.equal(tags[:, :, :, None, None], tags[:, None, None, :, :])  # [B, S, T, S, T]
    earlier_slot = tf.range(s)[None, :] < tf.range(s)[:, None]           # [S(t), S(t')]
    seen_before = tf.reduce_any(same & earlier_slot[None, :, None, :, None], axis=[3, 4])
    own = tf.equal(tags[:, :, :, None], tags[:, :, None, :])               # [B, S, T, T]
    earlier_tag = tf.range(t)[None, :] < tf.range(t)[:, None]
    duplicate = tf.reduce_any(own & earlier_tag[None, None], axis=3)
    new = (tags > 0) & ~seen_before & ~duplicate
    return tf.reduce_sum(tf.cast(new, tf.float32), axis=2)


def components(clicked, dwell, tags, novel_tags, dwell_unit_s: float) -> tf.Tensor:
    """r^t = (r^click, r^time, r^diver, r^novel) [B, S, 4] (Sec. 3.3).

    r^time is dwell / dwell_unit_s; r^novel is the number of the item's tags new to the user's
    long-term profile (logged by the simulator as `novel_tags`)."""
    return tf.stack([tf.cast(clicked, tf.float32), tf.cast(dwell, tf.float32) / dwell_unit_s,
                     diversity(tags), tf.cast(novel_tags, tf.float32)], axis=-1)


def high_level_reward(r: tf.Tensor, channel: tf.Tensor, weights, bias, form: str = "power"):
    """Eq. 7: r^h_t = sum_i (r_i + b_i)^{lambda_i^{c_t}} ("power", the literal form), or
    sum_i lambda_i^{c_t} (r_i + b_i) ("linear").

    r [B, S, 4], channel [B, S] (c_t), weights [C, 4] (lambda per channel and component),
    bias [4] -> [B, S]. Example: r = (1, 4, 2, 0), lambda = (1, 0.5, 1, 1), b = 0, power:
    1 + 2 + 2 + 0 = 5.
    """
    lam = tf.gather(tf.constant(weights, tf.float32), channel)
    base = r + tf.constant(bias, tf.float32)
    if form == "power":
        terms = tf.where(base > 0, tf.pow(tf.maximum(base, 1e-12), lam), tf.zeros_like(base))
    elif form == "linear":
        terms = lam * base
    else:
        raise ValueError(f"reward form must be 'power' or 'linear', got {form!r}")
    return tf.reduce_sum(terms, axis=-1)
