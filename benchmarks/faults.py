"""The fault suite: each fault a user meets, run against the real CLIs, one JSON line each.

    python -m benchmarks.faults                       # every fault
    python -m benchmarks.faults --faults=fuzz_mind,fuzz_csv --fuzz_cases=1000

Every line has `fault`, `outcome` (ok / failed, with the reason in `message`), `lost_steps`
(training faults: steps done before the fault that the resumed run had to redo beyond the last
checkpoint period; null where there are none) and the fault's settings. Faults:

- sigkill_hrl_rec_train: SIGKILL of `hrl_rec.train --deterministic` at `--kills` random moments
  (some while a checkpoint is being written: the kill waits for a new file under ckpt/); the
  same command resumes and finishes, and its final weights equal an uninterrupted run's.
- sigkill_data_generate: SIGKILL of `data.generate` at random moments; the same command
  finishes and the dataset's fingerprint equals an uninterrupted generation's.
- shard_truncated / shard_bitflip / shard_deleted: `data.validate` and `hrl_rec.train` stop
  with an error naming the shard, before any training step.
- two_runs_one_model_dir: a second `hrl_rec.train` on a --model_dir a live run holds stops,
  naming the first's pid (data.files.FolderLock).
- flagfile_unknown_flag / flagfile_wrong_type / flagfile_out_of_range: the error names the flag.
- fuzz_mind / fuzz_csv: `--fuzz_cases` mutated inputs per converter (truncation, wrong column
  counts, bad dates, non-UTF-8 bytes, unknown categories, random byte flips) through
  data.convert.convert: each either converts or raises SchemaError naming the file (and the
  line where there is one); never another exception, and a failed conversion leaves nothing
  in the output folder.
"""
from __future__ import annotations

import glob
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback

from absl import app, flags

from benchmarks.common import emit  # noqa: F401  (the JSON-line convention)

FLAGS = flags.FLAGS
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# --- converter fuzzing ----------------------------------------------------------------------

NEWS_ROWS = [f"N{i}\t{['sports', 'news', 'finance'][i % 3]}\tsub{i % 4}\tTitle {i}\tabs\turl\t"
             + (f'[{{"Label": "E", "WikidataId": "Q{i}"}}]' if i % 2 else "[]") + "\t[]"
             for i in range(1, 16)]


def mind_sample(rng: random.Random, rows: int = 24) -> dict:
    """{file name: text} of a small valid MIND folder: 24 behaviors rows over 3 days."""
    lines = []
    for r in range(rows):
        day, hour = 11 + r * 3 // rows, 1 + r % 11
        shown = " ".join(f"N{rng.randint(1, 18)}-{int(rng.random() < 0.3)}"
                         for _ in range(rng.randint(2, 12)))
        history = " ".join(f"N{rng.randint(1, 15)}" for _ in range(rng.randint(0, 4)))
        lines.append(f"{r + 1}\tU{r % 7}\t11/{day}/2019 {hour}:00:00 AM\t{history}\t{shown}")
    return {"behaviors.tsv": "\n".join(lines) + "\n", "news.tsv": "\n".join(NEWS_ROWS) + "\n"}


def csv_sample(rng: random.Random, rows: int = 60) -> dict:
    lines = ["uid,iid,ts,click,cat,dwell"]
    for r in range(rows):
        ts = 1573430400 + r * 4 * 86400 // rows          # 2019-11-11 .. 11-14
        lines.append(f"u{r % 9},i{rng.randint(0, 20)},{ts},{int(rng.random() < 0.2)},"
                     f"{rng.choice(['a', 'b', 'c'])},{rng.random() * 30:.1f}")
    return {"log.csv": "\n".join(lines) + "\n"}


CSV_COLUMNS = "user_id=uid,item_id=iid,timestamp=ts,clicked=click,channel=cat,dwell=dwell"
MUTATIONS = ("truncate", "drop_column", "extra_column", "bad_date", "non_utf8", "unknown_category",
             "byte_flip", "empty_file", "blank_lines", "bad_number")


