"""Fig. 3: HRL-Rec's test AUC against the discount factor gamma and the input sequence length.

    python -m experiments.sweeps --flagfile=configs/sweeps.flags
    python -m experiments.sweeps --flagfile=configs/sweeps.flags --seeds=0 --dry_run
    python -m experiments.sweeps --flagfile=configs/sweeps.flags --report_only

The paper's Sec. 4.7 sweeps (a) gamma from 0 to 1 (best at 0.3) and (b) the maximum input
sequence length of both agents, m, from 5 to 100 (best at 50). Each point is HRL-Rec at
--hrl_flagfile with one flag changed. The point whose value is the flagfile's own is the
unchanged model: one run, named `hrl_rec` as in Table 4, serves both panels, and gamma = 0 is
named `gamma0` as in Table 4, so --runs_dir=runs/ablation reuses those runs.

Runs land in --runs_dir/{point}__{seed}; the figure in --output_dir as fig3.md, fig3.csv (per
point), fig3_runs.csv (per run) and fig3.png. A rerun reuses finished runs and resumes cut-off
ones (experiments/grid.py); --report_only draws whatever has finished, running nothing.
"""
from __future__ import annotations

import dataclasses
import os

from absl import app, flags

from experiments import grid, report

FLAGS = flags.FLAGS
BASE = "hrl_rec"


@dataclasses.dataclass(frozen=True)
class Sweep:
    flag: str  # hrl_rec.train flag, e.g. "gamma"
    prefix: str  # run folder prefix, e.g. "gamma" -> gamma0.5
    axis: str  # axis label
    paper_best: float  # Sec. 4.7's best value
    log_x: bool

    def text(self, value: float) -> str:
        return f"{value:g}"


SWEEPS = (Sweep("gamma", "gamma", "discount factor γ", 0.3, False),
          Sweep("max_seq_len", "seq", "max input sequence length m (both agents)", 50, True))


def define_flags() -> None:
    flags.DEFINE_string("data_dir", "datasets/sim_small", "Dataset folder (generated if missing).")
    flags.DEFINE_string("data_flagfile", "configs/sim_small.flags",
                        "data.generate preset used when --data_dir holds no dataset.")
    flags.DEFINE_string("hrl_flagfile", "configs/quickstart.flags",
                        "hrl_rec.train flagfile of every point; its own gamma and max_seq_len "
                        "are the unchanged point.")
    flags.DEFINE_multi_string("hrl_flag", [], "A flag added to every run, after the flagfile "
                              "(repeatable), e.g. --hrl_flag=--max_steps=100.")
    flags.DEFINE_list("gamma_values", ["0", "0.1", "0.3", "0.5", "0.7", "0.9"],
                      "Fig. 3(a): discount factors, each in [0, 1].")
    flags.DEFINE_list("seq_lens", ["5", "10", "20", "50", "100"],
                      "Fig. 3(b): max input sequence lengths m, each >= 1.")
    flags.DEFINE_list("seeds", ["0", "1", "2"], "Seeds; every point runs each of them.")
    flags.DEFINE_string("runs_dir", "runs/sweeps", "Where each run's folder goes.")
    flags.DEFINE_string("output_dir", "results/sweeps", "Where the figure's files go.")
    flags.DEFINE_boolean("dry_run", False, "Print the commands of the runs, run nothing.")
    flags.DEFINE_boolean("report_only", False, "Report the runs that have finished; run none.")


def parse_values(text_values: list[str], sweep: Sweep) -> list[float]:
    """The flag's values as numbers, checked against the trainer's own limits."""
    name = "gamma_values" if sweep.flag == "gamma" else "seq_lens"
    values = []
    for t in text_values:
        try:
            v = float(t) if sweep.flag == "gamma" else int(t)
        except ValueError:
            raise ValueError(f"--{name}: {t!r} is not a number") from None
        ok = 0.0 <= v <= 1.0 if sweep.flag == "gamma" else v >= 1
        if not ok:
            raise ValueError(f"--{name}: {t} is out of range (expected "
                             f"{'[0, 1]' if sweep.flag == 'gamma' else '>= 1'})")
        values.append(v)
    if len(set(values)) != len(values) or not values:
        raise ValueError(f"--{name}: expected distinct values, got {text_values}")
    return sorted(values)


def base_value(hrl_flagfile: str, hrl_flags: list[str], flag: str) -> float:
    """The value hrl_rec.train takes for --flag from the flagfile and extra flags (the last one
    given wins, as in absl), else HRLConfig's default."""
    from hrl_rec.config import HRLConfig
    argv = flags.FlagValues().read_flags_from_files(
        ["prog", f"--flagfile={hrl_flagfile}", *hrl_flags], force_gnu=True)
    given = [a.split("=", 1)[1] for a in argv if a.startswith(f"--{flag}=")]
    return float(given[-1]) if given else float(getattr(HRLConfig(), flag))


def point_setting(sweep: Sweep, value: float, base: float, common: tuple) -> grid.Setting:
    if value == base:
        return grid.Setting(BASE, "HRL-Rec (unchanged)", "hrl_rec.train", common)
    return grid.Setting(f"{sweep.prefix}{sweep.text(value)}", f"{sweep.flag} = "
                        f"{sweep.text(value)}", "hrl_rec.train",
                        (*common, f"--{sweep.flag}={sweep.text(value)}"))


def sweep_points(values: dict[str, list[float]], bases: dict[str, float], common: tuple
                 ) -> dict[str, list[tuple[float, grid.Setting]]]:
    """-> per sweep flag, its (value, setting) points in increasing value."""
    return {s.flag: [(v, point_setting(s, v, bases[s.flag], common)) for v in values[s.flag]]
            for s in SWEEPS}


