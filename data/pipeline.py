"""tf.data input pipeline: TFRecord user sequences -> named batches for every model.

`list_dataset` yields one element per list (request), the unit both HRL-Rec agents learn from.
Every per-impression tensor covers a window of W = m + S positions: positions 0..m-1 are the m
most recent impressions before the list (history), positions m..m+S-1 are the list's S slots.
The state of slot t (Sec. 3.2: "m - t + 1 historical, t - 1 already placed") is window[t : t+m],
so one window serves all S slots and the next state of slot t is window[t+1 : t+m+1].

Keys of a list batch (B lists, W = m + S):
    user_id [B], request_id [B], user_fields [B, F_u]
    item_id, channel, slot, clicked, novel_tags, timestamp, feedback, mask    [B, W] int
    dwell, propensity, true_ctr                                        [B, W] float
    item_fields [B, W, F_i], context [B, W, F_c], tags [B, W, T]
    cand_item_id [B, C, K'], cand_item_fields [B, C, K', F_i], cand_tags [B, C, K', T]
        (K' = candidates_per_channel > 0 only: items sampled uniformly from each channel)
`mask` is 1 where a position holds an impression. `feedback` is what a model may see of a
position's outcome: 0 = unknown (padding, and every slot of the current list, whose clicks are
not known when it is ranked), 1 = shown and not clicked, 2 = clicked.

`impression_dataset` yields one element per impression of the split (the baselines' unit), with
the same features plus the m most recent impressions before it (hist_item_id, hist_channel,
hist_feedback, hist_mask [B, m]) for pooled-history features; `label` is `clicked`.
"""
from __future__ import annotations

import json
import os

import numpy as np
import tensorflow as tf

from data import schema, tfrecord_io

AUTOTUNE = tf.data.AUTOTUNE
WINDOW_INT = ("item_id", "channel", "slot", "clicked", "novel_tags", "timestamp")
WINDOW_FLOAT = ("dwell", "propensity", "true_ctr")
WINDOW_MATRIX = ("item_fields", "context", "tags")


def load_metadata(data_dir: str) -> dict:
    path = os.path.join(data_dir, "metadata.json")
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path} not found: is {data_dir} the output of data.generate "
                                f"or data.convert?")
    with open(path) as f:
        return json.load(f)


def _parse_user(spec: schema.FeatureSpec):
    widths = {"item_fields": len(spec.item_field_names), "context": len(spec.context_field_names),
              "tags": spec.max_tags}
    features = {"user_id": tf.io.FixedLenFeature([1], tf.int64),
                "user_fields": tf.io.FixedLenFeature([len(spec.user_field_names)], tf.int64)}
    features.update({name: tf.io.FixedLenFeature([], tf.string)
                     for name in tfrecord_io.COLUMN_DTYPES})
    raw_dtype = {name: {"<i4": tf.int32, "<i8": tf.int64, "<f4": tf.float32}[d]
                 for name, d in tfrecord_io.COLUMN_DTYPES.items()}

    def parse(serialized):
        f = tf.io.parse_single_example(serialized, features)
        for name, dtype in raw_dtype.items():
            values = tf.io.decode_raw(f[name], dtype, little_endian=True)
            f[name] = tf.cast(values, tf.int64) if dtype != tf.float32 else values
        n = tf.shape(f["target"])[0]
        for name, width in widths.items():
            f[name] = tf.reshape(f[name], [n, width])
        f["user_id"] = tf.reshape(f["user_id"], [])
        return f

    return parse


def _cut_lists(spec: schema.FeatureSpec, max_seq_len: int, min_time, max_time):
    """One user's sequence -> its target lists, each with its window of m + S positions."""
    m, s = max_seq_len, spec.list_size

    def cut(f):
        n = tf.shape(f["request_id"])[0]
        rid = f["request_id"]
        is_start = tf.concat([[True], rid[1:] != rid[:-1]], axis=0)
        starts = tf.cast(tf.where(is_start)[:, 0], tf.int32)
        ends = tf.concat([starts[1:], [n]], axis=0)
        keep = tf.gather(f["target"], starts) > 0
        start_time = tf.gather(f["timestamp"], starts)
        if min_time is not None:
            keep &= start_time >= min_time
        if max_time is not None:
            keep &= start_time < max_time
        starts, ends = tf.boolean_mask(starts, keep), tf.boolean_mask(ends, keep)
        k = tf.range(m + s, dtype=tf.int32)[None, :]
        idx = starts[:, None] - m + k
        valid = (idx >= 0) & ((k < m) | (idx < ends[:, None]))
        safe = tf.clip_by_value(idx, 0, tf.maximum(n - 1, 0))
        n_lists = tf.shape(starts)[0]
        out = {"user_id": tf.fill([n_lists], f["user_id"]),
               "request_id": tf.gather(rid, starts),
               "user_fields": tf.tile(f["user_fields"][None], [n_lists, 1]),
               "mask": tf.cast(valid, tf.int64)}
        for name in WINDOW_INT + WINDOW_FLOAT + WINDOW_MATRIX:
            g = tf.gather(f[name], safe)
            zero = tf.zeros_like(g)
            cond = valid if g.shape.rank == 2 else valid[..., None]
            out[name] = tf.where(cond, g, zero)
        history = tf.cast(k < m, tf.int64) * out["mask"]
        out["feedback"] = history * (1 + out["clicked"])
        return tf.data.Dataset.from_tensor_slices(out)

    return cut


