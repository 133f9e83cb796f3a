"""The fault suite: each fault a user meets, run against the real CLIs, one JSON line each.

    python -m benchmarks.faults                       # every fault
    python -m benchmarks.faults --faults=fuzz_mind,fuzz_csv --fuzz_cases=1000

Every line has `fault`, `outcome` (ok / failed, with the reason in `message`), `lost_steps`
(training faults: steps done before the fault that the resumed run had to redo beyond the last
checkpoint period; null where there are none) and the fault's settings. Faults:

- sigkill_hrl_rec_train: SIGKILL of `hrl_rec.train --deterministic` at `--kills` random moments
  (some while a checkpoint is being written: the kill waits for a new file under ckpt/); the
  same command resumes and finishes, and its final weights equal an uninterrupted run's.
- sigkill_baselines_train: SIGKILL of `baselines.train --deterministic` (FM, 3 epochs) at
  `--kills` random moments (some while an epoch checkpoint is written); the same command
  resumes from the last finished epoch (its checkpoint period) and ends with the
  uninterrupted run's best weights and test AUC.
- sigkill_grid: SIGKILL of an experiment grid (experiments.grid: LR and FM x 2 seeds of
  `baselines.train --deterministic`) at random moments, between and inside runs: no trainer
  outlives it, and the rerun finishes every job with the uninterrupted grid's test AUCs.
- sigkill_data_generate: SIGKILL of `data.generate` at random moments; the same command
  finishes and the dataset's fingerprint equals an uninterrupted generation's.
- shard_truncated / shard_bitflip / shard_deleted: `data.validate` and `hrl_rec.train` stop
  with an error naming the shard, before any training step.
- two_runs_one_model_dir: a second `hrl_rec.train` on a --model_dir a live run holds stops,
  naming the first's pid (data.files.FolderLock).
- flagfile_unknown_flag / flagfile_wrong_type / flagfile_out_of_range: the error names the flag.
- disk_full / read_only_model_dir: a run is resumed on a tmpfs too small for its next
  checkpoint, or remounted read-only (needs mount, i.e. root; else `skipped`): the error
  names the path, the last good checkpoint survives, and the same command resumes from it
  once there is room.
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


# --- helpers for the CLI faults -------------------------------------------------------------

TINY_DATA = ["--n_users=150", "--n_days=4", "--test_days=1"]
TINY_TRAIN = ["--max_seq_len=4", "--embedding_dim=4", "--hidden_dim=8", "--heads=2",
              "--batch_size=8", "--candidates_per_channel=2", "--validate_data=false",
              "--epochs=2", "--patience=2", "--log_every=4"]


def cli(module: str, *args, timeout: float = 900) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", module, *args], cwd=REPO, capture_output=True,
                          text=True, timeout=timeout)


def tiny_dataset(folder: str, n_shards: int = 1) -> str:
    done = cli("data.generate", *TINY_DATA, f"--n_shards={n_shards}", "--processes=1",
               f"--output_dir={folder}")
    if done.returncode != 0:
        raise RuntimeError(f"data.generate failed: {done.stderr[-2000:]}")
    return folder


def weights_of(path: str) -> dict:
    """{dataset path: array} of a Keras .weights.h5 file."""
    import h5py
    out = {}
    with h5py.File(path, "r") as f:
        f.visititems(lambda name, obj: out.__setitem__(name, obj[()])
                     if isinstance(obj, h5py.Dataset) else None)
    return out


def same_weights(a: str, b: str) -> bool:
    import numpy as np
    wa, wb = weights_of(a), weights_of(b)
    return wa.keys() == wb.keys() and all(np.array_equal(wa[k], wb[k]) for k in wa)


def last_step(text: str) -> int:
    """The highest global step a run's progress lines or its resume line report (0 if none):
    the progress line counts steps within an epoch, so earlier epochs' counts are added."""
    import re
    best, per_epoch = 0, {}
    for line in text.splitlines():
        m = re.search(r"epoch (\d+)/\d+: (\d+)/\d+ steps", line)
        if m:
            epoch, step = int(m.group(1)), int(m.group(2))
            per_epoch[epoch] = max(per_epoch.get(epoch, 0), step)
            best = max(best, sum(v for e, v in per_epoch.items() if e < epoch) + step)
        m = re.search(r"at step (\d+), epoch", line)
        if m:
            best = max(best, int(m.group(1)))
    return best