def unique_settings(points) -> list[grid.Setting]:
    """Every setting once (the unchanged point sits in both sweeps), in sweep order."""
    seen = {}
    for pts in points.values():
        for _, setting in pts:
            seen.setdefault(setting.name, setting)
    return list(seen.values())


MD_HEADER = ["parameter", "value", "test AUC", "vs unchanged (paired)", "valid AUC", "seeds",
             "point"]
CSV_HEADER = ["parameter", "value", "point", "seeds", "auc_mean", "auc_std", "auc_vs_base_mean",
              "auc_vs_base_std", "valid_auc_mean", "valid_auc_std", "paper_best"]
RUN_KEYS = ["auc", "valid_auc", "best_epoch", "auc_cosine", "steps", "wall_seconds",
            "data_fingerprint"]


def summary_rows(points, results: dict, seeds: list[int]):
    """-> (Markdown rows, CSV rows, per-sweep (values, Stats) to draw); points without a
    finished run are left out."""
    md, table, drawn = [], [], {}
    for sweep in SWEEPS:
        xs, stats = [], []
        for value, s in points[sweep.flag]:
            if not any((s.name, seed) in results for seed in seeds):
                continue
            auc = report.metric(results, s.name, seeds)
            valid = report.metric(results, s.name, seeds, "valid_auc")
            gain = (report.paired(results, s.name, BASE, seeds, report.auc_gain)
                    if s.name != BASE else None)
            text = sweep.text(value)
            md.append([sweep.flag, text, auc.text(), gain.text() if gain else "", valid.text(),
                       str(auc.n), s.name])
            table.append([sweep.flag, text, s.name, auc.n, auc.mean, auc.std,
                          *((gain.mean, gain.std) if gain else ("", "")), valid.mean,
                          valid.std, sweep.text(sweep.paper_best)])
            xs.append(value)
            stats.append(auc)
        drawn[sweep.flag] = (xs, stats)
    return md, table, drawn


def write_figure(output_dir: str, points, results: dict, seeds: list[int], notes: list[str]):
    """-> (the Markdown table, whether the PNG was drawn)."""
    os.makedirs(output_dir, exist_ok=True)
    md, table, drawn = summary_rows(points, results, seeds)
    path = os.path.join(output_dir, "fig3")
    report.write_markdown(path + ".md", "Fig. 3: HRL-Rec against gamma and sequence length",
                          notes, MD_HEADER, md)
    report.write_csv(path + ".csv", CSV_HEADER, table)
    report.write_csv(path + "_runs.csv", ["point", "seed"] + RUN_KEYS, [
        [name, seed] + [results[name, seed].get(k, "") for k in RUN_KEYS]
        for (name, seed) in sorted(results, key=lambda k: (k[1], k[0]))])
    panels = [report.Panel(s.axis, *drawn[s.flag], s.log_x,
                           (f"paper's best ({s.text(s.paper_best)})", s.paper_best))
              for s in SWEEPS]
    ok = report.write_sweep_chart(path + ".png", "Fig. 3: test AUC (mean ± std over seeds)",
                                  panels, "test AUC")
    return report.markdown_table(MD_HEADER, md), ok


def main(argv):
    del argv
    try:
        seeds = grid.parse_seeds(FLAGS.seeds)
    except ValueError as e:
        raise app.UsageError(str(e)) from None
    try:
        values = {"gamma": parse_values(FLAGS.gamma_values, SWEEPS[0]),
                  "max_seq_len": parse_values(FLAGS.seq_lens, SWEEPS[1])}
        bases = {s.flag: base_value(FLAGS.hrl_flagfile, FLAGS.hrl_flag, s.flag) for s in SWEEPS}
    except (ValueError, flags.Error) as e:
        raise app.UsageError(str(e)) from None
    common = grid.hrl_rec_args(FLAGS.hrl_flagfile, FLAGS.data_dir, FLAGS.data_flagfile,
                               FLAGS.hrl_flag)
    points = sweep_points(values, bases, common)
    settings = unique_settings(points)
    if FLAGS.dry_run:
        grid.print_commands(settings, seeds, FLAGS.runs_dir)
        return
    results = grid.collect(settings, seeds, FLAGS.runs_dir, "sweeps", FLAGS.data_dir,
                           FLAGS.data_flagfile, FLAGS.report_only)
    fingerprint = next(iter(results.values())).get("data_fingerprint")
    notes = [f"Data: `{FLAGS.data_dir}` (fingerprint `{fingerprint}`), test split. Seeds: "
             f"{', '.join(map(str, seeds))}. HRL-Rec: `{FLAGS.hrl_flagfile}` "
             f"{' '.join(FLAGS.hrl_flag)}, unchanged at gamma = {bases['gamma']:g} and m = "
             f"{bases['max_seq_len']:g}; each point changes one flag.",
             "Mean ± sample std over seeds; the difference is per seed against the same "
             "seed's unchanged run. The paper's best: gamma = 0.3, m = 50 (Sec. 4.7).",
             f"Runs: `{FLAGS.runs_dir}`. Regenerate: `python -m experiments.sweeps "
             f"--flagfile=configs/sweeps.flags`."]
    text, drawn = write_figure(FLAGS.output_dir, points, results, seeds, notes)
    print(text, flush=True)
    report.print_written(FLAGS.output_dir, ["fig3.md", "fig3.csv", "fig3_runs.csv"], "fig3.png",
                         drawn)


if __name__ == "__main__":
    define_flags()
    app.run(main)
