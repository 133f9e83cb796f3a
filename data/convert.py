"""Converts real impression logs into the project's schema, shards and metadata.json.

    python -m data.convert --format=mind --input_dir=DIR --output_dir=DIR2 --test_start=2019-11-13
    python -m data.convert --format=csv --input_dir=FILE_OR_DIR --output_dir=DIR2 \\
        --test_start=2019-11-13 --columns=user_id=uid,item_id=iid,timestamp=ts,clicked=click

MIND (official format: behaviors.tsv and news.tsv, any size; files found by name in
--input_dir, `*behaviors*.tsv` and `*news*.tsv`):
- one behaviors row = one displayed list, cut into consecutive lists of --list_size slots (the
  last may be shorter); request id = row order x 1000 + chunk;
- channel = the news category (news.tsv) where known, else the fallback channel `unknown`
  (MIND rows impress many news items absent from a given news.tsv subset);
- tags = the subcategory and up to two title-entity WikidataIds; item field = subcategory;
- the user's click history (behaviors column 4, the same for all rows of a user) becomes
  context-only pseudo-impressions (clicked, never a target) placed before the user's first list,
  so history windows see it; user field = the bucketed length of that history;
- context = hour and weekday of the row's time; no dwell (0), no propensity (1.0, and
  metadata says propensity_known = false), no oracle (true_ctr = -1).

CSV/TSV (any delimited impression log; --columns maps schema names to the file's columns):
required user_id, item_id, timestamp (integer seconds or ISO-8601), clicked (0/1); optional
request_id (default: one request per user and timestamp), slot (default: order within the
request), channel (default: one channel `all`), dwell, propensity, tags (`|`-separated),
user_fields, item_fields, context (each `|`-joined column names, e.g. user_fields=age|gender).
Categorical values become dense ids in sorted order.
"""
from __future__ import annotations

import contextlib
import csv
import datetime as dt
import glob
import json
import os
import sys

import numpy as np
from absl import app, flags

from data import writer
from data.schema import FeatureSpec, ImpressionLog, SchemaError
from data.stats import SplitStats

MAX_TAGS = 3
MIND_UNKNOWN = "unknown"
HISTORY_BUCKETS = (1, 6, 21, 51)  # history length buckets: 0, 1-5, 6-20, 21-50, 51+


def _epoch(value: str) -> int:
    return int(dt.datetime.strptime(value, "%Y-%m-%d").replace(tzinfo=dt.timezone.utc).timestamp())


def _vocab(values) -> dict:
    return {v: i for i, v in enumerate(sorted(set(values)))}


# --- MIND ---------------------------------------------------------------------------------------
def _find(input_dir: str, pattern: str) -> str:
    paths = sorted(glob.glob(os.path.join(input_dir, pattern)))
    if len(paths) != 1:
        raise FileNotFoundError(f"expected exactly one {pattern} file in {input_dir}, found "
                                f"{[os.path.basename(p) for p in paths]}")
    return paths[0]


def _utf8_lines(path: str):
    """(line number, text) of each line of `path`; a line that is not UTF-8 raises SchemaError
    naming the file, the line and the byte."""
    name = os.path.basename(path)
    with open(path, "rb") as f:
        for line_no, raw in enumerate(f, 1):
            try:
                yield line_no, raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise SchemaError(f"{name} line {line_no}: not UTF-8 ({e.reason} at byte "
                                  f"{e.start} of the line)") from None


def _read_mind_news(path: str) -> dict:
    news = {}
    for line_no, line in _utf8_lines(path):
        cols = line.rstrip("\r\n").split("\t")
        if len(cols) < 3:
            raise SchemaError(f"{os.path.basename(path)} line {line_no}: expected >= 3 "
                              f"tab-separated columns (id, category, subcategory), got "
                              f"{len(cols)}")
        entities = []
        if len(cols) > 6 and cols[6].strip():
            try:
                entities = [e["WikidataId"] for e in json.loads(cols[6]) if "WikidataId" in e]
            except (json.JSONDecodeError, TypeError, KeyError):
                raise SchemaError(f"{os.path.basename(path)} line {line_no}: title_entities "
                                  f"is not a JSON list of entities") from None
        news[cols[0]] = (cols[1], cols[2], entities)
    return news


