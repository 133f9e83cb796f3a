"""Runs a grid of training jobs (settings x seeds), one process each, and collects their eval.json.

Job (setting, seed) runs `python -m MODULE ARGS --seed=SEED --model_dir=RUNS/SETTING__SEED`
with its output in that folder's `train.log`; the command is kept in `job.json` beside it. A job
whose eval.json exists is not run again, and a job cut off in the middle resumes from its last
checkpoint (the trainers resume an existing --model_dir), so an interrupted grid continues where
it stopped. A folder made by another command is an error, never silently reused.
"""
from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import time

from data.progress import Progress
from data.files import write_json


def _die_with_parent() -> None:
    """Runs in the trainer's process before exec (Linux): the kernel sends it SIGKILL when the
    grid process dies, so a grid killed mid-run leaves no trainer behind. The trainer's
    --model_dir lock is then stale and the rerun takes it over and resumes the run."""
    import ctypes
    import signal
    pr_set_pdeathsig = 1
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)


@dataclasses.dataclass(frozen=True)
class Setting:
    """One row of an experiment table: a trainer module and the flags that make the setting."""

    name: str  # run folder prefix, e.g. "no_gru"
    label: str  # row label, e.g. "- GRU"
    module: str  # "hrl_rec.train" or "baselines.train"
    args: tuple[str, ...]


class GridError(RuntimeError):
    pass


def parse_seeds(values: list[str]) -> list[int]:
    """--seeds as integers; ValueError naming the flag."""
    try:
        seeds = [int(s) for s in values]
    except ValueError:
        raise ValueError(f"--seeds={','.join(values)}: expected integers") from None
    if not seeds:
        raise ValueError("--seeds: at least one seed")
    return seeds


def print_commands(settings: list[Setting], seeds: list[int], runs_dir: str) -> None:
    """A dry run: each job's command, in the order run_grid runs them."""
    for seed in seeds:
        for s in settings:
            print(" ".join(command(s, seed, job_dir(runs_dir, s, seed))))


def job_dir(runs_dir: str, setting: Setting, seed: int) -> str:
    return os.path.join(runs_dir, f"{setting.name}__{seed}")


def command(setting: Setting, seed: int, model_dir: str) -> list[str]:
    return [sys.executable, "-m", setting.module, *setting.args, f"--seed={seed}",
            f"--model_dir={model_dir}"]


def _check_same_job(path: str, job: dict) -> None:
    if not os.path.exists(path):
        return
    with open(path) as f:
        old = json.load(f)
    if old["module"] != job["module"] or old["args"] != job["args"]:
        differ = sorted(set(old["args"]) ^ set(job["args"])) or [old["module"], job["module"]]
        raise GridError(f"{os.path.dirname(path)} holds a run of another command (differs: "
                        f"{differ}); use another output folder or delete that one")


def hrl_rec_args(flagfile: str, data_dir: str, data_flagfile: str, extra: tuple | list = ()
                 ) -> tuple[str, ...]:
    """hrl_rec.train's flags for a grid row, in one order for every experiment, so that the same
    setting in two experiments is the same command (and one runs folder can serve both)."""
    return (f"--flagfile={flagfile}", f"--data_dir={data_dir}", f"--data_flagfile={data_flagfile}",
            *extra)


def run_job(setting: Setting, seed: int, runs_dir: str, run: bool = True
            ) -> tuple[dict | None, bool]:
    """-> (eval.json of the job, whether it ran now); raises GridError naming the log on failure.
    With run=False an unfinished job is not started and its eval.json is None."""
    model_dir = job_dir(runs_dir, setting, seed)
    job = {"module": setting.module, "args": list(setting.args), "seed": seed}
    _check_same_job(os.path.join(model_dir, "job.json"), job)
    eval_path = os.path.join(model_dir, "eval.json")
    ran = not os.path.exists(eval_path)
    if ran and not run:
        return None, False
    if ran:
        os.makedirs(model_dir, exist_ok=True)
        write_json(os.path.join(model_dir, "job.json"), job)
        log = os.path.join(model_dir, "train.log")
        cmd = command(setting, seed, model_dir)
        with open(log, "a") as out:
            code = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, preexec_fn=(
                _die_with_parent if sys.platform.startswith("linux") else None)).returncode
        if code != 0 or not os.path.exists(eval_path):
            with open(log, errors="replace") as f:
                tail = "".join(f.readlines()[-15:])
            raise GridError(f"{setting.name} seed {seed} failed (exit {code}): "
                            f"{' '.join(cmd)}\nlast lines of {log}:\n{tail}")
    with open(eval_path) as f:
        return json.load(f), ran


def run_grid(settings: list[Setting], seeds: list[int], runs_dir: str,
             desc: str, run: bool = True) -> dict[tuple[str, int], dict]:
    """Runs every (setting, seed) job, seed by seed (so a grid stopped early has whole seeds),
    and returns their eval.json by (setting name, seed). Jobs already done are read, not run.
    run=False only reads the finished jobs (a report on a grid that is still running)."""
    jobs = [(setting, seed) for seed in seeds for setting in settings]
    done = sum(os.path.exists(os.path.join(job_dir(runs_dir, s, seed), "eval.json"))
               for s, seed in jobs)
    print(f"{desc}: {len(jobs)} runs in {runs_dir}, {done} finished before "
          f"({'reused' if run else 'reported; the others are not run'})",
          file=sys.stderr, flush=True)
    progress = Progress(len(jobs) - done if run else 0, desc, unit="runs")  # real runs only
    results = {}
    for setting, seed in jobs:
        start = time.monotonic()
        report, ran = run_job(setting, seed, runs_dir, run)
        if report is None:
            continue
        results[setting.name, seed] = report
        if ran:
            progress.update(1, extra=f"{setting.name} seed {seed}: test auc {report['auc']:.4f} "
                            f"({time.monotonic() - start:.0f} s)")
    fingerprints = {r.get("data_fingerprint") for r in results.values()}
    if len(fingerprints) > 1:
        raise GridError(f"the runs in {runs_dir} used different datasets (fingerprints "
                        f"{sorted(map(str, fingerprints))}); rerun them on one")
    return results


def collect(settings: list[Setting], seeds: list[int], runs_dir: str, desc: str, data_dir: str,
            data_flagfile: str, report_only: bool = False) -> dict[tuple[str, int], dict]:
    """An experiment driver's run step: the dataset (generated if missing, unless only
    reporting), then run_grid. A failed run, or a report with no finished run, exits naming it."""
    if not report_only:
        from hrl_rec.train import ensure_dataset  # TensorFlow: not needed for a dry run
        ensure_dataset(data_dir, data_flagfile)
    try:
        results = run_grid(settings, seeds, runs_dir, desc, run=not report_only)
    except GridError as e:
        raise SystemExit(str(e)) from None
    if not results:
        raise SystemExit(f"no finished runs in {runs_dir} for seeds {seeds}")
    return results