def mutate(files: dict, rng: random.Random, kind: str) -> tuple[dict, str]:
    """One mutation of one file -> ({name: bytes}, description)."""
    name = rng.choice(sorted(files))
    data = {k: v.encode() for k, v in files.items()}
    text = files[name]
    lines = text.split("\n")
    i = rng.randrange(max(len(lines) - 1, 1))
    sep = "\t" if name.endswith(".tsv") else ","
    if kind == "truncate":
        data[name] = data[name][:rng.randrange(len(data[name]) + 1)]
    elif kind == "drop_column":
        cols = lines[i].split(sep)
        cols.pop(rng.randrange(len(cols)))
        lines[i] = sep.join(cols)
        data[name] = "\n".join(lines).encode()
    elif kind == "extra_column":
        lines[i] += sep + "x"
        data[name] = "\n".join(lines).encode()
    elif kind == "bad_date":
        cols = lines[i].split(sep)
        j = 2 if name == "behaviors.tsv" else (2 if name.endswith(".csv") else 0)
        if j < len(cols):
            cols[j] = rng.choice(["2019-13-45", "yesterday", "", "11/31/2019 25:00:00 PM", "-1e9"])
        lines[i] = sep.join(cols)
        data[name] = "\n".join(lines).encode()
    elif kind == "non_utf8":
        raw = data[name]
        at = rng.randrange(len(raw) + 1)
        data[name] = raw[:at] + rng.choice([b"\xff\xfe", b"\xc3", b"\x80\x80", b"\xed\xa0\x80"]) + raw[at:]
    elif kind == "unknown_category":
        cols = lines[i].split(sep)
        j = 1 if name == "news.tsv" else (4 if name.endswith(".csv") else 1)
        if j < len(cols):
            cols[j] = "never_seen_" + str(rng.randrange(100))
        lines[i] = sep.join(cols)
        data[name] = "\n".join(lines).encode()
    elif kind == "byte_flip":
        raw = bytearray(data[name])
        for _ in range(rng.randint(1, 4)):
            if raw:
                raw[rng.randrange(len(raw))] ^= 1 << rng.randrange(8)
        data[name] = bytes(raw)
    elif kind == "empty_file":
        data[name] = b""
    elif kind == "blank_lines":
        lines.insert(i, "")
        data[name] = "\n".join(lines).encode()
    elif kind == "bad_number":
        cols = lines[i].split(sep)
        j = rng.randrange(len(cols))
        cols[j] = rng.choice(["NaN", "inf", "1e400", "-3", "0x1F", "1,5", "true"])
        lines[i] = sep.join(cols)
        data[name] = "\n".join(lines).encode()
    return data, f"{kind} in {name} line {i + 1}"


def fuzz_case(fmt: str, case: int, seed: int, workdir: str) -> dict:
    """One mutated input through data.convert.convert -> {"ok": bool, "result": ..., ...}."""
    from data import convert
    from data.schema import SchemaError
    rng = random.Random(seed * 1_000_003 + case)
    files = mind_sample(rng) if fmt == "mind" else csv_sample(rng)
    kind = MUTATIONS[case % len(MUTATIONS)]
    data, what = mutate(files, rng, kind)
    folder = os.path.join(workdir, f"{fmt}-{case}")
    inp, out = os.path.join(folder, "in"), os.path.join(folder, "out")
    os.makedirs(inp)
    for name, raw in data.items():
        with open(os.path.join(inp, name), "wb") as f:
            f.write(raw)
    record = {"case": case, "mutation": what}
    try:
        convert.convert(fmt, inp, out, convert._epoch("2019-11-13"), n_shards=1,
                        columns=CSV_COLUMNS if fmt == "csv" else "")
        record.update(ok=True, result="converted")
    except (SchemaError, FileNotFoundError) as e:
        message = str(e)
        names_file = any(name in message for name in data) or inp in message
        left = sorted(os.listdir(out)) if os.path.isdir(out) else []
        record.update(ok=names_file and not left, result="error", message=message[:300],
                      left_in_output=left)
        if not names_file:
            record["why"] = "the error does not name the file"
    except Exception as e:  # noqa: BLE001 - any other exception is a traceback for a user
        record.update(ok=False, result="traceback", message=f"{type(e).__name__}: {e}"[:300],
                      traceback=traceback.format_exc()[-1500:])
    shutil.rmtree(folder, ignore_errors=True)
    return record


def fuzz(fmt: str, cases: int, seed: int = 0) -> dict:
    """`cases` mutated inputs of one converter -> summary with the failed cases."""
    workdir = tempfile.mkdtemp(prefix=f"fuzz-{fmt}-")
    counts, failed, start = {}, [], time.monotonic()
    try:
        for case in range(cases):
            r = fuzz_case(fmt, case, seed, workdir)
            counts[r["result"]] = counts.get(r["result"], 0) + 1
            if not r["ok"]:
                failed.append(r)
            if cases >= 100 and (case + 1) % (cases // 10) == 0:
                rate = (case + 1) / (time.monotonic() - start)
                print(f"faults: fuzz_{fmt} {case + 1}/{cases} ({rate:.1f}/s, ETA "
                      f"{(cases - case - 1) / rate:.0f} s)", file=sys.stderr, flush=True)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return {"cases": cases, "counts": counts, "failed": failed}
