"""The impression-log schema shared by the simulator, the dataset adapters and the pipeline.

One impression = one item shown to one user at one slot of one request (DESIGN.md). A log is held
column-wise (`ImpressionLog`, numpy arrays of equal length), and a `FeatureSpec` says how large
every vocabulary is, so that validation can name the exact field and value that is wrong.

Conventions:
- ids and categorical field values are int64 in [0, vocab); tag id 0 is padding, real tags >= 1;
- `true_ctr` is the simulator's exact click probability (examination x attraction), -1 when
  unknown (real logs);
- `novel_tags` counts the item's tags that were not in the user's long-term profile when it was
  shown (the novelty reward of Eq. 7 needs it and only the logger knows the profile);
- user profile fields are constant per user; context fields describe the request (hour, weekday,
  network) and the item-in-context (its age bucket).
"""
from __future__ import annotations

import dataclasses
import json
from typing import Sequence

import numpy as np


class SchemaError(ValueError):
    """A record violates the schema; the message names the source, record and field."""


@dataclasses.dataclass(frozen=True)
class FeatureSpec:
    """Vocabulary sizes and field names of one dataset; stored in metadata.json as `spec`."""

    channel_names: tuple[str, ...]
    list_size: int  # slots per request (the paper: 10)
    max_tags: int  # tags per item, padded with 0
    n_users: int
    n_items: int
    n_tags: int  # tag ids are 1..n_tags-1, 0 is padding
    user_field_names: tuple[str, ...]
    user_field_sizes: tuple[int, ...]
    item_field_names: tuple[str, ...]
    item_field_sizes: tuple[int, ...]
    context_field_names: tuple[str, ...]
    context_field_sizes: tuple[int, ...]

    def __post_init__(self):
        for names, sizes in (
            (self.user_field_names, self.user_field_sizes),
            (self.item_field_names, self.item_field_sizes),
            (self.context_field_names, self.context_field_sizes),
        ):
            if len(names) != len(sizes):
                raise SchemaError(f"field names {names} and sizes {sizes} differ in length")
            if any(s < 1 for s in sizes):
                raise SchemaError(f"field sizes must be >= 1, got {sizes}")
        if self.list_size < 1 or self.max_tags < 1 or not self.channel_names:
            raise SchemaError("list_size, max_tags and channel_names must be non-empty")

    @property
    def n_channels(self) -> int:
        return len(self.channel_names)

    def to_json(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, d: dict) -> "FeatureSpec":
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - fields
        if unknown:
            raise SchemaError(f"unknown spec keys {sorted(unknown)}")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})


# Column name -> (dtype, per-row width attribute of FeatureSpec or None for scalars).
INT_COLUMNS = ("user_id", "request_id", "timestamp", "slot", "channel", "item_id", "clicked",
               "novel_tags")
FLOAT_COLUMNS = ("dwell", "propensity", "true_ctr")
MATRIX_COLUMNS = {"item_fields": "item_field_names", "tags": None,
                  "context": "context_field_names", "user_fields": "user_field_names"}
COLUMNS = INT_COLUMNS + FLOAT_COLUMNS + tuple(MATRIX_COLUMNS)


def _width(spec: FeatureSpec, column: str) -> int:
    attr = MATRIX_COLUMNS[column]
    return spec.max_tags if attr is None else len(getattr(spec, attr))


@dataclasses.dataclass
class ImpressionLog:
    """Column-wise impressions. Matrix columns are [N, width]; all others [N]."""

    user_id: np.ndarray
    request_id: np.ndarray
    timestamp: np.ndarray  # seconds since the log's epoch
    slot: np.ndarray
    channel: np.ndarray
    item_id: np.ndarray
    clicked: np.ndarray
    novel_tags: np.ndarray
    dwell: np.ndarray  # seconds; 0 when not clicked
    propensity: np.ndarray  # probability of this item at this slot under the logging policy
    true_ctr: np.ndarray  # -1 when unknown
    item_fields: np.ndarray
    tags: np.ndarray
    context: np.ndarray
    user_fields: np.ndarray

    def __len__(self) -> int:
        return len(self.user_id)

    def take(self, index) -> "ImpressionLog":
        """The rows at `index` (integer indices or a boolean mask)."""
        index = np.asarray(index)
        if index.dtype == bool:
            index = np.flatnonzero(index)
        # np.take is ~2.5x faster than fancy indexing on the 2-D columns.
        return ImpressionLog(**{c: np.take(getattr(self, c), index, axis=0) for c in COLUMNS})

    @classmethod
    def concat(cls, logs: Sequence["ImpressionLog"]) -> "ImpressionLog":
        return cls(**{c: np.concatenate([getattr(l, c) for l in logs]) for c in COLUMNS})

    @classmethod
    def empty(cls, spec: FeatureSpec) -> "ImpressionLog":
        cols = {c: np.zeros(0, np.int64) for c in INT_COLUMNS}
        cols.update({c: np.zeros(0, np.float32) for c in FLOAT_COLUMNS})
        cols.update({c: np.zeros((0, _width(spec, c)), np.int64) for c in MATRIX_COLUMNS})
        return cls(**cols)


