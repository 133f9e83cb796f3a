"""Table 4: ablations of HRL-Rec, each over several seeds, against LR for RelaImpr.

    python -m experiments.ablation --flagfile=configs/ablation.flags
    python -m experiments.ablation --flagfile=configs/ablation.flags --seeds=0 --dry_run

Each row is HRL-Rec with one component removed by one flag (the paper's Sec. 4.6): the GRU
state encoder replaced by average pooling, the field self-attention by a fully connected layer,
future rewards by gamma = 0, and the similarity loss L_s or the supervised click loss L_c
(Eq. 18's weights at 0). Without L_c, f(a, d) of Eq. 16 is never trained, so that row is scored
(and its epoch chosen) by cos(a^h_t, d_t), the score the HRA serves by; every row reports both.

Runs land in --runs_dir/{setting}__{seed} (`tensorboard --logdir runs/`); the table in
--output_dir as table4.md, table4.csv (per setting), table4_runs.csv (per run) and table4.png.
A rerun reuses finished runs and resumes cut-off ones (experiments/grid.py).
"""
from __future__ import annotations

import os

from absl import app, flags

from experiments import grid, report

FLAGS = flags.FLAGS

# (name, row label, flags that remove the component); the paper's Table 4 order.
ABLATIONS = (
    ("hrl_rec", "HRL-Rec", ()),
    ("no_gru", "- GRU (average pooling)", ("--state_encoder_gru=false",)),
    ("no_self_attention", "- self-attention (fully connected)", ("--field_self_attention=false",)),
    ("gamma0", "- future rewards (gamma = 0)", ("--gamma=0",)),
    ("no_similarity_loss", "- similarity loss L_s", ("--similarity_loss_weight=0",)),
    ("no_click_loss", "- supervised click loss L_c", ("--click_loss_weight=0",
                                                       "--eval_score=cosine")),
)
# The paper's Table 4 (IRec-4B, test AUC and RelaImpr over LR), for comparison only.
PAPER = {"hrl_rec": (0.8097, 0.3401), "no_gru": (0.7879, 0.2458),
         "no_self_attention": (0.8065, 0.3263), "gamma0": (0.7967, 0.2839),
         "no_similarity_loss": (0.8045, 0.3176), "no_click_loss": (0.8032, 0.3120)}
BASE = "lr"


def define_flags() -> None:
    flags.DEFINE_string("data_dir", "datasets/sim_small", "Dataset folder (generated if missing).")
    flags.DEFINE_string("data_flagfile", "configs/sim_small.flags",
                        "data.generate preset used when --data_dir holds no dataset.")
    flags.DEFINE_string("hrl_flagfile", "configs/quickstart.flags",
                        "hrl_rec.train flagfile shared by every HRL-Rec row.")
    flags.DEFINE_multi_string("hrl_flag", [], "A flag added to every HRL-Rec run, after the "
                              "flagfile (repeatable), e.g. --hrl_flag=--max_steps=100.")
    flags.DEFINE_string("lr_flagfile", "configs/baselines.flags",
                        "baselines.train flagfile of the LR runs (the base of RelaImpr).")
    flags.DEFINE_multi_string("lr_flag", [], "A flag added to every LR run (repeatable).")
    flags.DEFINE_list("seeds", ["0", "1", "2"], "Seeds; every row runs each of them.")
    flags.DEFINE_list("settings", [name for name, _, _ in ABLATIONS],
                      "Rows to run (LR always runs, as the base of RelaImpr).")
    flags.DEFINE_string("runs_dir", "runs/ablation", "Where each run's folder goes.")
    flags.DEFINE_string("output_dir", "results/ablation", "Where the table files go.")
    flags.DEFINE_boolean("dry_run", False, "Print the commands of the runs, run nothing.")


def grid_settings(names, data_dir, data_flagfile, hrl_flagfile, hrl_flags, lr_flagfile,
                  lr_flags) -> list[grid.Setting]:
    """LR first, then the chosen ablation rows in the paper's order."""
    known = {name: (label, args) for name, label, args in ABLATIONS}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ValueError(f"--settings: unknown {unknown}; expected some of {list(known)}")
    data = (f"--data_dir={data_dir}",)
    rows = [grid.Setting(BASE, "LR (base of RelaImpr)", "baselines.train",
                         ("--model=lr", f"--flagfile={lr_flagfile}", *data, *lr_flags))]
    for name, label, args in ABLATIONS:
        if name in names:
            rows.append(grid.Setting(name, label, "hrl_rec.train", grid.hrl_rec_args(
                hrl_flagfile, data_dir, data_flagfile, (*hrl_flags, *args))))
    return rows


