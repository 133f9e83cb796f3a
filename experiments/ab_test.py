"""Table 3: online A/B test of HRL-Rec against the online base model, in IRecSim.

    python -m experiments.ab_test --flagfile=configs/ab_test.flags
    python -m experiments.ab_test --flagfile=configs/ab_test.flags --seeds=0 --dry_run

The paper (Sec. 4.5) deploys each model in the ranking module for 5 days and reports CTR, ACN
(clicks per capita) and AWT (watched tags per capita) as improvements over the base model, a
supervised LR with rule-based channel quotas. Here every arm replays the dataset's training
days under its logging policy and serves the test days (which no model trained on) to the whole
population (experiments/online.py): the base arm is the logging policy without exploration,
still refit daily on what it served; an HRL-Rec arm is a model trained by hrl_rec.train (through
experiments/grid.py, so finished runs are reused), fixed during the test days, serving by the
cosine of a^h_t and the candidates (Sec. 3.5). Every seed's model is an arm; the table gives
each metric's change over the base as mean ± std over seeds.

Rows (--settings): the DQN variants (baselines/dqn.py, trained by baselines.dqn_train at
--dqn_flagfile), the flat DDPG (baselines/ddpg.py, baselines.ddpg_train at --ddpg_flagfile),
"DDPG (hierarchical)" = HRL-Rec trained without L_c (no_click_loss, served by the cosine),
HRL-Rec.
Writes --output_dir/table3.md, table3.csv (per setting), table3_arms.csv (per arm, with channel
shares per day) and table3.png.
"""
from __future__ import annotations

import json
import os
import time
from typing import NamedTuple

from absl import app, flags

from data.progress import Progress
from data.sim_config import CHANNELS
from experiments import grid, report

FLAGS = flags.FLAGS
HRL, DQN, DDPG = "hrl_rec.train", "baselines.dqn_train", "baselines.ddpg_train"

# configs/quickstart.flags' departures from the paper's losses, undone (see configs/paper.flags)
PAPER_LOSSES = ("--critic_form=additive", "--critic_direction=false", "--actor_objective=critic",
                "--similarity_target=nearest", "--click_interaction=false",
                "--served_click_weight=0", "--served_rank_weight=0", "--served_distill_weight=0",
                "--served_distill_moves_items=true", "--lra_loss_weight=5",
                "--hra_loss_weight=5", "--click_loss_weight=1", "--similarity_loss_weight=1",
                "--beta=1", "--embedding_l2=0")
# (name, row label, trainer, its flags on top of the trainer's flagfile: --hrl_flagfile,
# --dqn_flagfile or --ddpg_flagfile); the paper's Table 3 order.
SETTINGS = (
    # Flat Q agents (baselines/dqn.py): each picks every slot's item from all channels.
    ("dqn_lr", "DQN (LR)", DQN, ("--variant=dqn_lr",)),
    ("dqn_gru", "DQN (GRU)", DQN, ("--variant=dqn_gru",)),
    ("dd_dqn", "Double-Dueling DQN", DQN, ("--variant=dd_dqn",)),
    # One actor-critic agent (HRL-Rec's item recommender without the channel selector) picks
    # every slot's item from all channels by the cosine of its action (baselines/ddpg.py).
    ("ddpg", "DDPG (flat)", DDPG, ()),
    # The paper's "DDPG (hierarchical)": both agents and the diversity and novelty rewards, but
    # without the supervised click loss L_c, which "further improves" it into HRL-Rec (Sec. 4.5,
    # (2f) and (3)). The same command as Table 4's `no_click_loss`, so those runs serve here;
    # f (Eq. 16) is never trained, so it is served by the cosine only.
    ("no_click_loss", "DDPG (hierarchical): HRL-Rec without L_c", HRL,
     ("--click_loss_weight=0", "--eval_score=cosine")),
    ("hrl_rec", "HRL-Rec", HRL, ()),
    # HRL-Rec with the paper's losses as printed (Eq. 5/8 on the raw action, Eq. 10/13, Eq. 16
    # additive, Eq. 17 to the nearest candidate, 5:5:1:1, beta 1) at the quickstart's sizes:
    # what configs/quickstart.flags departs from, each departure undone
    ("paper_losses", "HRL-Rec, the paper's losses as printed", HRL, PAPER_LOSSES),
    # a critic whose best action depends on the state (docs/quickstart.md, "The critic"): whether the
    # serving cosine then ranks items better online
    ("critic_bilinear", "HRL-Rec, bilinear critic", HRL, ("--critic_form=bilinear",)),
)
# The paper's Table 3 over the base model, in percent (CTR, ACN). It gives AWT only as one
# change between models: +1.98% "from DDPG to DDPG (hierarchical) and HRL-Rec".
PAPER = {"dqn_lr": (4.17, 3.72), "dqn_gru": (5.27, 4.77), "dd_dqn": (5.40, 5.41),
         "ddpg": (5.80, 7.82),
         "no_click_loss": (6.07, 10.43), "hrl_rec": (6.34, 11.67)}
