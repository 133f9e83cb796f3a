"""Table 2: offline CTR prediction of the seven baselines and HRL-Rec, each over several seeds.

    python -m experiments.table2 --flagfile=configs/table2.flags
    python -m experiments.table2 --flagfile=configs/table2.flags --seeds=0 --dry_run
    python -m experiments.table2 --flagfile=configs/table2.flags --report_only

The paper's Sec. 4.4: every model predicts the clicks of the test split (chronological), scored by
AUC and by RelaImpr over LR (Yan et al. 2014), and HRL-Rec "significantly outperforms all
baselines with the significance level alpha = 0.01". Here each baseline is `baselines.train` at
--baseline_flagfile, HRL-Rec is `hrl_rec.train` at --hrl_flagfile (its `auc` is f(a_t, d_t) of
Eq. 16, the click model), and the significance is a paired t-test over seeds of each model's AUC
against HRL-Rec's (same seed, same test impressions).

LR's command equals Table 4's LR and HRL-Rec's equals Table 4's `hrl_rec` (a test checks both),
so --runs_dir=runs/ablation reuses those runs. Runs land in --runs_dir/{model}__{seed}; the table
in --output_dir as table2.md, table2.csv (per model), table2_runs.csv (per run) and table2.png.
A rerun reuses finished runs and resumes cut-off ones (experiments/grid.py).
"""
from __future__ import annotations

import math
import os

from absl import app, flags

from experiments import grid, report

FLAGS = flags.FLAGS

# (name = baselines.train --model, row label); the paper's Table 2 order.
BASELINES = (("lr", "LR"), ("fm", "FM"), ("nfm", "NFM"), ("afm", "AFM"),
             ("widedeep", "Wide&Deep"), ("deepfm", "DeepFM"), ("autoint", "AutoInt"))
HRL = "hrl_rec"
BASE = "lr"
# The paper's Table 2 (IRec-4B, test AUC and RelaImpr over LR), for comparison only.
PAPER = {"lr": (0.7311, 0.0), "fm": (0.7585, 0.1186), "nfm": (0.7620, 0.1337),
         "afm": (0.7686, 0.1623), "widedeep": (0.7801, 0.2120), "deepfm": (0.7819, 0.2198),
         "autoint": (0.7837, 0.2276), HRL: (0.8097, 0.3401)}
ALPHA = 0.01  # the paper's significance level


def define_flags() -> None:
    flags.DEFINE_string("data_dir", "datasets/sim_small", "Dataset folder (generated if missing).")
    flags.DEFINE_string("data_flagfile", "configs/sim_small.flags",
                        "data.generate preset used when --data_dir holds no dataset.")
    flags.DEFINE_string("hrl_flagfile", "configs/quickstart.flags",
                        "hrl_rec.train flagfile of the HRL-Rec row.")
    flags.DEFINE_multi_string("hrl_flag", [], "A flag added to every HRL-Rec run, after the "
                              "flagfile (repeatable), e.g. --hrl_flag=--max_steps=100.")
    flags.DEFINE_string("baseline_flagfile", "configs/baselines.flags",
                        "baselines.train flagfile shared by the seven baselines.")
    flags.DEFINE_multi_string("baseline_flag", [], "A flag added to every baseline run "
                              "(repeatable), e.g. --baseline_flag=--epochs=3.")
    flags.DEFINE_list("seeds", ["0", "1", "2"], "Seeds; every model runs each of them.")
    flags.DEFINE_list("models", [m for m, _ in BASELINES] + [HRL],
                      "Rows to run (LR always runs, as the base of RelaImpr).")
    flags.DEFINE_string("runs_dir", "runs/table2", "Where each run's folder goes.")
    flags.DEFINE_string("output_dir", "results/table2", "Where the table files go.")
    flags.DEFINE_boolean("dry_run", False, "Print the commands of the runs, run nothing.")
    flags.DEFINE_boolean("report_only", False, "Report the runs that have finished; run none.")


