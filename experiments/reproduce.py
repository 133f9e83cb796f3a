"""Regenerates every results file of the paper's tables and figures, step by step, resumably.

    python -m experiments.reproduce                  # the whole set (hours on 2 cores)
    python -m experiments.reproduce --quick          # the quick variant (about 28 min)
    python -m experiments.reproduce --dry_run        # the plan, its estimates and what is done
    python -m experiments.reproduce --only=table2_sim_small,table3

A step is one tool's command (`PLAN` below: data generation, Table 2-4, Fig. 3-4, the positive
controls, off-policy evaluation), run as its own process with its log in
`--state_dir`/STEP.log. When it exits 0 and every file it promises exists, a stamp
(`--state_dir`/STEP.json: the command, the commit, the wall time) marks it done, and a later
invocation skips it while the command is the same. Stop the driver at any time: the step that
was running starts again, and the tools themselves resume run by run (experiments/grid.py keeps
every finished training run), so only the run in flight is lost.

Progress: a line before and after every step with the elapsed time and the remaining time,
estimated from each step's `minutes` scaled by how the steps run so far compared with theirs.

The quick variant trains one seed of a few rows for one epoch on `sim_quick` (1,000 users:
configs/sim_quick.flags; Fig. 4 on configs/sim_stability_quick.flags, its two served weeks) and
writes under `results/quick/`; it shows that every tool runs and what its files look like, not
the paper's comparisons (its numbers are one seed of a small world). The full plan writes the
committed files under `results/`.

To add a step, append a `Step` to `PLAN` (or `QUICK_PLAN`): its name, the module and
arguments, the files it writes, and an estimate of its minutes on 2 cores.
"""
from __future__ import annotations

import dataclasses
import json
import os
import shlex
import subprocess
import sys
import time

from absl import app, flags

from data.files import write_atomic, write_json
from experiments.report import code_commit

FLAGS = flags.FLAGS


@dataclasses.dataclass(frozen=True)
class Step:
    """One command of the plan.

    name: the step's id (--only, the stamp's file name). what: the table or figure it makes.
    module, args: `python -m MODULE ARGS`. outputs: files the step must leave (relative to the
    repository root). minutes: the estimate on 2 cores. stdout_to: a file that receives the
    command's standard output (for tools that print JSON lines), written only when it exits 0.
    needs: paths that must exist before it starts (real data), with the reason when missing.
    """
    name: str
    what: str
    module: str
    args: tuple[str, ...]
    outputs: tuple[str, ...]
    minutes: float
    stdout_to: str = ""
    needs: tuple[str, ...] = ()

    def command(self, python: str = "python") -> list[str]:
        return [python, "-m", self.module, *self.args]

    def text(self) -> str:
        return shlex.join(self.command())


MIND_IN = "../shared/data/mind-samples"

# the data flags of the 5-seed grids on another dataset than the flagfile's (sim_small)
ON_DATA = {"claims": ("--data_dir=datasets/sim_claims", "--data_flagfile=configs/sim_claims.flags"),
           "mind": ("--data_dir=datasets/mind", "--data_flagfile=")}


def five_seeds(dataset: str, name: str, what: str, module: str, flagfile: str, folder: str,
               runs: str, table: str, minutes: float) -> Step:
    """A tool's grid on `dataset` (ON_DATA) with seeds 0-4, runs in `runs`, its table in
    results/`folder`/`table`; MIND's steps need the shared data."""
    out = f"results/{folder}"
    return Step(name, what, module,
                (f"--flagfile={flagfile}", *ON_DATA[dataset], "--seeds=0,1,2,3,4",
                 f"--runs_dir={runs}", f"--output_dir={out}"), (f"{out}/{table}",), minutes,
                needs=(MIND_IN,) if dataset == "mind" else ())