METRICS = (("ctr", "CTR"), ("acn", "ACN"), ("awt", "AWT"))
# how a row's HRA picks the item of the LRA's channel (hrl_rec.policy.SlatePolicy's item_score)
SCORE_LABELS = {"cosine": "", "click": ", items by f (Eq. 16)",
                "wolpertinger_q": ", Wolpertinger (k nearest, then Q)",
                "wolpertinger_f": ", Wolpertinger (k nearest, then f)"}


class Row(NamedTuple):
    """A row of the table: a trained setting served with one item score."""
    name: str  # e.g. "hrl_rec" (cosine, the paper's serving) or "hrl_rec+click"
    label: str
    setting: grid.Setting
    item_score: str


def table_rows(settings: list[grid.Setting], item_scores: list[str]) -> list[Row]:
    """Each HRL-Rec setting served by each item score (except f for one trained without L_c:
    its f is the untrained initialisation); a flat agent's setting once, by its own score
    (a DQN's Q, the flat DDPG's cosine)."""
    from hrl_rec.config import ITEM_SCORES
    unknown = [x for x in item_scores if x not in ITEM_SCORES]
    if unknown or not item_scores:
        raise ValueError(f"--item_scores: unknown {unknown}; expected some of {ITEM_SCORES}")
    rows = []
    for s in settings:
        if s.module != HRL:
            rows.append(Row(s.name, s.label, s, "cosine"))
            continue
        rows += [Row(s.name if score == "cosine" else f"{s.name}+{score}",
                     s.label + SCORE_LABELS[score], s, score)
                 for score in item_scores
                 if score in ("cosine", "wolpertinger_q") or "--click_loss_weight=0" not in s.args]
    return rows


def define_model_flags(data_dir: str, data_flagfile: str, data_help: str) -> None:
    """The dataset and the trainers' flags of an online experiment (here and stability.py)."""
    flags.DEFINE_string("data_dir", data_dir, data_help)
    flags.DEFINE_string("data_flagfile", data_flagfile,
                        "data.generate preset used when --data_dir holds no dataset.")
    flags.DEFINE_string("hrl_flagfile", "configs/quickstart.flags",
                        "hrl_rec.train flagfile of every HRL-Rec arm.")
    flags.DEFINE_multi_string("hrl_flag", [], "A flag added to every HRL-Rec run (repeatable).")
    flags.DEFINE_string("dqn_flagfile", "configs/dqn.flags",
                        "baselines.dqn_train flagfile of every DQN arm.")
    flags.DEFINE_multi_string("dqn_flag", [], "A flag added to every DQN run (repeatable).")
    flags.DEFINE_string("ddpg_flagfile", "configs/ddpg.flags",
                        "baselines.ddpg_train flagfile of the flat DDPG arms.")
    flags.DEFINE_multi_string("ddpg_flag", [], "A flag added to every flat DDPG run "
                              "(repeatable).")