def _parse_mind_time(value: str, source: str) -> int:
    try:
        t = dt.datetime.strptime(value, "%m/%d/%Y %I:%M:%S %p").replace(tzinfo=dt.timezone.utc)
    except ValueError:
        raise SchemaError(f"{source}: time {value!r} is not in MIND's 'M/D/YYYY h:mm:ss AM' "
                          f"format") from None
    return int(t.timestamp())


def read_mind(input_dir: str):
    """-> (rows (user, time, click history, [(news id, label)]), news id -> (category,
    subcategory, title entities))."""
    behaviors_path = _find(input_dir, "*behaviors*.tsv")
    news = _read_mind_news(_find(input_dir, "*news*.tsv"))
    name = os.path.basename(behaviors_path)
    rows = []
    for line_no, line in _utf8_lines(behaviors_path):
        cols = line.rstrip("\r\n").split("\t")
        source = f"{name} line {line_no}"
        if len(cols) != 5:
            raise SchemaError(f"{source}: expected 5 tab-separated columns (impression id, "
                              f"user, time, history, impressions), got {len(cols)}")
        shown = []
        for tok in cols[4].split():
            nid, _, label = tok.rpartition("-")
            if label not in ("0", "1") or not nid:
                raise SchemaError(f"{source}: impression {tok!r} is not 'NewsID-0|1'")
            shown.append((nid, int(label)))
        rows.append((cols[1], _parse_mind_time(cols[2], source), cols[3].split(), shown))
    if not rows:
        raise SchemaError(f"{name} has no rows")
    return rows, news