PLAN = (
    Step("data_sim_small", "the sim_small dataset", "data.generate",
         ("--flagfile=configs/sim_small.flags", "--output_dir=datasets/sim_small"),
         ("datasets/sim_small/metadata.json",), 1.5),
    Step("data_sim_claims", "the claims preset's dataset", "data.generate",
         ("--flagfile=configs/sim_claims.flags", "--output_dir=datasets/sim_claims"),
         ("datasets/sim_claims/metadata.json",), 2),
    Step("data_sim_stability", "Fig. 4's dataset", "data.generate",
         ("--flagfile=configs/sim_stability.flags", "--output_dir=datasets/sim_stability"),
         ("datasets/sim_stability/metadata.json",), 2),
    Step("data_mind", "MIND converted (real clicks)", "data.convert",
         ("--format=mind", f"--input_dir={MIND_IN}", "--output_dir=datasets/mind",
          "--test_start=2019-11-13"),
         ("datasets/mind/metadata.json",), 1, needs=(MIND_IN,)),
    Step("controls", "positive controls of the claims preset's mechanisms", "benchmarks.mechanisms",
         ("--flagfile=configs/sim_claims.flags",),
         ("results/mechanisms/positive_controls_all.jsonl",), 85,
         stdout_to="results/mechanisms/positive_controls_all.jsonl"),
    Step("model_controls", "HRL-Rec with and without the GRU and the self-attention, their "
         "mechanisms on and off (5 seeds)", "experiments.model_controls",
         ("--flagfile=configs/model_controls.flags",),
         ("results/model_controls/model_controls.md",), 525),
    Step("table2_sim_small", "Table 2 on sim_small (3 seeds)", "experiments.table2",
         ("--flagfile=configs/table2.flags",), ("results/table2/table2.md",), 100),
    five_seeds("claims", "table2_sim_claims", "Table 2 on the claims preset (5 seeds)",
               "experiments.table2", "configs/table2.flags", "table2_claims",
               "runs/table2_claims", "table2.md", 170),
    five_seeds("mind", "table2_mind", "Table 2 on MIND (5 seeds)", "experiments.table2",
               "configs/table2.flags", "table2_mind", "runs/table2_mind", "table2.md", 60),
    Step("table3", "Table 3: the online A/B test (3 seeds)", "experiments.ab_test",
         ("--flagfile=configs/ab_test.flags", "--output_dir=results/table3"),
         ("results/table3/table3.md",), 130),
    Step("table4_sim_small", "Table 4 on sim_small (3 seeds)", "experiments.ablation",
         ("--flagfile=configs/ablation.flags",), ("results/ablation/table4.md",), 150),
    five_seeds("mind", "table4_mind", "Table 4 on MIND (5 seeds)", "experiments.ablation",
               "configs/ablation.flags", "ablation_mind", "runs/ablation_mind", "table4.md", 90),
    Step("fig3", "Fig. 3: gamma and the sequence length (3 seeds)", "experiments.sweeps",
         ("--flagfile=configs/sweeps.flags",), ("results/sweeps/fig3.md",), 300),
    five_seeds("claims", "table3_claims", "Table 3 on the claims preset (5 seeds)",
               "experiments.ab_test", "configs/ab_test.flags", "table3_claims",
               "runs/ab_test_claims", "table3.md", 210),
    five_seeds("claims", "table4_claims", "Table 4 on the claims preset (5 seeds)",
               "experiments.ablation", "configs/ablation.flags", "ablation_claims",
               "runs/ablation_claims", "table4.md", 250),
    five_seeds("claims", "fig3_claims", "Fig. 3 on the claims preset (5 seeds)",
               "experiments.sweeps", "configs/sweeps.flags", "sweeps_claims",
               "runs/sweeps_claims", "fig3.md", 500),
    five_seeds("mind", "fig3_mind", "Fig. 3 on MIND (5 seeds)", "experiments.sweeps",
               "configs/sweeps.flags", "sweeps_mind", "runs/sweeps_mind", "fig3.md", 150),
    Step("fig4", "Fig. 4: channel stability (3 seeds)", "experiments.stability",
         ("--flagfile=configs/stability.flags",), ("results/stability/stability.md",), 120),
    Step("ope", "off-policy evaluation (simulator and Open Bandit)", "experiments.ope",
         ("--flagfile=configs/ope.flags",), ("results/ope/simulator.md", "results/ope/obd.md"),
         15),
)