def define_flags() -> None:
    define_model_flags("datasets/sim_small", "configs/sim_small.flags", "IRecSim dataset folder "
                       "(generated if missing); its world is the online system.")
    flags.DEFINE_list("settings", ["hrl_rec"], f"Rows, from {[s[0] for s in SETTINGS]}.")
    flags.DEFINE_list("seeds", ["0", "1", "2"], "Training seeds; each trained model is an arm.")
    flags.DEFINE_integer("start_day", -1, "First served day; -1 = the dataset's first test day.")
    flags.DEFINE_integer("end_day", -1, "Serve the days before this one; -1 = to the last day. "
                         "--start_day=<first test day - 1> --end_day=<first test day> serves "
                         "the validation day alone: compare models there, not on the test days.")
    flags.DEFINE_list("item_scores", ["cosine"], "How each model's HRA picks the item of the "
                      "LRA's channel, one row each: cosine (Sec. 3.5), click (Eq. 16's f), "
                      "wolpertinger_q / wolpertinger_f (the --wolpertinger_k nearest by cosine, "
                      "then the critic's Q / f; hrl_rec/policy.py).")
    flags.DEFINE_integer("wolpertinger_k", 10, "Wolpertinger's k: nearest candidates by cosine "
                         "among which Q or f chooses.")
    flags.DEFINE_float("epsilon", 0.0, "Exploration of the HRL-Rec arms (Sec. 3.5); the "
                       "paper's A/B measures the served model, so 0.")
    flags.DEFINE_string("runs_dir", "runs/ab_test", "Where the trained models go (one folder "
                        "per setting and seed; runs/sweeps or runs/ablation reuse theirs).")
    flags.DEFINE_string("output_dir", "results/ab_test", "Where the table files go.")
    flags.DEFINE_boolean("dry_run", False, "Print the training commands, run nothing.")


def grid_settings(names, data_dir, data_flagfile, hrl_flagfile, hrl_flags, dqn_flagfile="",
                  dqn_flags=(), ddpg_flagfile="", ddpg_flags=()) -> list[grid.Setting]:
    """The chosen rows in the paper's order; HRL-Rec rows are hrl_rec.train at --hrl_flagfile,
    DQN rows baselines.dqn_train at --dqn_flagfile, the flat DDPG baselines.ddpg_train at
    --ddpg_flagfile."""
    known = [name for name, _, _, _ in SETTINGS]
    unknown = [n for n in names if n not in known]
    if unknown or not names:
        raise ValueError(f"--settings: unknown {unknown}; expected some of {known}")
    trainer = {HRL: (hrl_flagfile, hrl_flags), DQN: (dqn_flagfile, dqn_flags),
               DDPG: (ddpg_flagfile, ddpg_flags)}
    rows = []
    for name, label, module, args in SETTINGS:
        if name in names:
            flagfile, extra = trainer[module]
            rows.append(grid.Setting(name, label, module, grid.hrl_rec_args(
                flagfile, data_dir, data_flagfile, (*extra, *args))))
    return rows


def change(arm: dict, base: dict, key: str) -> float:
    """Relative change over the base arm (Table 3's "improvement")."""
    return arm[key] / base[key] - 1.0


def _row(name: str, label: str, runs: list[dict], base: dict, paper):
    """-> (Markdown row, CSV row) of arms `runs` (one per seed) against the base arm."""
    values = {k: report.Stat.of([r[k] for r in runs]) for k, _ in METRICS}
    changes = {k: report.Stat.of([change(r, base, k) for r in runs]) for k, _ in METRICS}
    share = [sum(r["channel_share"][c] for r in runs) / len(runs)
             for c in range(len(base["channel_share"]))]
    md = ([label] + [values[k].text(4 if k == "ctr" else 3) for k, _ in METRICS]
          + [changes[k].text(1, percent=True) for k, _ in METRICS]
          + [_shares(share), str(len(runs)),
             " / ".join(f"+{p:.2f}%" for p in paper) if paper else ""])
    csv_row = ([name, label, len(runs)]
               + [x for k, _ in METRICS for x in (values[k].mean, values[k].std)]
               + [x for k, _ in METRICS for x in (changes[k].mean, changes[k].std)]
               + share + (list(paper) if paper else ["", ""]))
    return md, csv_row