class CandidateSampler:
    """Uniform candidates per channel from items.npz (offline logs have no matching stage)."""

    def __init__(self, data_dir: str, spec: schema.FeatureSpec, per_channel: int, seed: int):
        path = os.path.join(data_dir, "items.npz")
        if not os.path.exists(path):
            raise FileNotFoundError(f"{path} not found: candidate sampling needs the item table")
        with np.load(path) as z:
            channel, fields, tags = z["channel"], z["item_fields"], z["tags"]
        counts = np.bincount(channel, minlength=spec.n_channels)
        empty = [spec.channel_names[c] for c in np.flatnonzero(counts == 0)]
        if empty:
            raise ValueError(f"{path}: channels {empty} have no items to sample candidates from")
        order = np.argsort(channel, kind="stable")
        self.sorted_ids = tf.constant(order, tf.int64)
        self.offsets = tf.constant(np.r_[0, np.cumsum(counts)[:-1]], tf.int64)
        self.counts = tf.constant(counts, tf.float32)
        self.fields = tf.constant(fields, tf.int64)
        self.tags = tf.constant(tags, tf.int64)
        self.per_channel = per_channel
        self.n_channels = spec.n_channels
        self.seed = seed

    def __call__(self, element):
        seed = tf.stack([tf.constant(self.seed, tf.int64), element["request_id"]])
        u = tf.random.stateless_uniform([self.n_channels, self.per_channel], seed=seed)
        pos = self.offsets[:, None] + tf.cast(tf.floor(u * self.counts[:, None]), tf.int64)
        ids = tf.gather(self.sorted_ids, pos)
        element["cand_item_id"] = ids
        element["cand_item_fields"] = tf.gather(self.fields, ids)
        element["cand_tags"] = tf.gather(self.tags, ids)
        return element


def ordered(shuffle: bool) -> bool:
    """Whether the parallel reads and maps keep their input order: always for unshuffled
    data, and for shuffled data when TensorFlow's op determinism is on (hrl_rec.train and
    baselines.train --deterministic). Out-of-order elements change which lists share a batch
    and the order of sums within one, so two --deterministic runs, or a run and its resumed
    copy, differed by up to 2e-4 in their weights (found by benchmarks.faults)."""
    if not shuffle:
        return True
    try:
        from tensorflow.python.framework import config as tf_config
        return bool(tf_config.is_op_determinism_enabled())
    except (ImportError, AttributeError):    # a TensorFlow without the query: keep speed
        return False


def _lists(data_dir, split, spec, max_seq_len, shuffle, seed, min_time, max_time,
           candidates_per_channel, shuffle_buffer, repeat):
    files = tfrecord_io.split_files(data_dir, split)
    keep_order = ordered(shuffle)
    ds = tf.data.Dataset.from_tensor_slices(files)
    if shuffle:
        ds = ds.shuffle(len(files), seed=seed, reshuffle_each_iteration=True)
    if repeat:
        ds = ds.repeat()
    ds = ds.interleave(tf.data.TFRecordDataset, cycle_length=min(len(files), 4),
                       num_parallel_calls=AUTOTUNE, deterministic=keep_order)
    ds = ds.map(_parse_user(spec), num_parallel_calls=AUTOTUNE, deterministic=keep_order)
    ds = ds.flat_map(_cut_lists(spec, max_seq_len, min_time, max_time))
    if candidates_per_channel > 0:
        sampler = CandidateSampler(data_dir, spec, candidates_per_channel, seed)
        ds = ds.map(sampler, num_parallel_calls=AUTOTUNE, deterministic=keep_order)
    if shuffle:
        ds = ds.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
    return ds