# The quick steps share one runs folder: a run whose command is the same (HRL-Rec and LR at one
# epoch) is trained once and reused by the next tool (experiments/grid.py).
Q = ("--data_dir=datasets/sim_quick", "--data_flagfile=configs/sim_quick.flags", "--seeds=0")
QUICK_PLAN = (
    Step("data_sim_quick", "sim_quick (1,000 users)", "data.generate",
         ("--flagfile=configs/sim_quick.flags", "--output_dir=datasets/sim_quick"),
         ("datasets/sim_quick/metadata.json",), 0.5),
    Step("table2", "Table 2, LR, DeepFM and HRL-Rec", "experiments.table2",
         ("--flagfile=configs/table2.flags", *Q, "--models=lr,deepfm,hrl_rec",
          "--hrl_flag=--epochs=1", "--baseline_flag=--epochs=1", "--runs_dir=runs/quick",
          "--output_dir=results/quick/table2"), ("results/quick/table2/table2.md",), 3),
    Step("table3", "Table 3, DQN (LR) and HRL-Rec against the base", "experiments.ab_test",
         ("--flagfile=configs/ab_test.flags", *Q, "--settings=dqn_lr,hrl_rec",
          "--item_scores=cosine", "--hrl_flag=--epochs=1", "--dqn_flag=--epochs=1",
          "--runs_dir=runs/quick", "--output_dir=results/quick/table3"),
         ("results/quick/table3/table3.md",), 2.5),
    Step("table4", "Table 4, HRL-Rec with and without the GRU", "experiments.ablation",
         ("--flagfile=configs/ablation.flags", *Q, "--settings=hrl_rec,no_gru",
          "--hrl_flag=--epochs=1", "--lr_flag=--epochs=1", "--runs_dir=runs/quick",
          "--output_dir=results/quick/table4"), ("results/quick/table4/table4.md",), 2),
    Step("fig3", "Fig. 3, gamma 0 against the quickstart's gamma", "experiments.sweeps",
         ("--flagfile=configs/sweeps.flags", *Q, "--gamma_values=0", "--seq_lens=20",
          "--hrl_flag=--epochs=1", "--runs_dir=runs/quick",
          "--output_dir=results/quick/fig3"), ("results/quick/fig3/fig3.md",), 3),
    Step("fig4", "Fig. 4, DQN (GRU) and HRL-Rec updated daily (two served weeks: "
         "configs/sim_stability_quick.flags)", "experiments.stability",
         ("--flagfile=configs/stability.flags", "--data_dir=datasets/sim_stability_quick",
          "--data_flagfile=configs/sim_stability_quick.flags", "--seeds=0",
          "--modes=daily", "--update_epochs=1", "--min_cell_impressions=100",
                                   "--runs_dir=runs/quick_fig4", "--output_dir=results/quick/fig4"),
         ("results/quick/fig4/stability.md",), 14),
    Step("controls", "the click mechanisms' positive controls on 1,000 users",
         "benchmarks.mechanisms", ("--flagfile=configs/sim_claims.flags", "--n_users=1000",
                                   "--return_mechanisms="),
         ("results/quick/positive_controls.jsonl",), 2.5,
         stdout_to="results/quick/positive_controls.jsonl"),
)


class StepFailed(RuntimeError):
    pass


def define_flags() -> None:
    flags.DEFINE_bool("quick", False, "Run the quick variant (QUICK_PLAN: about 28 minutes on "
                      "2 cores, results/quick/) instead of the whole set.")
    flags.DEFINE_list("only", [], "Run only these steps (names from --dry_run); default all.")
    flags.DEFINE_bool("dry_run", False, "Print the plan, each step's estimate and whether it "
                      "is done; run nothing.")
    flags.DEFINE_bool("keep_going", False, "After a failed step, go on with the next ones "
                      "(the driver still exits 1 at the end).")
    flags.DEFINE_bool("redo", False, "Run the selected steps even where a stamp says done.")
    flags.DEFINE_string("state_dir", "runs/reproduce", "Stamps and logs of the steps "
                        "(--quick: this folder's quick/ subfolder).")


def _stamp_path(state_dir: str, step: Step) -> str:
    return os.path.join(state_dir, step.name + ".json")


def is_done(state_dir: str, step: Step) -> bool:
    """Done: a stamp with this very command, and every promised file present."""
    try:
        with open(_stamp_path(state_dir, step)) as f:
            stamp = json.load(f)
    except (OSError, ValueError):
        return False
    return stamp.get("command") == step.text() and all(map(os.path.exists, step.outputs))


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f} min"