def summary_rows(rows: list[Row], arms: dict, base: dict, seeds: list[int],
                 references=()):
    """-> (Markdown rows, CSV rows): the base, the `references` ((name, label, arm) served
    once each), then each row's arms over the seeds; arms[(row name, seed)] = online report."""
    md = [["base (LR + channel quotas, no exploration)"]
          + [f"{base[k]:.4f}" if k == "ctr" else f"{base[k]:.3f}" for k, _ in METRICS]
          + ["", "", "", _shares(base["channel_share"]), "", ""]]
    table = [["base", "", 1] + [x for k, _ in METRICS for x in (base[k], "")]
             + [x for _ in METRICS for x in ("", "")] + base["channel_share"] + ["", ""]]
    for name, label, arm in references:
        row_md, row_csv = _row(name, label, [arm], base, None)
        md.append(row_md)
        table.append(row_csv)
    for s in rows:
        row_md, row_csv = _row(s.name, s.label, [arms[s.name, seed] for seed in seeds], base,
                               PAPER.get(s.name))
        md.append(row_md)
        table.append(row_csv)
    return md, table


def _shares(share) -> str:
    return ", ".join(f"{name} {100 * x:.0f}%" for name, x in zip(CHANNELS, share))


MD_HEADER = ["arm", "CTR", "ACN", "AWT", "CTR vs base", "ACN vs base", "AWT vs base",
             "impressions by channel", "seeds", "paper (CTR / ACN)"]


def csv_header():
    return (["setting", "label", "seeds"] + [f"{k}_{s}" for k, _ in METRICS
                                             for s in ("mean", "std")]
            + [f"{k}_vs_base_{s}" for k, _ in METRICS for s in ("mean", "std")]
            + [f"share_{c}" for c in CHANNELS] + ["paper_ctr", "paper_acn"])


ARM_KEYS = ["ctr", "acn", "awt", "impressions", "clicks", "requests", "sessions",
            "active_users", "dwell_per_capita", "channel_share", "channel_share_per_day"]