def kill_at(cmd: list[str], delay: float | None, watch: str | None, log_path: str,
            after_step: int | None = None, deadline: float = 600.0) -> tuple[int, str]:
    """Starts cmd and SIGKILLs it: `delay` s after it reports step `after_step` (or after
    start), or as soon as a new file appears under `watch` (a checkpoint or shard being
    written); -> (returncode, what it printed)."""
    with open(log_path, "w") as log:
        p = subprocess.Popen(cmd, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
        start = time.monotonic()
        before = set(glob.glob(os.path.join(watch, "*"))) if watch else set()
        armed = None if after_step else start
        while p.poll() is None and time.monotonic() - start < deadline:
            if armed is None:
                with open(log_path) as f:
                    if last_step(f.read()) >= after_step:
                        armed = time.monotonic()
            if delay is not None and armed is not None and time.monotonic() - armed >= delay:
                break
            if watch and set(glob.glob(os.path.join(watch, "*"))) - before:
                break
            time.sleep(0.01 if watch else 0.05)
        if p.poll() is None:
            p.send_signal(signal.SIGKILL)
        p.wait()
    with open(log_path) as f:
        return p.returncode, f.read()


def result(fault: str, ok: bool, message: str, lost_steps=None, **settings) -> dict:
    return {"fault": fault, "outcome": "ok" if ok else "failed", "lost_steps": lost_steps,
            "message": message, **settings}


# --- the faults -----------------------------------------------------------------------------

def fault_sigkill_hrl_rec_train(work: str, kills: int, seed: int) -> list[dict]:
    """SIGKILL at random moments and during checkpoint writes; resume; compare with an
    uninterrupted --deterministic run."""
    data = tiny_dataset(os.path.join(work, "data"))
    every = 4
    args = [f"--data_dir={data}", *TINY_TRAIN, "--deterministic", f"--checkpoint_every={every}"]
    ref = os.path.join(work, "reference")
    done = cli("hrl_rec.train", *args, f"--model_dir={ref}")
    if done.returncode != 0:
        return [result("sigkill_hrl_rec_train", False, f"reference run failed: "
                       f"{done.stderr[-500:]}")]
    total = json.load(open(os.path.join(ref, "eval.json")))["steps"]
    rng = random.Random(seed)
    out = []
    for k in range(kills):
        run = os.path.join(work, f"killed_{k}")
        during_checkpoint = k % 3 == 2
        # a random step of the run, then a random fraction of a second: mid-training
        target, delay = rng.randrange(1, max(total - 2, 2)), rng.uniform(0.0, 1.0)
        cmd = [sys.executable, "-m", "hrl_rec.train", *args, f"--model_dir={run}"]
        if during_checkpoint:
            # wait for the first checkpoint, then kill while the next one is written
            os.makedirs(os.path.join(run, "ckpt"), exist_ok=True)
            code, printed = kill_at(cmd, None, os.path.join(run, "ckpt"),
                                    os.path.join(work, f"killed_{k}.log"))
            moment = "during a checkpoint write"
        else:
            code, printed = kill_at(cmd, delay, None, os.path.join(work, f"killed_{k}.log"),
                                    after_step=target)
            moment = f"{delay:.2f} s after step {target} of {total}"
        done_before = last_step(printed)
        resumed = cli("hrl_rec.train", *args, f"--model_dir={run}")
        if resumed.returncode != 0:
            out.append(result("sigkill_hrl_rec_train", False, f"kill {k} ({moment}): the rerun "
                              f"failed: {resumed.stderr[-400:]}", kill=k))
            continue
        import re
        m = re.search(r"resumed from .* at step (\d+)", resumed.stdout + resumed.stderr)
        restored = int(m.group(1)) if m else 0
        lost = max(done_before - restored, 0)
        same = same_weights(os.path.join(ref, "best.weights.h5"),
                            os.path.join(run, "best.weights.h5"))
        with open(os.path.join(ref, "eval.json")) as f1, open(os.path.join(run,
                                                                           "eval.json")) as f2:
            auc_ref, auc_run = json.load(f1)["auc"], json.load(f2)["auc"]
        ok = same and auc_ref == auc_run and lost <= every and (code == -signal.SIGKILL
                                                                 or code == 0)
        out.append(result(
            "sigkill_hrl_rec_train", ok,
            f"kill {k} {moment} (exit {code}) at step >= {done_before}; resumed at step "
            f"{restored}; final weights {'equal' if same else 'DIFFER from'} the uninterrupted "
            f"run's; test AUC {auc_run:.6f} vs {auc_ref:.6f}"
            + ("" if code == -signal.SIGKILL else " (it finished before the kill)"),
            lost, kill=k, checkpoint_every=every))
    return out


def fault_sigkill_baselines_train(work: str, kills: int, seed: int) -> list[dict]:
    """SIGKILL baselines.train at random moments and while an epoch checkpoint is written;
    the same command resumes from its last finished epoch; compare with an uninterrupted
    --deterministic run. lost_steps: steps of finished epochs the rerun had to train again
    (a kill between an epoch's validation line and its checkpoint loses that epoch: one
    checkpoint period)."""
    import re
    data = tiny_dataset(os.path.join(work, "data"))
    args = ["--model=fm", f"--data_dir={data}", "--epochs=3", "--patience=5",
            "--batch_size=64", "--learning_rate=0.01", "--max_seq_len=5", "--deterministic"]
    ref = os.path.join(work, "reference")
    start = time.monotonic()
    done = cli("baselines.train", *args, f"--model_dir={ref}")
    wall = time.monotonic() - start
    if done.returncode != 0:
        return [result("sigkill_baselines_train", False, f"reference run failed: "
                       f"{done.stderr[-500:]}")]
    with open(os.path.join(ref, "eval.json")) as f:
        reference = json.load(f)
    per_epoch = reference["steps"] // 3
    rng = random.Random(seed)
    out = []
    for k in range(kills):
        run = os.path.join(work, f"killed_{k}")
        cmd = [sys.executable, "-m", "baselines.train", *args, f"--model_dir={run}"]
        if k % 3 == 2:   # wait for the first epoch's checkpoint, kill while the next is written
            os.makedirs(os.path.join(run, "ckpt"), exist_ok=True)
            code, printed = kill_at(cmd, None, os.path.join(run, "ckpt"),
                                    os.path.join(work, f"killed_{k}.log"))
            moment = "during an epoch checkpoint write"
        else:
            delay = rng.uniform(0.2, 1.0) * wall
            code, printed = kill_at(cmd, delay, None, os.path.join(work, f"killed_{k}.log"))
            moment = f"{delay:.1f} s after start (the whole run takes {wall:.1f} s)"
        finished = len(re.findall(r"^epoch \d+: valid auc", printed, re.M))
        resumed = cli("baselines.train", *args, f"--model_dir={run}")
        if resumed.returncode != 0:
            out.append(result("sigkill_baselines_train", False, f"kill {k} ({moment}): the "
                              f"rerun failed: {resumed.stderr[-400:]}", kill=k))
            continue
        m = re.search(r"resumed from .* after epoch (\d+)", resumed.stdout)
        restored = int(m.group(1)) if m else 0
        lost_epochs = max(finished - restored, 0)
        same = same_weights(os.path.join(ref, "best.weights.h5"),
                            os.path.join(run, "best.weights.h5"))
        with open(os.path.join(run, "eval.json")) as f:
            auc_run = json.load(f)["auc"]
        ok = (same and auc_run == reference["auc"] and lost_epochs <= 1
              and code in (-signal.SIGKILL, 0))
        out.append(result(
            "sigkill_baselines_train", ok,
            f"kill {k} {moment} (exit {code}) after {finished} finished epoch(s); resumed "
            f"after epoch {restored}; best weights {'equal' if same else 'DIFFER from'} the "
            f"uninterrupted run's; test AUC {auc_run:.6f} vs {reference['auc']:.6f}"
            + ("" if code == -signal.SIGKILL else " (it finished before the kill)"),
            lost_epochs * per_epoch, kill=k, checkpoint_every="1 epoch"))
    return out


GRID_CODE = """
import sys
from experiments import grid
data, runs = sys.argv[1], sys.argv[2]
settings = [grid.Setting(m, m, "baselines.train", (f"--model={m}", f"--data_dir={data}",
            "--epochs=2", "--batch_size=64", "--learning_rate=0.01", "--max_seq_len=5",
            "--deterministic")) for m in ("lr", "fm")]
results = grid.run_grid(settings, [0, 1], runs, "grid")
print(sorted((k[0], k[1], r["auc"]) for k, r in results.items()))
"""


def fault_sigkill_grid(work: str, kills: int, seed: int) -> list[dict]:
    """SIGKILL a 4-job grid at random moments; no trainer may outlive it; the rerun resumes
    job by job and ends with the uninterrupted grid's AUCs."""
    import ast
    data = tiny_dataset(os.path.join(work, "data"))
    start = time.monotonic()
    ref = subprocess.run([sys.executable, "-c", GRID_CODE, data, os.path.join(work, "ref")],
                         cwd=REPO, capture_output=True, text=True, timeout=1800)
    wall = time.monotonic() - start
    if ref.returncode != 0:
        return [result("sigkill_grid", False, f"reference grid failed: {ref.stderr[-500:]}")]
    want = ast.literal_eval(ref.stdout.strip().splitlines()[-1])
    rng = random.Random(seed)
    out = []
    for k in range(max(kills // 3, 1)):
        runs = os.path.join(work, f"killed_{k}")
        delay = rng.uniform(0.1, 0.9) * wall
        code, _ = kill_at([sys.executable, "-c", GRID_CODE, data, runs], delay, None,
                          os.path.join(work, f"killed_{k}.log"))
        gone = time.monotonic() + 5.0
        alive = _lock_pids(runs)
        while time.monotonic() < gone:
            alive = [pid for pid in _lock_pids(runs) if running(pid)]
            if not alive:
                break
            time.sleep(0.1)
        rerun = subprocess.run([sys.executable, "-c", GRID_CODE, data, runs], cwd=REPO,
                               capture_output=True, text=True, timeout=1800)
        got = (ast.literal_eval(rerun.stdout.strip().splitlines()[-1])
               if rerun.returncode == 0 else None)
        ok = not alive and got == want and code in (-signal.SIGKILL, 0)
        out.append(result(
            "sigkill_grid", ok,
            f"kill {k} {delay:.1f} s into the grid (the whole grid takes {wall:.1f} s; exit "
            f"{code}); trainers left running: {alive or 'none'}; the rerun "
            + ("ended with the uninterrupted grid's AUCs" if got == want else
               f"gave {got or rerun.stderr[-300:]} against {want}"),
            None, kill=k))
    return out


def running(pid: int) -> bool:
    """Whether process `pid` runs: it exists and is not a zombie (a killed orphan stays in
    /proc until init reaps it)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def _lock_pids(runs_dir: str) -> list[int]:
    """The pids recorded in the lock files of a grid's run folders."""
    pids = []
    for path in glob.glob(os.path.join(runs_dir, "*", ".lock")):
        try:
            with open(path) as f:
                pids.append(int(json.load(f)["pid"]))
        except (OSError, ValueError, KeyError):
            pass
    return pids


def fault_sigkill_data_generate(work: str, kills: int, seed: int) -> list[dict]:
    """SIGKILL data.generate at random moments and while a shard is written; the same command
    finishes with the uninterrupted run's fingerprint."""
    args = [*TINY_DATA, "--n_shards=4", "--processes=1"]
    ref = os.path.join(work, "gen_reference")
    t0 = time.monotonic()
    done = cli("data.generate", *args, f"--output_dir={ref}")
    wall = time.monotonic() - t0
    if done.returncode != 0:
        return [result("sigkill_data_generate", False, f"reference failed: {done.stderr[-400:]}")]
    with open(os.path.join(ref, "metadata.json")) as f:
        want = json.load(f)["fingerprint"]
    rng, out = random.Random(seed + 1), []
    for k in range(kills):
        folder = os.path.join(work, f"gen_killed_{k}")
        cmd = [sys.executable, "-m", "data.generate", *args, f"--output_dir={folder}"]
        if k % 3 == 2:
            os.makedirs(folder, exist_ok=True)
            code, _ = kill_at(cmd, None, folder, os.path.join(work, f"gen_killed_{k}.log"))
            moment = "as a shard file appeared"
        else:
            delay = rng.uniform(0.2, 0.9) * wall
            code, _ = kill_at(cmd, delay, None, os.path.join(work, f"gen_killed_{k}.log"))
            moment = f"after {delay:.1f} s"
        again = cli("data.generate", *args, f"--output_dir={folder}")
        if again.returncode != 0:
            out.append(result("sigkill_data_generate", False, f"kill {k} ({moment}): the rerun "
                              f"failed: {again.stderr[-400:]}", kill=k))
            continue
        with open(os.path.join(folder, "metadata.json")) as f:
            got = json.load(f)["fingerprint"]
        valid = cli("data.validate", f"--data_dir={folder}")
        out.append(result("sigkill_data_generate", got == want and valid.returncode == 0,
                          f"kill {k} {moment} (exit {code}); rerun fingerprint {got}, "
                          f"uninterrupted {want}; data.validate exit {valid.returncode}",
                          kill=k))
    return out


def _corrupt(path: str, how: str, rng: random.Random) -> None:
    if how == "deleted":
        os.remove(path)
        return
    with open(path, "rb") as f:
        raw = bytearray(f.read())
    if how == "truncated":
        raw = raw[:rng.randrange(1, len(raw))]
    else:                                           # bitflip
        i = rng.randrange(len(raw))
        raw[i] ^= 1 << rng.randrange(8)
    with open(path, "wb") as f:
        f.write(bytes(raw))


def fault_shards(work: str, seed: int) -> list[dict]:
    """A truncated, a bit-flipped and a deleted shard: data.validate and hrl_rec.train stop
    with an error naming the file, before any training step."""
    rng, out = random.Random(seed + 2), []
    clean = tiny_dataset(os.path.join(work, "shards_clean"), n_shards=2)
    for how in ("truncated", "bitflip", "deleted"):
        data = os.path.join(work, f"shards_{how}")
        shutil.copytree(clean, data)
        victim = sorted(glob.glob(os.path.join(data, "train-*")))[rng.randrange(2)]
        _corrupt(victim, how, rng)
        name = os.path.basename(victim)
        validate = cli("data.validate", f"--data_dir={data}")
        model_dir = os.path.join(work, f"shards_{how}_run")
        train = cli("hrl_rec.train", f"--data_dir={data}", f"--model_dir={model_dir}",
                    *[a for a in TINY_TRAIN if not a.startswith("--validate_data")])
        steps = last_step(train.stdout + train.stderr)
        problems = []
        for label, done in (("data.validate", validate), ("hrl_rec.train", train)):
            if done.returncode == 0:
                problems.append(f"{label} succeeded")
            elif name not in done.stderr:
                problems.append(f"{label}'s error does not name {name}: "
                                f"{done.stderr.strip().splitlines()[-1][:200]}")
            elif "Traceback" in done.stderr:
                problems.append(f"{label} printed a traceback")
        if steps:
            problems.append(f"hrl_rec.train ran {steps} steps first")
        message = "; ".join(problems) or (
            f"{name} {how}: both stop naming it: "
            + validate.stderr.strip().splitlines()[-1][:200])
        out.append(result(f"shard_{how}", not problems, message, shard=name))
    return out


def fault_two_runs(work: str) -> list[dict]:
    data = tiny_dataset(os.path.join(work, "two_runs_data"))
    model_dir = os.path.join(work, "two_runs")
    args = [f"--data_dir={data}", f"--model_dir={model_dir}", *TINY_TRAIN, "--epochs=4"]
    first = subprocess.Popen([sys.executable, "-m", "hrl_rec.train", *args], cwd=REPO,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    lock = os.path.join(model_dir, ".lock")
    start = time.monotonic()
    while not os.path.exists(lock) and first.poll() is None and time.monotonic() - start < 300:
        time.sleep(0.1)
    second = cli("hrl_rec.train", *args)
    first_alive = first.poll() is None
    first.kill()
    first.wait()
    ok = (second.returncode != 0 and f"in use by pid {first.pid}" in second.stderr
          and "Traceback" not in second.stderr and first_alive)
    last = (second.stderr.strip().splitlines() or [""])[-1]
    return [result("two_runs_one_model_dir", ok, last[:300] if ok else
                   f"second run exit {second.returncode}, first alive {first_alive}: "
                   f"{last[:300]}")]


FLAGFILES = {
    "flagfile_unknown_flag": ("--epoch=2\n", "epoch"),
    "flagfile_wrong_type": ("--epochs=two\n", "epochs"),
    "flagfile_out_of_range": ("--gamma=1.5\n", "gamma"),
}


def fault_flagfiles(work: str) -> list[dict]:
    """A flagfile with an unknown flag, a wrong type or an out-of-range value: the error names
    it, before anything is trained."""
    data = tiny_dataset(os.path.join(work, "flags_data"))
    out = []
    for fault, (text, flag) in FLAGFILES.items():
        path = os.path.join(work, f"{fault}.flags")
        with open(path, "w") as f:
            f.write(f"--data_dir={data}\n" + text)
        done = cli("hrl_rec.train", f"--flagfile={path}",
                   f"--model_dir={os.path.join(work, fault)}", *TINY_TRAIN[:6])
        said = [line for line in done.stderr.splitlines()
                if f"--{flag}" in line or f"'{flag}'" in line]
        ok = done.returncode != 0 and bool(said) and "Traceback" not in done.stderr
        out.append(result(fault, ok, (said or done.stderr.strip().splitlines() or [""])[0][:300],
                          flagfile=text.strip()))
    return out


def fault_fuzz(fmt: str, cases: int, seed: int) -> list[dict]:
    r = fuzz(fmt, cases, seed)
    failed = r["failed"]
    message = (f"{cases} mutated inputs: {r['counts']}" if not failed else
               f"{len(failed)} of {cases} failed, first: {failed[0]['mutation']}: "
               f"{failed[0]['message']}")
    return [result(f"fuzz_{fmt}", not failed, message, cases=cases, counts=r["counts"])]


def _mount_tmpfs(path: str, size_bytes: int) -> bool:
    os.makedirs(path, exist_ok=True)
    return subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_bytes}", "tmpfs", path],
                          capture_output=True).returncode == 0


def _umount(path: str) -> None:
    subprocess.run(["umount", "-l", path], capture_output=True)


def _du(path: str) -> int:
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(path) for f in fs)


def _checkpoints(model_dir: str) -> list[str]:
    return sorted(glob.glob(os.path.join(model_dir, "ckpt", "ckpt-*.index")))


def fault_unwritable(work: str) -> list[dict]:
    """A full disk and a read-only --model_dir: a run trained 8 steps is copied onto a tmpfs
    with 300 KB to spare (the next checkpoint, 570 KB, cannot fit) or remounted read-only, and
    resumed there. The error must name the path, without a traceback; the last good checkpoint
    must survive, and the same command must resume from it once there is room. Needs mount
    (root); where mount is refused the fault is reported `skipped`."""
    data = tiny_dataset(os.path.join(work, "unwritable_data"))
    out = []
    for fault in ("disk_full", "read_only_model_dir"):
        seed_run = os.path.join(work, f"{fault}_seed")
        first = cli("hrl_rec.train", f"--data_dir={data}", f"--model_dir={seed_run}",
                    *TINY_TRAIN, "--checkpoint_every=4", "--max_steps=8")
        if first.returncode != 0 or not _checkpoints(seed_run):
            out.append(result(fault, False, f"the first run failed: {first.stderr[-300:]}"))
            continue
        os.remove(os.path.join(seed_run, ".lock")) if os.path.exists(
            os.path.join(seed_run, ".lock")) else None
        mount = os.path.join(work, f"{fault}_mnt")
        if not _mount_tmpfs(mount, _du(seed_run) + 300_000 + 64_000):
            out.append({**result(fault, False, "mount -t tmpfs refused (needs root): not run"),
                        "outcome": "skipped"})
            continue
        try:
            model_dir = os.path.join(mount, "run")
            shutil.copytree(seed_run, model_dir)
            good = _checkpoints(model_dir)
            if fault == "read_only_model_dir":
                subprocess.run(["mount", "-o", "remount,ro", mount], check=True)
            args = [f"--data_dir={data}", f"--model_dir={model_dir}", *TINY_TRAIN,
                    "--checkpoint_every=4"]
            done = cli("hrl_rec.train", *args)
            survived = all(os.path.exists(p) for p in good)
            if fault == "read_only_model_dir":
                subprocess.run(["mount", "-o", "remount,rw", mount], check=True)
            # room again: the same command resumes from the last good checkpoint
            room = os.path.join(work, f"{fault}_after")
            shutil.copytree(model_dir, room)
            resumed = cli("hrl_rec.train", *[a.replace(model_dir, room) for a in args])
        finally:
            _umount(mount)
        text = done.stderr.strip().splitlines()
        last = text[-1] if text else ""
        ok = (done.returncode != 0 and "Traceback" not in done.stderr and model_dir in last
              and survived and resumed.returncode == 0
              and "resumed from" in resumed.stdout + resumed.stderr)
        out.append(result(fault, ok, f"exit {done.returncode}: {last[:300]}"
                          + ("" if survived else "; the last good checkpoint is gone")
                          + ("" if resumed.returncode == 0 else
                             f"; the rerun failed: {resumed.stderr[-200:]}")
                          + ("" if "Traceback" not in done.stderr else "; a traceback"),
                          checkpoints_before=[os.path.basename(p) for p in good]))
    return out


FAULTS = ("sigkill_hrl_rec_train", "sigkill_baselines_train", "sigkill_grid",
          "sigkill_data_generate", "shards", "two_runs", "flagfiles",
          "unwritable", "fuzz_mind", "fuzz_csv")


def define_flags() -> None:
    flags.DEFINE_list("faults", list(FAULTS), f"Which faults to run, of {FAULTS}.")
    flags.DEFINE_integer("kills", 10, "SIGKILLs per CLI.")
    flags.DEFINE_integer("fuzz_cases", 1000, "Mutated inputs per converter.")
    flags.DEFINE_integer("seed", 0, "Seed of the kill moments, corruptions and mutations.")
    flags.DEFINE_string("work_dir", "", "Scratch folder (default: a temporary one, removed).")


def main(argv):
    del argv
    bad = [f for f in FLAGS.faults if f not in FAULTS]
    if bad:
        raise app.UsageError(f"--faults: {bad} unknown; expected some of {FAULTS}")
    work = FLAGS.work_dir or tempfile.mkdtemp(prefix="faults-")
    os.makedirs(work, exist_ok=True)
    runs = {
        "sigkill_hrl_rec_train": lambda: fault_sigkill_hrl_rec_train(
            os.path.join(work, "train"), FLAGS.kills, FLAGS.seed),
        "sigkill_baselines_train": lambda: fault_sigkill_baselines_train(
            os.path.join(work, "baselines"), FLAGS.kills, FLAGS.seed),
        "sigkill_grid": lambda: fault_sigkill_grid(os.path.join(work, "grid"), FLAGS.kills,
                                                   FLAGS.seed),
        "sigkill_data_generate": lambda: fault_sigkill_data_generate(
            os.path.join(work, "generate"), FLAGS.kills, FLAGS.seed),
        "shards": lambda: fault_shards(os.path.join(work, "shards"), FLAGS.seed),
        "two_runs": lambda: fault_two_runs(os.path.join(work, "two")),
        "flagfiles": lambda: fault_flagfiles(os.path.join(work, "flags")),
        "unwritable": lambda: fault_unwritable(os.path.join(work, "unwritable")),
        "fuzz_mind": lambda: fault_fuzz("mind", FLAGS.fuzz_cases, FLAGS.seed),
        "fuzz_csv": lambda: fault_fuzz("csv", FLAGS.fuzz_cases, FLAGS.seed),
    }
    failed = 0
    try:
        for i, name in enumerate(FLAGS.faults):
            t0 = time.monotonic()
            print(f"faults: {name} ({i + 1}/{len(FLAGS.faults)})", file=sys.stderr, flush=True)
            for record in runs[name]():
                record["seconds"] = round(time.monotonic() - t0, 1)
                failed += record["outcome"] != "ok"
                print(json.dumps(record), flush=True)
    finally:
        if not FLAGS.work_dir:
            shutil.rmtree(work, ignore_errors=True)
    if failed:
        raise SystemExit(f"faults: {failed} fault(s) not handled")


if __name__ == "__main__":
    define_flags()
    app.run(main)