def run_step(step: Step, state_dir: str, python: str = sys.executable) -> float:
    """Runs one step; returns its wall seconds. Raises StepFailed naming the log on failure."""
    missing = [p for p in step.needs if not os.path.exists(p)]
    if missing:
        raise StepFailed(f"{step.name}: needs {missing} (real data read from the shared folder; "
                         "see its PROVENANCE.md), not found")
    os.makedirs(state_dir, exist_ok=True)
    log_path = os.path.join(state_dir, step.name + ".log")
    start = time.monotonic()
    with open(log_path, "a") as log:
        log.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} {step.text()}\n")
        log.flush()
        out = subprocess.PIPE if step.stdout_to else log
        proc = subprocess.run(step.command(python), stdout=out, stderr=log, text=True)
    seconds = time.monotonic() - start
    if proc.returncode != 0:
        raise StepFailed(f"{step.name}: `{step.text()}` exited {proc.returncode} after "
                         f"{_minutes(seconds)}; its output is in {log_path}")
    if step.stdout_to:
        os.makedirs(os.path.dirname(step.stdout_to) or ".", exist_ok=True)
        write_atomic(step.stdout_to, proc.stdout)
    absent = [p for p in step.outputs if not os.path.exists(p)]
    if absent:
        raise StepFailed(f"{step.name}: `{step.text()}` exited 0 but did not write {absent}; "
                         f"see {log_path}")
    write_json(_stamp_path(state_dir, step), {"command": step.text(), "commit": code_commit(),
                                              "seconds": round(seconds, 1),
                                              "finished": time.strftime("%Y-%m-%d %H:%M:%S")})
    return seconds


def run_plan(plan, state_dir: str, redo: bool = False, keep_going: bool = False,
             stream=None, python: str = sys.executable) -> list[str]:
    """Runs the steps not yet done, printing progress; returns the names of failed steps."""
    stream = stream or sys.stderr
    todo = [s for s in plan if redo or not is_done(state_dir, s)]
    for s in plan:
        if s not in todo:
            print(f"reproduce: {s.name}: done before (stamp in {state_dir}), skipped", file=stream)
    start, spent_est, spent_real, failed = time.monotonic(), 0.0, 0.0, []
    for i, step in enumerate(todo):
        scale = spent_real / spent_est if spent_est > 0 else 1.0
        left = sum(s.minutes for s in todo[i:]) * 60 * scale
        print(f"reproduce: [{i + 1}/{len(todo)}] {step.name} ({step.what}): `{step.text()}`, "
              f"estimated {step.minutes * scale:.0f} min; elapsed "
              f"{_minutes(time.monotonic() - start)}, ETA {_minutes(left)}", file=stream,
              flush=True)
        try:
            seconds = run_step(step, state_dir, python)
        except StepFailed as e:
            print(f"reproduce: FAILED {e}", file=stream, flush=True)
            failed.append(step.name)
            if not keep_going:
                break
            continue
        spent_est += step.minutes * 60
        spent_real += seconds
        print(f"reproduce: [{i + 1}/{len(todo)}] {step.name} done in {_minutes(seconds)}; "
              f"writes {', '.join(step.outputs)}", file=stream, flush=True)
    return failed


def select(plan, only: list[str]):
    names = [s.name for s in plan]
    unknown = [n for n in only if n not in names]
    if unknown:
        raise app.UsageError(f"--only: {unknown} are not steps of this plan; expected some of "
                             f"{names}")
    return tuple(s for s in plan if not only or s.name in only)


def main(argv):
    del argv
    plan = select(QUICK_PLAN if FLAGS.quick else PLAN, FLAGS.only)
    state_dir = os.path.join(FLAGS.state_dir, "quick") if FLAGS.quick else FLAGS.state_dir
    if FLAGS.dry_run:
        total = 0.0
        for s in plan:
            done = is_done(state_dir, s)
            total += 0 if done else s.minutes
            print(f"{s.name:20s} {'done' if done else f'{s.minutes:5.0f} min'}  {s.what}: "
                  f"`{s.text()}`")
        print(f"left: about {total:.0f} min on 2 cores")
        return
    failed = run_plan(plan, state_dir, FLAGS.redo, FLAGS.keep_going)
    if failed:
        print(f"reproduce: failed steps: {failed}; rerun the same command to retry them "
              "(finished steps and runs are kept)", file=sys.stderr)
        sys.exit(1)
    print("reproduce: every step done", file=sys.stderr)


if __name__ == "__main__":
    define_flags()
    app.run(main)