def write_table(output_dir, rows: list[Row], arms, base, seeds, notes, references=()):
    os.makedirs(output_dir, exist_ok=True)
    md, table = summary_rows(rows, arms, base, seeds, references)
    path = os.path.join(output_dir, "table3")
    report.write_markdown(path + ".md", "Table 3: online A/B test in IRecSim", notes,
                          MD_HEADER, md)
    report.write_csv(path + ".csv", csv_header(), table)
    per_arm = [[name, ""] + [json.dumps(arm[k]) if isinstance(arm[k], list) else arm[k]
                             for k in ARM_KEYS]
               for name, arm in [("base", base)] + [(n, a) for n, _, a in references]]
    for (name, seed), arm in sorted(arms.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        per_arm.append([name, seed] + [json.dumps(arm[k]) if isinstance(arm[k], list) else arm[k]
                                    for k in ARM_KEYS])
    report.write_csv(path + "_arms.csv", ["arm", "seed"] + ARM_KEYS, per_arm)
    labels, stats = [], []
    for s in rows:
        for key, name in METRICS:
            labels.append(f"{s.label}: {name}")
            stats.append(report.Stat.of([change(arms[s.name, seed], base, key) for seed in seeds]))
    off = report.write_interval_chart(path + ".png", "Table 3: online A/B vs the base",
                                      labels, stats, "relative change (mean ± std over seeds)",
                                      reference=("base", 0.0), span=1.0)
    return report.markdown_table(MD_HEADER, md), off is not None


def main(argv):
    del argv
    try:
        seeds = grid.parse_seeds(FLAGS.seeds)
    except ValueError as e:
        raise app.UsageError(str(e)) from None
    if not 0.0 <= FLAGS.epsilon <= 1.0:
        raise app.UsageError(f"--epsilon={FLAGS.epsilon}: expected a value in [0, 1]")
    try:
        settings = grid_settings(FLAGS.settings, FLAGS.data_dir, FLAGS.data_flagfile,
                                 FLAGS.hrl_flagfile, FLAGS.hrl_flag, FLAGS.dqn_flagfile,
                                 FLAGS.dqn_flag, FLAGS.ddpg_flagfile, FLAGS.ddpg_flag)
        rows = table_rows(settings, FLAGS.item_scores)
    except ValueError as e:
        raise app.UsageError(str(e)) from None
    if FLAGS.dry_run:
        grid.print_commands(settings, seeds, FLAGS.runs_dir)
        return
    from experiments import online
    from hrl_rec.train import ensure_dataset
    ensure_dataset(FLAGS.data_dir, FLAGS.data_flagfile)
    cfg, world, metadata = online.load_world(FLAGS.data_dir)
    start = None if FLAGS.start_day < 0 else FLAGS.start_day
    if start is not None and start >= cfg.n_days:
        raise app.UsageError(f"--start_day={start}: {FLAGS.data_dir} has days 0-"
                             f"{cfg.n_days - 1}")
    end = None if FLAGS.end_day < 0 else FLAGS.end_day
    first = cfg.test_start_day if start is None else start
    if end is not None and not first < end <= cfg.n_days:
        raise app.UsageError(f"--end_day={end}: expected a day after the first served day "
                             f"({first}) and at most {cfg.n_days}")
    try:
        runs = grid.run_grid(settings, seeds, FLAGS.runs_dir, "ab_test: training")
    except grid.GridError as e:
        raise SystemExit(str(e)) from None
    if runs[settings[0].name, seeds[0]].get("data_fingerprint") != metadata["fingerprint"]:
        raise SystemExit(f"the runs in {FLAGS.runs_dir} were trained on another dataset than "
                         f"{FLAGS.data_dir} (fingerprint {metadata['fingerprint']})")
    n_shards = metadata["shards"]
    jobs = [(row, seed) for seed in seeds for row in rows]

    progress = Progress((len(jobs) + 2) * n_shards * (cfg.n_days + 1), "ab_test: serving",
                        unit="shard-days")

    def serve(label, act, m=0):
        t0 = time.monotonic()
        result = online.run_arm(cfg, world, n_shards, act, start, m,
                                on_day=lambda *_: progress.update(1, extra=label), end_day=end)
        print(f"ab_test: {label}: ctr {result['ctr']:.4f} acn {result['acn']:.3f} awt "
              f"{result['awt']:.3f} ({time.monotonic() - t0:.0f} s)", flush=True)
        return result

    base = serve("base", online.logging_arm(0.0))
    # the CTR-only ranker: does the simulator punish the homogeneous feed it serves?
    references = [("lr_no_quotas", "LR without channel quotas (CTR only)",
                   serve("lr_no_quotas", online.logging_arm(0.0, quotas=False)))]
    arms = {}
    for row, seed in jobs:
        model = online.load_model(grid.job_dir(FLAGS.runs_dir, row.setting, seed))
        arms[row.name, seed] = serve(f"{row.name} seed {seed}", online.model_arm(
            model, world, FLAGS.epsilon, seed, row.item_score, FLAGS.wolpertinger_k),
            model.max_seq_len)
    notes = [f"Data: `{FLAGS.data_dir}` (fingerprint `{metadata['fingerprint']}`): "
             f"{cfg.n_users} users; served days {base['days'][0]}-{base['days'][-1]} ("
             f"{'the test days' if base['days'][0] >= cfg.test_start_day else 'not test days'}"
             f"; other days replay the dataset). Models: HRL-Rec `{FLAGS.hrl_flagfile}` "
             f"{' '.join(FLAGS.hrl_flag)}, DQN `{FLAGS.dqn_flagfile}` "
             f"{' '.join(FLAGS.dqn_flag)}, flat DDPG `{FLAGS.ddpg_flagfile}` "
             f"{' '.join(FLAGS.ddpg_flag)}; seeds {', '.join(map(str, seeds))}, epsilon "
             f"{FLAGS.epsilon:g}.",
             "ACN = clicks per user of the population, AWT = distinct tags of clicked items per "
             "user; the changes are over the base arm, mean ± sample std over training seeds.",
             "The paper gives AWT only as +1.98% from DDPG to DDPG (hierarchical) and HRL-Rec.",
             "Regenerate: `python -m experiments.ab_test --flagfile=configs/ab_test.flags`."]
    text, drawn = write_table(FLAGS.output_dir, rows, arms, base, seeds, notes, references)
    print(text, flush=True)
    report.print_written(FLAGS.output_dir, ["table3.md", "table3.csv", "table3_arms.csv"],
                         "table3.png", drawn)


if __name__ == "__main__":
    define_flags()
    app.run(main)