def _check_args(data_dir, split, max_seq_len, batch_size):
    meta = load_metadata(data_dir)
    spec = schema.FeatureSpec.from_json(meta["spec"])
    if max_seq_len < 1:
        raise ValueError(f"max_seq_len must be >= 1, got {max_seq_len}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if split != "train" and meta.get("history_context", max_seq_len) < max_seq_len:
        raise ValueError(
            f"max_seq_len={max_seq_len} exceeds the {meta['history_context']} history impressions "
            f"that {data_dir} carries into its {split} records; regenerate with a larger "
            f"--history_context")
    return spec


def validate_split(data_dir: str, split: str) -> int:
    """Checks every record of a split against the schema; returns the impressions checked."""
    spec = schema.load_spec(os.path.join(data_dir, "metadata.json"))
    count = 0
    for path in tfrecord_io.split_files(data_dir, split):
        for log, _ in tfrecord_io.read_shard(path, spec, validate=True):
            count += len(log)
    return count


def list_dataset(data_dir: str, split: str, *, max_seq_len: int = 50, batch_size: int = 256,
                 shuffle: bool | None = None, seed: int = 0, candidates_per_channel: int = 0,
                 min_time: int | None = None, max_time: int | None = None,
                 shuffle_buffer: int = 10_000, repeat: bool = False,
                 drop_remainder: bool = False) -> tf.data.Dataset:
    """Batches of lists (see the module docstring for the keys and shapes).

    `shuffle` defaults to True for the train split. `min_time`/`max_time` keep the lists that
    start in [min_time, max_time) (seconds), e.g. a validation period carved from the end of
    training. `repeat` makes the dataset infinite (shuffling anew each epoch).
    """
    spec = _check_args(data_dir, split, max_seq_len, batch_size)
    shuffle = split == "train" if shuffle is None else shuffle
    ds = _lists(data_dir, split, spec, max_seq_len, shuffle, seed, min_time, max_time,
                candidates_per_channel, shuffle_buffer, repeat)
    return ds.batch(batch_size, drop_remainder=drop_remainder,
                    num_parallel_calls=AUTOTUNE).prefetch(AUTOTUNE)


def _to_impressions(max_seq_len: int, list_size: int):
    m, s = max_seq_len, list_size
    hist_index = tf.range(s)[:, None] + tf.range(m)[None, :]  # slot t -> window[t : t+m]

    def split(batch):
        b = tf.shape(batch["mask"])[0]
        keep = tf.reshape(batch["mask"][:, m:] > 0, [-1])

        def per_slot(x):  # [B, W, ...] -> [B*S, ...]
            y = x[:, m:]
            return tf.boolean_mask(tf.reshape(y, tf.concat([[b * s], tf.shape(y)[2:]], 0)), keep)

        def per_list(x):  # [B, ...] -> [B*S, ...]
            y = tf.repeat(x, s, axis=0)
            return tf.boolean_mask(y, keep)

        def history(x):  # [B, W] -> [B*S, m]
            y = tf.gather(x, hist_index, axis=1)
            return tf.boolean_mask(tf.reshape(y, [b * s, m]), keep)

        out = {k: per_list(batch[k]) for k in ("user_id", "request_id", "user_fields")}
        for k in WINDOW_INT + WINDOW_FLOAT + WINDOW_MATRIX:
            out[k] = per_slot(batch[k])
        out["label"] = out["clicked"]
        out["hist_item_id"] = history(batch["item_id"])
        out["hist_channel"] = history(batch["channel"])
        out["hist_feedback"] = history(batch["feedback"])
        out["hist_mask"] = history(batch["mask"])
        return out

    return split


def impression_dataset(data_dir: str, split: str, *, max_seq_len: int = 50,
                       batch_size: int = 1024, shuffle: bool | None = None, seed: int = 0,
                       min_time: int | None = None, max_time: int | None = None,
                       shuffle_buffer: int = 10_000, repeat: bool = False,
                       drop_remainder: bool = False) -> tf.data.Dataset:
    """Batches of single impressions with their history (the CTR baselines' input).

    `shuffle_buffer` counts lists (impressions are shuffled list by list).
    """
    spec = _check_args(data_dir, split, max_seq_len, batch_size)
    shuffle = split == "train" if shuffle is None else shuffle
    ds = _lists(data_dir, split, spec, max_seq_len, shuffle, seed, min_time, max_time, 0,
                shuffle_buffer, repeat)
    # Lists are shuffled; impressions of one list stay together and a batch holds about
    # batch_size / S lists, so no per-impression shuffle is needed (it would cost 3x).
    ds = ds.batch(64).map(_to_impressions(max_seq_len, spec.list_size),
                          num_parallel_calls=AUTOTUNE, deterministic=ordered(shuffle))
    return ds.rebatch(batch_size, drop_remainder=drop_remainder).prefetch(AUTOTUNE)