def summary_rows(settings: list[grid.Setting], results: dict, seeds: list[int]):
    """-> (Markdown rows, CSV rows) of the table."""
    md, table = [], []
    for s in settings:
        auc = report.metric(results, s.name, seeds)
        hrl = s.module == "hrl_rec.train"
        gain = report.paired(results, s.name, "hrl_rec", seeds, report.auc_gain) if hrl else None
        impr = (report.paired(results, s.name, BASE, seeds, report.rela_impr_vs)
                if s.name != BASE else None)
        click = report.metric(results, s.name, seeds, "auc_click") if hrl else None
        cosine = report.metric(results, s.name, seeds, "auc_cosine") if hrl else None
        paper = PAPER.get(s.name)
        score = "cos" if results[s.name, seeds[0]].get("flags", {}).get("eval_score") == \
            "cosine" else ("f" if hrl else "LR")
        share = (report.paired(results, s.name, BASE, seeds, report.headroom_vs)
                 if s.name != BASE else None)
        md.append([s.label, f"{auc.text()} ({score})",
                   gain.text() if gain and s.name != "hrl_rec" else "",
                   impr.text(2, percent=True) if impr else "",
                   share.text(2, percent=True) if share else "",
                   click.text() if click else "", cosine.text() if cosine else "", str(auc.n),
                   f"{paper[0]:.4f} / {paper[1]:.2%}" if paper else ""])
        stats = (auc, gain, impr, share, click, cosine)
        table.append([s.name, s.label, score, auc.n]
                     + [x for st in stats for x in ((st.mean, st.std) if st else ("", ""))]
                     + (list(paper) if paper else ["", ""]))
    return md, table


MD_HEADER = ["setting", "test AUC (score)", "AUC vs HRL-Rec (paired)", "RelaImpr vs LR",
             "share of the (ceiling − LR) headroom", "AUC of f (Eq. 16)", "AUC of cos(a^h, d)", "seeds", "paper AUC / RelaImpr"]
CSV_HEADER = ["setting", "label", "score", "seeds", "auc_mean", "auc_std", "auc_vs_hrl_rec_mean",
              "auc_vs_hrl_rec_std", "rela_impr_mean", "rela_impr_std", "headroom_share_mean",
              "headroom_share_std", "auc_click_mean",
              "auc_click_std", "auc_cosine_mean", "auc_cosine_std", "paper_auc",
              "paper_rela_impr"]
RUN_KEYS = ["auc", "auc_click", "auc_cosine", "valid_auc", "logloss", "oracle_auc",
            "oracle_auc_noise_free", "learnable_ceiling_auc", "best_epoch", "steps",
            "wall_seconds", "data_fingerprint"]


def run_row(run: dict) -> list:
    """A run's RUN_KEYS; baselines.train nests its validation figures under "valid"."""
    valid = run.get("valid", {})
    flat = {"valid_auc": valid.get("auc", ""), "best_epoch": valid.get("epoch", ""), **run}
    return [flat.get(k, "") for k in RUN_KEYS]


def write_table(output_dir: str, settings, results: dict, seeds: list[int], notes: list[str]):
    os.makedirs(output_dir, exist_ok=True)
    md, table = summary_rows(settings, results, seeds)
    md += report.ceiling_rows(results, seeds, len(MD_HEADER))
    path = os.path.join(output_dir, "table4")
    report.write_markdown(path + ".md", "Table 4: ablations of HRL-Rec", notes, MD_HEADER, md)
    report.write_csv(path + ".csv", CSV_HEADER, table)
    report.write_csv(path + "_runs.csv", ["setting", "seed"] + RUN_KEYS, [
        [name, seed] + run_row(results[name, seed])
        for (name, seed) in sorted(results, key=lambda k: (k[1], k[0]))])
    hrl = [s for s in settings if s.name != BASE]
    off_scale = report.write_interval_chart(
        path + ".png", "Table 4: ablations (mean ± std over seeds)", [s.label for s in hrl],
        [report.metric(results, s.name, seeds) for s in hrl], "test AUC",
        reference=("LR", report.metric(results, BASE, seeds).mean))
    return report.markdown_table(MD_HEADER, md), off_scale is not None


def main(argv):
    del argv
    try:
        seeds = grid.parse_seeds(FLAGS.seeds)
    except ValueError as e:
        raise app.UsageError(str(e)) from None
    try:
        settings = grid_settings(FLAGS.settings, FLAGS.data_dir, FLAGS.data_flagfile,
                                 FLAGS.hrl_flagfile, FLAGS.hrl_flag, FLAGS.lr_flagfile,
                                 FLAGS.lr_flag)
    except ValueError as e:
        raise app.UsageError(str(e)) from None
    if FLAGS.dry_run:
        grid.print_commands(settings, seeds, FLAGS.runs_dir)
        return
    results = grid.collect(settings, seeds, FLAGS.runs_dir, "ablation", FLAGS.data_dir,
                           FLAGS.data_flagfile)
    fingerprint = results[BASE, seeds[0]].get("data_fingerprint")
    notes = [f"Data: `{FLAGS.data_dir}` (fingerprint `{fingerprint}`), test split. Seeds: "
             f"{', '.join(map(str, seeds))}. HRL-Rec: `{FLAGS.hrl_flagfile}` "
             f"{' '.join(FLAGS.hrl_flag)}; LR: `{FLAGS.lr_flagfile}` {' '.join(FLAGS.lr_flag)}.",
             "Mean ± sample std over seeds; the AUC difference and RelaImpr are per seed "
             "against the same seed's HRL-Rec and LR runs. (score): f = Eq. 16, cos = "
             "cos(a^h_t, d_t), the HRA's serving score (w/o L_c leaves f untrained).",
             f"Runs: `{FLAGS.runs_dir}`. Regenerate: `python -m experiments.ablation "
             f"--flagfile=configs/ablation.flags`."]
    text, drawn = write_table(FLAGS.output_dir, settings, results, seeds, notes)
    print(text, flush=True)
    report.print_written(FLAGS.output_dir, ["table4.md", "table4.csv", "table4_runs.csv"],
                         "table4.png", drawn)


if __name__ == "__main__":
    define_flags()
    app.run(main)