def grid_settings(names, data_dir, data_flagfile, hrl_flagfile, hrl_flags, baseline_flagfile,
                  baseline_flags) -> list[grid.Setting]:
    """LR first, then the chosen rows in the paper's order (HRL-Rec last)."""
    known = [m for m, _ in BASELINES] + [HRL]
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ValueError(f"--models: unknown {unknown}; expected some of {known}")
    rows = [grid.Setting(m, label, "baselines.train",
                         (f"--model={m}", f"--flagfile={baseline_flagfile}",
                          f"--data_dir={data_dir}", *baseline_flags))
            for m, label in BASELINES if m == BASE or m in names]
    if HRL in names:
        rows.append(grid.Setting(HRL, "HRL-Rec", "hrl_rec.train", grid.hrl_rec_args(
            hrl_flagfile, data_dir, data_flagfile, hrl_flags)))
    return rows


def paired_t_test(a, b) -> tuple[float, float] | None:
    """Two-sided paired t-test of mean(a - b) = 0 -> (t, p); None with fewer than two pairs.
    Identical pairs (no spread) give t = +-inf and p = 0 when the mean differs, else (0, 1)."""
    from scipy import stats  # scikit-learn's own dependency; only the report needs it
    if len(a) < 2:
        return None
    d = [x - y for x, y in zip(a, b)]
    mean = sum(d) / len(d)
    if all(x == d[0] for x in d):
        return (0.0, 1.0) if mean == 0 else (math.copysign(math.inf, mean), 0.0)
    t, p = stats.ttest_rel(a, b)
    return float(t), float(p)


def _paired_aucs(results: dict, name: str, other: str, seeds) -> tuple[list, list]:
    both = [s for s in seeds if (name, s) in results and (other, s) in results]
    return [results[name, s]["auc"] for s in both], [results[other, s]["auc"] for s in both]


def summary_rows(settings: list[grid.Setting], results: dict, seeds: list[int]):
    """-> (Markdown rows, CSV rows); models without a finished run are left out."""
    md, table = [], []
    for s in settings:
        if not any((s.name, seed) in results for seed in seeds):
            continue
        auc = report.metric(results, s.name, seeds)
        loss = report.metric(results, s.name, seeds, "logloss")
        impr = (report.paired(results, s.name, BASE, seeds, report.rela_impr_vs)
                if s.name != BASE else None)
        gap = (report.paired(results, HRL, s.name, seeds, report.auc_gain)
               if s.name != HRL else None)
        test = paired_t_test(*_paired_aucs(results, HRL, s.name, seeds)) if gap else None
        share = (report.paired(results, s.name, BASE, seeds, report.headroom_vs)
                 if s.name != BASE else None)
        paper = PAPER[s.name]
        md.append([s.label, auc.text(), impr.text(2, percent=True) if impr else "",
                   share.text(2, percent=True) if share else "",
                   gap.text() if gap else "", _p_text(test), loss.text(), str(auc.n),
                   f"{paper[0]:.4f} / {paper[1]:.2%}"])
        table.append([s.name, s.label, auc.n, auc.mean, auc.std,
                      *((impr.mean, impr.std) if impr else ("", "")),
                      *((share.mean, share.std) if share else ("", "")),
                      *((gap.mean, gap.std) if gap else ("", "")),
                      *(test if test else ("", "")), loss.mean, loss.std, *paper])
    return md, table


def _p_text(test) -> str:
    if test is None:
        return ""
    t, p = test
    return f"{p:.3f}{' *' if p < ALPHA else ''} (t = {t:.2f})"


MD_HEADER = ["model", "test AUC", "RelaImpr vs LR", "share of the (ceiling − LR) headroom",
             "HRL-Rec − model (paired)",
             f"p (paired t over seeds; * < {ALPHA})", "logloss", "seeds", "paper AUC / RelaImpr"]
CSV_HEADER = ["model", "label", "seeds", "auc_mean", "auc_std", "rela_impr_mean",
              "rela_impr_std", "headroom_share_mean", "headroom_share_std", "hrl_rec_minus_model_mean", "hrl_rec_minus_model_std", "t", "p",
              "logloss_mean", "logloss_std", "paper_auc", "paper_rela_impr"]