def convert_mind(input_dir: str, list_size: int):
    rows, news = read_mind(input_dir)
    item_names = sorted({n for r in rows for n in r[2]} | {n for r in rows for n, _ in r[3]}
                        | set(news))
    item_index = {n: i for i, n in enumerate(item_names)}
    channels = sorted({c for c, _, _ in news.values()}) + [MIND_UNKNOWN]
    channel_index = {c: i for i, c in enumerate(channels)}
    subcats = _vocab(s for _, s, _ in news.values())
    tag_names = sorted({f"sub:{s}" for s in subcats} |
                       {f"ent:{e}" for _, _, ents in news.values() for e in ents[:2]})
    tag_index = {t: i + 1 for i, t in enumerate(tag_names)}
    n_items = len(item_names)
    item_channel = np.full(n_items, channel_index[MIND_UNKNOWN], np.int64)
    item_fields = np.zeros((n_items, 1), np.int64)  # subcategory + 1, 0 = unknown
    item_tags = np.zeros((n_items, MAX_TAGS), np.int64)
    for nid, (cat, sub, ents) in news.items():
        i = item_index[nid]
        item_channel[i] = channel_index[cat]
        item_fields[i, 0] = subcats[sub] + 1
        tags = [tag_index[f"sub:{sub}"]] + [tag_index[f"ent:{e}"] for e in ents[:2]]
        item_tags[i, :len(tags)] = tags
    user_index = _vocab(r[0] for r in rows)
    t0 = min(r[1] for r in rows)
    epoch = t0 - t0 % 86400 - 86400  # a day before the first row: room for the histories
    cols = {k: [] for k in ("user_id", "request_id", "timestamp", "slot", "item_id", "clicked",
                            "hour", "weekday", "history_len", "context_only")}
    first_row = {}
    for r_no, (user, t, history, shown) in enumerate(rows):
        if user not in first_row or t < rows[first_row[user]][1]:
            first_row[user] = r_no
    history_len = {u: len(rows[r][2]) for u, r in first_row.items()}

    def emit(user, t, request, slot, nid, clicked, context_only):
        cols["user_id"].append(user_index[user])
        cols["request_id"].append(request)
        cols["timestamp"].append(t - epoch)
        cols["slot"].append(slot)
        cols["item_id"].append(item_index[nid])
        cols["clicked"].append(clicked)
        when = dt.datetime.fromtimestamp(t, dt.timezone.utc)
        cols["hour"].append(when.hour)
        cols["weekday"].append(when.weekday())
        cols["history_len"].append(history_len[user])
        cols["context_only"].append(context_only)

    for user, r_no in first_row.items():  # click histories, as context before the first list
        user_t = rows[r_no][1] - 3600
        for j, nid in enumerate(rows[r_no][2]):
            emit(user, user_t, -(user_index[user] * 100_000 + j // list_size) - 1,
                 j % list_size, nid, 1, True)
    for r_no, (user, t, _, shown) in enumerate(rows):
        for j, (nid, label) in enumerate(shown):
            emit(user, t, r_no * 1000 + j // list_size, j % list_size, nid, label, False)
    a = {k: np.asarray(v) for k, v in cols.items()}
    a["request_id"] = a["request_id"] - a["request_id"].min()  # ids >= 0
    n = len(a["user_id"])
    item_id = a["item_id"]
    log = ImpressionLog(
        user_id=a["user_id"], request_id=a["request_id"], timestamp=a["timestamp"],
        slot=a["slot"], channel=item_channel[item_id], item_id=item_id, clicked=a["clicked"],
        novel_tags=np.zeros(n, np.int64), dwell=np.zeros(n, np.float32),
        propensity=np.ones(n, np.float32), true_ctr=np.full(n, -1.0, np.float32),
        item_fields=item_fields[item_id], tags=item_tags[item_id],
        context=np.stack([a["hour"], a["weekday"]], axis=1),
        user_fields=np.searchsorted(HISTORY_BUCKETS, a["history_len"], side="right")[:, None])
    spec = FeatureSpec(
        channel_names=tuple(channels), list_size=list_size, max_tags=MAX_TAGS,
        n_users=len(user_index), n_items=n_items, n_tags=len(tag_names) + 1,
        user_field_names=("history_length_bucket",), user_field_sizes=(len(HISTORY_BUCKETS) + 1,),
        item_field_names=("subcategory",), item_field_sizes=(len(subcats) + 1,),
        context_field_names=("hour", "weekday"), context_field_sizes=(24, 7))
    return log, spec, (item_channel, item_fields, item_tags), a["context_only"].astype(bool), epoch


# --- CSV ----------------------------------------------------------------------------------------
CSV_REQUIRED = ("user_id", "item_id", "timestamp", "clicked")
CSV_OPTIONAL = ("request_id", "slot", "channel", "dwell", "propensity", "tags", "user_fields",
                "item_fields", "context")


def parse_columns(spec: str) -> dict:
    mapping = {}
    for part in filter(None, (p.strip() for p in spec.split(","))):
        key, sep, value = part.partition("=")
        if not sep or not value:
            raise ValueError(f"--columns: {part!r} is not schema_name=column")
        if key not in CSV_REQUIRED + CSV_OPTIONAL:
            raise ValueError(f"--columns: unknown schema name {key!r}; expected one of "
                             f"{CSV_REQUIRED + CSV_OPTIONAL}")
        mapping[key] = value.split("|") if key in ("user_fields", "item_fields",
                                                   "context") else value
    missing = [k for k in CSV_REQUIRED if k not in mapping]
    if missing:
        raise ValueError(f"--columns must map {missing}")
    return mapping


def _parse_time(value: str, source: str) -> int:
    try:
        seconds = float(value)
    except ValueError:
        seconds = None
    if seconds is not None:
        if not abs(seconds) < 1e11:   # finite, and within about 3,000 years of 1970
            raise SchemaError(f"{source}: timestamp {value!r} is not a time in seconds since "
                              "1970")
        return int(seconds)
    try:
        t = dt.datetime.fromisoformat(value)
    except ValueError:
        raise SchemaError(f"{source}: timestamp {value!r} is neither seconds nor ISO-8601") from None
    if t.tzinfo is None:
        t = t.replace(tzinfo=dt.timezone.utc)
    return int(t.timestamp())


def read_csv_rows(input_path: str, mapping: dict, delimiter: str = ""):
    paths = ([input_path] if os.path.isfile(input_path) else
             sorted(glob.glob(os.path.join(input_path, "*.csv"))
                    + glob.glob(os.path.join(input_path, "*.tsv"))))
    if not paths:
        raise FileNotFoundError(f"no .csv or .tsv files at {input_path}")
    needed = [c for v in mapping.values() for c in (v if isinstance(v, list) else [v])]
    records = []
    for path in paths:
        delim = delimiter or ("\t" if path.endswith(".tsv") else ",")
        name = os.path.basename(path)
        lines = (text for _, text in _utf8_lines(path))
        reader = csv.DictReader(lines, delimiter=delim)
        try:
            missing = [c for c in needed if c not in (reader.fieldnames or [])]
            if missing:
                raise SchemaError(f"{name}: columns {missing} not in header "
                                  f"{reader.fieldnames}")
            width = len(reader.fieldnames)
            for row in reader:
                source = f"{name} line {reader.line_num}"
                got = width - sum(v is None for v in row.values()) + len(row.get(None) or [])
                if got != width:
                    raise SchemaError(f"{source}: expected {width} columns (the header's), got "
                                      f"{got}")
                records.append((source, row))
        except csv.Error as e:
            raise SchemaError(f"{name} line {reader.line_num}: {e}") from None
    return records


def convert_csv(input_path: str, mapping: dict, list_size: int, delimiter: str = ""):
    records = read_csv_rows(input_path, mapping, delimiter)
    if not records:
        raise SchemaError(f"{input_path} has no data rows")

    def col(key, default=None):
        name = mapping.get(key)
        return [r[name] for _, r in records] if name else default

    def number(key, cast, default, lo=None, hi=None):
        values = col(key)
        if values is None:
            return np.full(len(records), default)
        out = np.empty(len(records), dtype=float if cast is float else np.int64)
        for i, v in enumerate(values):
            try:
                out[i] = cast(float(v)) if cast is int else cast(v)
            except (ValueError, OverflowError, TypeError):
                raise SchemaError(f"{records[i][0]}: {key} {v!r} is not a finite number") \
                    from None
            if not np.isfinite(out[i]) or (lo is not None and out[i] < lo) or (
                    hi is not None and out[i] > hi):
                raise SchemaError(f"{records[i][0]}: {key} {v!r} out of range "
                                  f"[{lo}, {hi}]")
        return out

    users = col("user_id")
    items = col("item_id")
    timestamps = np.array([_parse_time(r[mapping["timestamp"]], src) for src, r in records])
    clicked = number("clicked", int, 0, 0, 1)
    user_index, item_index = _vocab(users), _vocab(items)
    uid = np.array([user_index[u] for u in users])
    iid = np.array([item_index[i] for i in items])
    if "request_id" in mapping:
        req_vocab = _vocab(col("request_id"))
        rid = np.array([req_vocab[r] for r in col("request_id")])
    else:
        _, rid = np.unique(np.stack([uid, timestamps], 1), axis=0, return_inverse=True)
        rid = rid.ravel()
    if "slot" in mapping:
        slot = number("slot", int, 0, 0)
    else:
        order = np.lexsort((np.arange(len(rid)), rid))
        start = np.r_[0, np.flatnonzero(np.diff(rid[order]) != 0) + 1]
        pos = np.arange(len(rid)) - np.repeat(start, np.diff(np.r_[start, len(rid)]))
        slot = np.empty(len(rid), np.int64)
        slot[order] = pos
    # Lists longer than list_size become consecutive lists of list_size.
    rid = rid * (int(slot.max()) // list_size + 1) + slot // list_size
    slot = slot % list_size
    channel_names = col("channel", ["all"] * len(records))
    channels = _vocab(channel_names)
    channel = np.array([channels[c] for c in channel_names])
    tag_lists = [[t for t in v.split("|") if t][:MAX_TAGS] for v in col("tags", [""] * len(records))]
    tag_vocab = {t: i + 1 for i, t in enumerate(sorted({t for ts in tag_lists for t in ts}))}
    tags = np.zeros((len(records), MAX_TAGS), np.int64)
    for i, ts in enumerate(tag_lists):
        tags[i, :len(ts)] = [tag_vocab[t] for t in ts]

    def fields(key):
        names = mapping.get(key, [])
        mats, sizes = [], []
        for name in names:
            vocab = _vocab(r[name] for _, r in records)
            mats.append([vocab[r[name]] for _, r in records])
            sizes.append(len(vocab))
        mat = np.array(mats, np.int64).T if mats else np.zeros((len(records), 0), np.int64)
        return mat, tuple(names), tuple(sizes)

    user_fields, uf_names, uf_sizes = fields("user_fields")
    # User fields are per user in the schema: each user keeps the values of their first row.
    first = np.unique(uid, return_index=True)[1]
    user_fields = user_fields[first][np.searchsorted(np.unique(uid), uid)]
    item_fields, if_names, if_sizes = fields("item_fields")
    context, cx_names, cx_sizes = fields("context")
    epoch = int(timestamps.min()) - int(timestamps.min()) % 86400
    log = ImpressionLog(
        user_id=uid, request_id=rid, timestamp=timestamps - epoch, slot=slot, channel=channel,
        item_id=iid, clicked=clicked, novel_tags=np.zeros(len(records), np.int64),
        dwell=number("dwell", float, 0.0, 0.0).astype(np.float32) * clicked,
        propensity=number("propensity", float, 1.0, 0.0, 1.0).astype(np.float32),
        true_ctr=np.full(len(records), -1.0, np.float32), item_fields=item_fields, tags=tags,
        context=context, user_fields=user_fields)
    spec = FeatureSpec(
        channel_names=tuple(sorted(channels)), list_size=list_size, max_tags=MAX_TAGS,
        n_users=len(user_index), n_items=len(item_index), n_tags=len(tag_vocab) + 1,
        user_field_names=uf_names, user_field_sizes=uf_sizes, item_field_names=if_names,
        item_field_sizes=if_sizes, context_field_names=cx_names, context_field_sizes=cx_sizes)
    item_channel = np.zeros(len(item_index), np.int64)
    item_channel[iid] = channel
    item_f = np.zeros((len(item_index), item_fields.shape[1]), np.int64)
    item_f[iid] = item_fields
    item_t = np.zeros((len(item_index), MAX_TAGS), np.int64)
    item_t[iid] = tags
    return log, spec, (item_channel, item_f, item_t), None, epoch


# --- shared ---------------------------------------------------------------------------------
def add_novelty(log: ImpressionLog) -> None:
    """novel_tags = tags of the item not yet among the tags of the user's earlier clicks."""
    order = np.lexsort((log.slot, log.request_id, log.timestamp, log.user_id))
    profile, last_user = set(), None
    for i in order:
        u = log.user_id[i]
        if u != last_user:
            profile, last_user = set(), u
        tags = [t for t in log.tags[i] if t > 0]
        log.novel_tags[i] = sum(t not in profile for t in tags)
        if log.clicked[i]:
            profile.update(tags)


def write_dataset(log, spec, item_table, context_only, output_dir, test_start, history_context,
                  n_shards, source, extra: dict) -> dict:
    """Writes the shards, items.npz and metadata.json into OUTPUT_DIR/.partial-PID first and
    moves them into output_dir only when all are written (metadata.json last, so a folder
    holds a readable dataset only once every file it lists is in place): a conversion that
    fails or is killed leaves no file of its own in output_dir (a stale .partial-* of a killed
    run is removed by the next one)."""
    import shutil
    os.makedirs(output_dir, exist_ok=True)
    for stale in glob.glob(os.path.join(output_dir, ".partial-*")):
        shutil.rmtree(stale, ignore_errors=True)
    stage = os.path.join(output_dir, f".partial-{os.getpid()}")
    os.makedirs(stage)
    try:
        meta = _write_dataset(log, spec, item_table, context_only, stage, test_start,
                              history_context, n_shards, source, extra)
        old_meta = os.path.join(output_dir, "metadata.json")
        if os.path.exists(old_meta):          # the folder stops being the old dataset first
            try:
                with open(old_meta) as f:
                    old_files = set(json.load(f).get("sha256", {}))
            except (OSError, ValueError):
                old_files = set()
            os.remove(old_meta)
            for name in old_files - set(os.listdir(stage)):   # e.g. another shard count's
                with contextlib.suppress(OSError):
                    os.remove(os.path.join(output_dir, name))
        for name in sorted(os.listdir(stage)):
            if name != "metadata.json":
                os.replace(os.path.join(stage, name), os.path.join(output_dir, name))
        os.replace(os.path.join(stage, "metadata.json"), old_meta)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    return meta


def _write_dataset(log, spec, item_table, context_only, output_dir, test_start,
                   history_context, n_shards, source, extra: dict) -> dict:
    add_novelty(log)
    stats = {s: SplitStats(spec.n_channels, spec.list_size) for s in ("train", "test")}
    context_only = np.zeros(len(log), bool) if context_only is None else context_only
    for shard in range(n_shards):
        keep = np.flatnonzero(log.user_id % n_shards == shard)
        splits = writer.split_log(log.take(keep), test_start, history_context, context_only[keep])
        for name, (part, target) in zip(("train", "test"), splits):
            writer.write_split(output_dir, name, part, target, spec, shard, n_shards)
            stats[name].merge(writer.split_stats(spec, part, target))
    summaries = {k: v.summary(spec.channel_names) for k, v in stats.items()}
    for name, s in summaries.items():
        if s["impressions"] == 0:
            raise SchemaError(f"the {name} split is empty: --test_start must fall inside the "
                              f"log's period")
    meta = {"source": source, "spec": spec.to_json(), "splits": summaries,
            "propensity_known": bool(extra.pop("propensity_known", False)),
            "chronological_split": {"test_start_timestamp": int(test_start)},
            "shards": n_shards, "history_context": history_context, **extra}
    writer.save_item_table(output_dir, *item_table)
    return writer.write_metadata(output_dir, meta, n_shards)


def convert(fmt: str, input_dir: str, output_dir: str, test_start: int, *, list_size: int = 10,
            n_shards: int = 2, history_context: int = 100, columns: str = "",
            delimiter: str = "", flag_record: dict | None = None) -> dict:
    """The CLI's work: reads `input_dir` as `fmt` (mind or csv), writes the dataset into
    `output_dir` (write_dataset: all or nothing) and returns its metadata. Bad input raises
    SchemaError (or FileNotFoundError) naming the file and, where there is one, the line."""
    if fmt == "mind":
        log, spec, items, context_only, epoch = convert_mind(input_dir, list_size)
    elif fmt == "csv":
        log, spec, items, context_only, epoch = convert_csv(input_dir, parse_columns(columns),
                                                            list_size, delimiter)
    else:
        raise ValueError(f"format {fmt!r}: expected mind or csv")
    try:
        return write_dataset(log, spec, items, context_only, output_dir, test_start - epoch,
                             history_context, n_shards, fmt,
                             {"epoch_unix_s": epoch, "input": os.path.abspath(input_dir),
                              "flags": flag_record or {}})
    except SchemaError as e:
        first, last = (dt.datetime.fromtimestamp(epoch + t, dt.timezone.utc).date()
                       for t in (int(log.timestamp.min()), int(log.timestamp.max())))
        raise SchemaError(f"{input_dir} (rows from {first} to {last}): {e}") from None


def define_flags() -> None:
    """The CLI's flags (defined when run, so importing this module defines none)."""
    flags.DEFINE_enum("format", None, ["mind", "csv"], "Input format.")
    flags.DEFINE_string("input_dir", None, "MIND folder, or a CSV/TSV file or folder of them.")
    flags.DEFINE_string("output_dir", None, "Where shards and metadata.json are written.")
    flags.DEFINE_string("test_start", None, "First day of the test split, YYYY-MM-DD (UTC).")
    flags.DEFINE_integer("list_size", 10, "Slots per list; longer lists are cut into several.")
    flags.DEFINE_integer("n_shards", 2, "User shards to write.")
    flags.DEFINE_integer("history_context", 100, "Training impressions carried into test records.")
    flags.DEFINE_string("columns", "", "CSV: schema=column pairs, comma-separated (see --helpfull).")
    flags.DEFINE_string("delimiter", "", "CSV: field delimiter; default from the extension "
                        "(tab for .tsv, comma otherwise).")


def main(argv):
    del argv
    f = flags.FLAGS
    for name in ("format", "input_dir", "output_dir", "test_start"):
        if not f[name].value:
            raise app.UsageError(f"--{name} is required")
    try:
        test_start = _epoch(f.test_start)
    except ValueError:
        raise app.UsageError(f"--test_start={f.test_start!r} is not YYYY-MM-DD") from None
    if f.format == "csv":
        try:
            parse_columns(f.columns)
        except ValueError as e:
            raise app.UsageError(str(e))
    try:
        meta = convert(f.format, f.input_dir, f.output_dir, test_start, list_size=f.list_size,
                       n_shards=f.n_shards, history_context=f.history_context,
                       columns=f.columns, delimiter=f.delimiter,
                       flag_record={k: f[k].value for k in ("format", "input_dir",
                                                             "test_start", "list_size",
                                                             "n_shards", "columns")})
    except (SchemaError, FileNotFoundError) as e:
        raise SystemExit(f"data.convert: {e}") from None
    print(json.dumps({s: {k: meta["splits"][s][k] for k in ("users", "lists", "impressions",
                                                            "ctr")} for s in ("train", "test")}),
          file=sys.stdout)


if __name__ == "__main__":
    define_flags()
    app.run(main)