def _locate(source: str, rows: np.ndarray, row_offset: int = 0, row_label: str = "record") -> str:
    return f"{source} {row_label} {int(rows[0]) + row_offset}"


def validate(log: ImpressionLog, spec: FeatureSpec, source: str = "<memory>",
             row_offset: int = 0, row_label: str = "record") -> None:
    """Raises SchemaError naming `source`, the first bad row and the field if `log` is invalid.

    `row_offset` and `row_label` let callers report positions in their own terms (a TFRecord
    record number, a CSV line).
    """
    n = len(log)
    for c in COLUMNS:
        a = getattr(log, c)
        want = (n,) if c not in MATRIX_COLUMNS else (n, _width(spec, c))
        if a.shape != want:
            raise SchemaError(f"{c} has shape {a.shape}, expected {want} in {source}")
        if c in FLOAT_COLUMNS:
            bad = np.flatnonzero(~np.isfinite(a))
            if bad.size:
                raise SchemaError(f"{c} is {a[bad[0]]} (not finite) in "
                                  f"{_locate(source, bad, row_offset, row_label)}")

    def check_range(name, values, lo, hi):
        if n == 0 or (values.min() >= lo and values.max() < hi):  # two reductions, no masks
            return
        values = values.reshape(n, -1) if values.ndim > 1 else values.reshape(n, 1)
        bad_rows = np.flatnonzero(((values < lo) | (values >= hi)).any(axis=1))
        if bad_rows.size:
            row = bad_rows[0]
            v = values[row][(values[row] < lo) | (values[row] >= hi)][0]
            raise SchemaError(f"{name} {v} out of range [{lo}, {hi}) in "
                              f"{_locate(source, bad_rows, row_offset, row_label)}")

    check_range("user_id", log.user_id, 0, spec.n_users)
    check_range("item_id", log.item_id, 0, spec.n_items)
    check_range("slot", log.slot, 0, spec.list_size)
    check_range("channel", log.channel, 0, spec.n_channels)
    check_range("clicked", log.clicked, 0, 2)
    check_range("tags", log.tags, 0, spec.n_tags)
    check_range("novel_tags", log.novel_tags, 0, spec.max_tags + 1)
    check_range("timestamp", log.timestamp, 0, np.iinfo(np.int64).max)
    for col, names, sizes in (("user_fields", spec.user_field_names, spec.user_field_sizes),
                              ("item_fields", spec.item_field_names, spec.item_field_sizes),
                              ("context", spec.context_field_names, spec.context_field_sizes)):
        values = getattr(log, col)
        for j, (name, size) in enumerate(zip(names, sizes)):
            check_range(f"{col}.{name}", values[:, j], 0, size)
    for name, values, lo, hi in (("dwell", log.dwell, 0.0, np.inf),
                                 ("propensity", log.propensity, 0.0, 1.0 + 1e-6)):
        bad = np.flatnonzero((values < lo) | (values >= hi) | ((name == "propensity") & (values == 0)))
        if bad.size:
            want = "(0, 1]" if name == "propensity" else ">= 0"
            raise SchemaError(f"{name} {values[bad[0]]} not in {want} in "
                              f"{_locate(source, bad, row_offset, row_label)}")
    bad = np.flatnonzero(~(((log.true_ctr >= 0) & (log.true_ctr <= 1)) | (log.true_ctr == -1)))
    if bad.size:
        raise SchemaError(f"true_ctr {log.true_ctr[bad[0]]} not in [0, 1] or -1 in "
                          f"{_locate(source, bad, row_offset, row_label)}")
    bad = np.flatnonzero((log.clicked == 0) & (log.dwell > 0))
    if bad.size:
        raise SchemaError(f"dwell {log.dwell[bad[0]]} > 0 on an unclicked impression in "
                          f"{_locate(source, bad, row_offset, row_label)}")


def load_spec(metadata_path: str) -> FeatureSpec:
    """Reads the FeatureSpec from a data directory's metadata.json."""
    try:
        with open(metadata_path) as f:
            meta = json.load(f)
    except FileNotFoundError:
        raise FileNotFoundError(
            f"{metadata_path} not found: generate data with `python -m data.generate` or "
            f"`python -m data.convert` first") from None
    if "spec" not in meta:
        raise SchemaError(f"{metadata_path} has no 'spec' entry")
    return FeatureSpec.from_json(meta["spec"])