RUN_KEYS = ["auc", "logloss", "oracle_auc", "oracle_auc_noise_free", "learnable_ceiling_auc",
            "valid_auc", "best_epoch", "steps", "wall_seconds",
            "data_fingerprint"]


def run_row(run: dict) -> list:
    """A run's RUN_KEYS; baselines.train nests its validation figures under "valid"."""
    valid = run.get("valid", {})
    flat = {"valid_auc": valid.get("auc", ""), "best_epoch": valid.get("epoch", ""), **run}
    return [flat.get(k, "") for k in RUN_KEYS]


def write_table(output_dir: str, settings, results: dict, seeds: list[int], notes: list[str]):
    """-> (the Markdown table, whether the PNG was drawn)."""
    os.makedirs(output_dir, exist_ok=True)
    md, table = summary_rows(settings, results, seeds)
    md_all = md + report.ceiling_rows(results, seeds, len(MD_HEADER))
    path = os.path.join(output_dir, "table2")
    report.write_markdown(path + ".md", "Table 2: offline evaluation (test AUC)", notes,
                          MD_HEADER, md_all)
    report.write_csv(path + ".csv", CSV_HEADER, table)
    report.write_csv(path + "_runs.csv", ["model", "seed"] + RUN_KEYS, [
        [name, seed] + run_row(results[name, seed])
        for (name, seed) in sorted(results, key=lambda k: (k[1], k[0]))])
    drawn = [s for s in settings if any((s.name, seed) in results for seed in seeds)]
    base = report.metric(results, BASE, seeds) if any((BASE, s) in results for s in seeds) \
        else None
    off_scale = report.write_interval_chart(
        path + ".png", "Table 2: test AUC (mean ± std over seeds)", [s.label for s in drawn],
        [report.metric(results, s.name, seeds) for s in drawn], "test AUC",
        reference=("LR", base.mean) if base else None)
    return report.markdown_table(MD_HEADER, md_all), off_scale is not None


def main(argv):
    del argv
    try:
        seeds = grid.parse_seeds(FLAGS.seeds)
        settings = grid_settings(FLAGS.models, FLAGS.data_dir, FLAGS.data_flagfile,
                                 FLAGS.hrl_flagfile, FLAGS.hrl_flag, FLAGS.baseline_flagfile,
                                 FLAGS.baseline_flag)
    except ValueError as e:
        raise app.UsageError(str(e)) from None
    if FLAGS.dry_run:
        grid.print_commands(settings, seeds, FLAGS.runs_dir)
        return
    results = grid.collect(settings, seeds, FLAGS.runs_dir, "table2", FLAGS.data_dir,
                           FLAGS.data_flagfile, FLAGS.report_only)
    fingerprint = next(iter(results.values())).get("data_fingerprint")
    notes = [f"Data: `{FLAGS.data_dir}` (fingerprint `{fingerprint}`), test split. Seeds: "
             f"{', '.join(map(str, seeds))}. Baselines: `{FLAGS.baseline_flagfile}` "
             f"{' '.join(FLAGS.baseline_flag)}; HRL-Rec: `{FLAGS.hrl_flagfile}` "
             f"{' '.join(FLAGS.hrl_flag)} (AUC of f, Eq. 16).",
             "Mean ± sample std over seeds; RelaImpr and the difference to HRL-Rec are per seed "
             "against the same seed's LR and HRL-Rec runs. p: two-sided paired t-test of the "
             "per-seed AUCs (n - 1 degrees of freedom), so with three seeds only a large, "
             "steady gap reaches the paper's alpha = 0.01.",
             f"Runs: `{FLAGS.runs_dir}`. Regenerate: `python -m experiments.table2 "
             f"--flagfile=configs/table2.flags`."]
    text, drawn = write_table(FLAGS.output_dir, settings, results, seeds, notes)
    print(text, flush=True)
    report.print_written(FLAGS.output_dir, ["table2.md", "table2.csv", "table2_runs.csv"],
                         "table2.png", drawn)


if __name__ == "__main__":
    define_flags()
    app.run(main)
