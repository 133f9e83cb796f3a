"""TFRecord shards of per-user impression sequences.

One tf.train.Example = one user's impressions in one split, in (time, request, slot) order.
Sequences rather than single impressions, because every consumer needs each impression's
predecessors (the m most recent impressions before a slot, DESIGN.md); the pipeline cuts those
windows in graph. `target` marks the impressions that belong to the split; the others are the
user's last impressions before the split (context for the history windows only), so a test
record can see its training-period history without that history being evaluated.

Files are written to a temporary name and renamed, so a crash never leaves a half-written shard.
"""
from __future__ import annotations

import os
from typing import Iterator

import numpy as np
import tensorflow as tf

from data import schema
from data.schema import FLOAT_COLUMNS, INT_COLUMNS, MATRIX_COLUMNS, FeatureSpec, ImpressionLog

_PER_USER = ("user_id", "user_fields")
_SEQ_INT = tuple(c for c in INT_COLUMNS if c != "user_id") + ("target",)


def shard_name(split: str, index: int, count: int) -> str:
    return f"{split}-{index:05d}-of-{count:05d}.tfrecord"


def _int_feature(values: np.ndarray) -> tf.train.Feature:
    return tf.train.Feature(int64_list=tf.train.Int64List(value=values.ravel().tolist()))


def _float_feature(values: np.ndarray) -> tf.train.Feature:
    return tf.train.Feature(float_list=tf.train.FloatList(value=values.ravel().tolist()))


def encode_user(log: ImpressionLog, target: np.ndarray) -> bytes:
    """Serializes the impressions of ONE user (already sorted) into an Example."""
    feats = {
        "user_id": _int_feature(log.user_id[:1]),
        "user_fields": _int_feature(log.user_fields[0]),
        "target": _int_feature(target.astype(np.int64)),
    }
    for c in INT_COLUMNS:
        if c != "user_id":
            feats[c] = _int_feature(getattr(log, c))
    for c in FLOAT_COLUMNS:
        feats[c] = _float_feature(getattr(log, c))
    for c in MATRIX_COLUMNS:
        if c != "user_fields":
            feats[c] = _int_feature(getattr(log, c))
    # deterministic=True sorts the feature map: same log -> same bytes in every process.
    return tf.train.Example(features=tf.train.Features(feature=feats)).SerializeToString(
        deterministic=True)


def user_slices(user_id: np.ndarray) -> list[slice]:
    """Contiguous runs of equal user ids (the log must be sorted by user)."""
    if len(user_id) == 0:
        return []
    starts = np.flatnonzero(np.r_[True, user_id[1:] != user_id[:-1]])
    ends = np.r_[starts[1:], len(user_id)]
    return [slice(s, e) for s, e in zip(starts, ends)]


def write_shard(path: str, log: ImpressionLog, target: np.ndarray, spec: FeatureSpec) -> int:
    """Validates and writes `log` (sorted by user, time) as per-user Examples; returns #records.

    Written to `path + '.tmp'` first and renamed when complete.
    """
    schema.validate(log, spec, source=os.path.basename(path), row_label="impression")
    tmp = path + ".tmp"
    count = 0
    try:
        with tf.io.TFRecordWriter(tmp) as writer:
            for sl in user_slices(log.user_id):
                writer.write(encode_user(log.take(sl), target[sl]))
                count += 1
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return count


def decode_user(serialized: bytes, spec: FeatureSpec, source: str) -> tuple[ImpressionLog, np.ndarray]:
    """Parses one Example into (log, target) without validating values."""
    try:
        ex = tf.train.Example.FromString(serialized)
    except Exception as e:  # protobuf raises its own DecodeError type
        raise schema.SchemaError(f"{source}: not a tf.train.Example ({e})") from None
    f = ex.features.feature

    def ints(name):
        if name not in f:
            raise schema.SchemaError(f"{source}: missing feature '{name}'")
        return np.asarray(f[name].int64_list.value, np.int64)

    def floats(name):
        if name not in f:
            raise schema.SchemaError(f"{source}: missing feature '{name}'")
        return np.asarray(f[name].float_list.value, np.float32)

    target = ints("target")
    n = len(target)
    cols = {c: ints(c) for c in INT_COLUMNS if c != "user_id"}
    cols.update({c: floats(c) for c in FLOAT_COLUMNS})
    for c in MATRIX_COLUMNS:
        if c == "user_fields":
            continue
        width = schema._width(spec, c)
        flat = ints(c)
        if flat.size != n * width:
            raise schema.SchemaError(f"{source}: feature '{c}' has {flat.size} values, expected "
                                     f"{n} impressions x {width}")
        cols[c] = flat.reshape(n, width)
    user_fields = ints("user_fields")
    if user_fields.size != len(spec.user_field_names):
        raise schema.SchemaError(f"{source}: user_fields has {user_fields.size} values, expected "
                                 f"{len(spec.user_field_names)}")
    cols["user_fields"] = np.tile(user_fields, (n, 1))
    cols["user_id"] = np.repeat(ints("user_id")[:1], n)
    for c in INT_COLUMNS + FLOAT_COLUMNS:
        if cols[c].shape != (n,):
            raise schema.SchemaError(f"{source}: feature '{c}' has {cols[c].size} values, "
                                     f"expected {n}")
    return ImpressionLog(**cols), target


def read_shard(path: str, spec: FeatureSpec, validate: bool = True
               ) -> Iterator[tuple[ImpressionLog, np.ndarray]]:
    """Yields (log, target) per user record; errors name the file, record and impression."""
    if not os.path.exists(path):
        raise FileNotFoundError(f"shard {path} does not exist")
    name = os.path.basename(path)
    try:
        for i, raw in enumerate(tf.data.TFRecordDataset(path).as_numpy_iterator()):
            source = f"{name} record {i}"
            log, target = decode_user(raw, spec, source)
            if validate:
                schema.validate(log, spec, source=source, row_label="impression")
            yield log, target
    except tf.errors.DataLossError as e:
        raise schema.SchemaError(f"{name}: corrupt TFRecord file ({e.message})") from None


def read_split(data_dir: str, split: str, spec: FeatureSpec, validate: bool = True,
               targets_only: bool = True) -> ImpressionLog:
    """Loads a whole split into memory (tests, metrics, small datasets)."""
    paths = split_files(data_dir, split)
    logs = []
    for p in paths:
        for log, target in read_shard(p, spec, validate):
            logs.append(log.take(target.astype(bool)) if targets_only else log)
    return ImpressionLog.concat(logs) if logs else ImpressionLog.empty(spec)


def split_files(data_dir: str, split: str) -> list[str]:
    """The shard files of `split`, sorted; a clear error if there are none."""
    if not os.path.isdir(data_dir):
        raise FileNotFoundError(f"data directory {data_dir} does not exist")
    paths = sorted(os.path.join(data_dir, f) for f in os.listdir(data_dir)
                   if f.startswith(f"{split}-") and f.endswith(".tfrecord"))
    if not paths:
        raise FileNotFoundError(f"no {split}-*.tfrecord shards in {data_dir}")
    return paths
