"""Fig. 4: stability of the channel proportions under daily model and data updates, in IRecSim.

    python -m experiments.stability --flagfile=configs/stability.flags
    python -m experiments.stability --flagfile=configs/stability.flags --seeds=0 --dry_run
    python -m experiments.stability --flagfile=configs/stability.flags --report_only

The paper (Sec. 4.6) updates HRL-Rec and DQN daily online and compares each channel's
proportion of the feed at the same time (weekday and hour) in two adjacent weeks: DQN's video
proportion changes by up to 18.0% (11.7% on average), HRL-Rec's by up to 4.5% (1.4%).

Here the dataset (configs/sim_stability.flags: 7 training days, then two served weeks, one user
shard so that days can be served in order) trains each model through experiments/grid.py; each
trained model then serves every user on the 14 days after training (experiments/online.py). In
mode `daily` it is trained further at the end of every served day on the lists it served that
day (experiments/daily_update.py); in mode `frozen` it stays as trained, a control for how much
the users' own variation moves the proportions. For a channel group g (video = long + short
video; news) and a cell (weekday, hour) with at least --min_cell_impressions in both weeks,
    p_w = impressions of g in the cell / impressions in the cell, in week w = 1, 2
    relative change = |p_2 - p_1| / p_1
and the table gives, per model and mode, the max and the mean over the cells (mean ± std over
training seeds), the same over whole weekdays, and the group's share. Each served arm is saved
as --output_dir/arms/SETTING__SEED__MODE.json, so an interrupted run resumes arm by arm, with
its channel shares and update losses by day in --output_dir/tb/ (TensorBoard). Writes
stability.md, stability.csv and stability.png (video and news share by hour of the week, week 1
against week 2, of one seed's arms: the first seed's daily ones where served).
"""
from __future__ import annotations

import json
import os
import time

import numpy as np
from absl import app, flags

from data.files import write_json
from data.progress import Progress
from data.sim_config import CHANNELS
from experiments import ab_test, grid, report

FLAGS = flags.FLAGS
MODES = ("daily", "frozen")
GROUPS = (("video", ("long_video", "short_video")), ("news", ("news",)))
WEEK = 7
# The paper's Sec. 4.6 (video channel): max and mean relative change between adjacent weeks.
PAPER = {"dqn": (0.180, 0.117), "hrl_rec": (0.045, 0.014)}


def define_flags() -> None:
    ab_test.define_model_flags("datasets/sim_stability", "configs/sim_stability.flags",
                               "IRecSim dataset folder with one user shard and at least 14 "
                               "test days (generated if missing).")
    flags.DEFINE_list("settings", ["dqn_gru", "hrl_rec"],
                      f"Models, from {[s[0] for s in ab_test.SETTINGS]}.")
    flags.DEFINE_list("seeds", ["0", "1", "2"], "Training seeds; each trained model serves.")
    flags.DEFINE_list("modes", list(MODES), f"Serving modes, from {MODES}.")
    flags.DEFINE_string("item_score", "click", "How the HRL-Rec models' HRA picks the item "
                        "(cosine, Sec. 3.5, or click, Eq. 16's f; hrl_rec/policy.py).")
    flags.DEFINE_float("epsilon", 0.1, "Online exploration of every served model (Sec. 3.5).",
                       lower_bound=0.0, upper_bound=1.0)
    flags.DEFINE_integer("update_epochs", 1, "Passes over the window at each daily update.",
                         lower_bound=1)
    flags.DEFINE_integer("update_window_days", 1, "Served days each daily update trains on "
                         "(the newest).", lower_bound=1)
    flags.DEFINE_integer("min_cell_impressions", 1000, "Cells (weekday, hour) with fewer "
                         "impressions in either week are left out of the changes.",
                         lower_bound=1)
    flags.DEFINE_string("runs_dir", "runs/stability", "Where the trained models go.")
    flags.DEFINE_string("output_dir", "results/stability", "Where the arms and the table go.")
    flags.DEFINE_boolean("dry_run", False, "Print the training commands, run nothing.")
    flags.DEFINE_boolean("report_only", False, "Report the arms served so far; run nothing.")


def group_index(names) -> list[int]:
    return [CHANNELS.index(n) for n in names]


def relative_changes(counts: np.ndarray, channels: list[int], min_impressions: int
                     ) -> np.ndarray:
    """counts [14, ..., C]: impressions per served day (two weeks, day d and d + 7 on the same
    weekday), cell and channel -> |p_2 - p_1| / p_1 of the channels' share in every cell with
    at least `min_impressions` in both weeks (and p_1 > 0), flattened."""
    if len(counts) < 2 * WEEK:
        raise ValueError(f"{len(counts)} served days: two weeks (14) are needed")
    weeks = counts[:WEEK], counts[WEEK:2 * WEEK]
    totals = [w.sum(-1) for w in weeks]
    shares = [w[..., channels].sum(-1) / np.maximum(t, 1) for w, t in zip(weeks, totals)]
    ok = (totals[0] >= min_impressions) & (totals[1] >= min_impressions) & (shares[0] > 0)
    return np.abs(shares[1] - shares[0])[ok] / shares[0][ok]


def arm_summary(arm: dict, min_impressions: int) -> dict:
    """The figures of one served arm: per group, max and mean relative change over hourly
    cells and over whole days, and the group's share of the two weeks; the share of its
    largest channel; the mean relative weight change of its daily updates (nan when frozen)."""
    hourly = np.asarray(arm["channel_impressions_per_hour"], np.int64)
    out = {"ctr": arm["ctr"], "acn": arm["acn"]}
    for name, channels in GROUPS:
        index = group_index(channels)
        for cell, counts in (("hour", hourly), ("day", hourly.sum(1))):
            changes = relative_changes(counts, index, min_impressions)
            out[f"{name}_{cell}_max"] = float(changes.max()) if changes.size else float("nan")
            out[f"{name}_{cell}_mean"] = float(changes.mean()) if changes.size else float("nan")
            out[f"{name}_{cell}_cells"] = int(changes.size)
        out[f"{name}_share"] = float(hourly[..., index].sum() / max(hourly.sum(), 1))
    # a feed that collapses onto one channel is "stable" trivially: its largest channel's share
    share = hourly.sum((0, 1)) / max(hourly.sum(), 1)
    out["top_share"] = float(share.max())
    moved = [u["weight_change"] for u in arm.get("updates", []) if "weight_change" in u]
    out["weight_change"] = float(np.mean(moved)) if moved else float("nan")
    return out


def arm_path(output_dir: str, name: str, seed: int, mode: str) -> str:
    return os.path.join(output_dir, "arms", f"{name}__{seed}__{mode}.json")


def save_arm(output_dir: str, name: str, seed: int, mode: str, arm: dict) -> None:
    """The arm's JSON (atomically, its folder made) and its TensorBoard logs."""
    path = arm_path(output_dir, name, seed, mode)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    write_json(path, arm)
    write_tensorboard(os.path.join(output_dir, "tb", f"{name}__{seed}__{mode}"), arm)


def serve_arm(cfg, world, data_dir: str, model_dir: str, mode: str, work_dir: str, *,
              item_score: str = "cosine", epsilon: float = 0.0, seed: int = 0,
              update_epochs: int = 1, update_window_days: int = 1, on_day=None) -> dict:
    """One trained model serving every day after training, updated daily (mode "daily") or
    not ("frozen") -> the online report with `updates` (one dict per daily update).
    `on_day(day, text)` sees the end of every simulated day."""
    from experiments import online
    from experiments.daily_update import DailyUpdate
    if mode not in MODES:
        raise ValueError(f"mode {mode!r}: expected one of {MODES}")
    model = online.load_model(model_dir)
    act = online.model_arm(model, world, epsilon, seed, item_score)
    updater = (DailyUpdate(model, model_dir, data_dir, work_dir, update_epochs,
                           update_window_days, seed) if mode == "daily" else None)
    start, updates = cfg.test_start_day, []

    def end_of_day(day, log):
        text = ""
        if updater is not None and day >= 0:
            updater.add_day(log)
            if start <= day < cfg.n_days - 1:  # the last day's update would serve nothing
                updates.append(updater.update(day))
                u = updates[-1]
                text = (f"day {day} update: {u['steps']} steps, {u['seconds']:.0f} s, loss "
                        f"{u.get('loss/total', float('nan')):.4f}")
        if on_day is not None:
            on_day(day, text)

    result = online.run_arm(cfg, world, 1, act, start, model.max_seq_len, on_day=end_of_day)
    return {**result, "updates": updates, "mode": mode, "seed": seed, "item_score": item_score,
            "epsilon": epsilon, "model_dir": model_dir}


def write_tensorboard(tb_dir: str, arm: dict) -> None:
    """The arm by served day (step = day): each channel's share (`eval/share_*`), and each
    update's mean losses (`loss/*`), `update/weight_change` and `update/steps`."""
    import tensorflow as tf
    with tf.summary.create_file_writer(tb_dir).as_default():
        for day, share in zip(arm["days"], arm["channel_share_per_day"]):
            for name, x in zip(CHANNELS, share):
                tf.summary.scalar(f"eval/share_{name}", x, step=day)
        for u in arm["updates"]:
            for k, v in u.items():
                if k.startswith("loss/"):
                    tf.summary.scalar(k, v, step=u["day"])
            tf.summary.scalar("update/weight_change", u["weight_change"], step=u["day"])
            tf.summary.scalar("update/steps", u["steps"], step=u["day"])


def check_dataset(data_dir: str, cfg, metadata) -> None:
    """ValueError unless the dataset has one user shard and two weeks of test days."""
    if metadata["shards"] != 1:
        raise ValueError(f"{data_dir} has {metadata['shards']} user shards: daily updates "
                         f"serve every user day by day, so generate it with --n_shards=1")
    served = cfg.n_days - cfg.test_start_day
    if served < 2 * WEEK:
        raise ValueError(f"{data_dir} has {served} test days; two weeks are needed "
                         f"(--test_days=14)")


def load_checked_world(data_dir: str, data_flagfile: str):
    """The dataset's world (the dataset generated if missing), checked for daily serving."""
    from experiments import online
    from hrl_rec.train import ensure_dataset
    ensure_dataset(data_dir, data_flagfile)
    cfg, world, metadata = online.load_world(data_dir)
    try:
        check_dataset(data_dir, cfg, metadata)
    except ValueError as e:
        raise SystemExit(str(e)) from None
    return cfg, world, metadata


def serve_all(settings, seeds, modes, cfg, world, metadata) -> None:
    """Serves every (setting, seed, mode) arm not saved yet."""
    jobs = [(s, seed, mode) for seed in seeds for s in settings for mode in modes
            if not os.path.exists(arm_path(FLAGS.output_dir, s.name, seed, mode))]
    progress = Progress(len(jobs) * (cfg.n_days + 1), "stability: serving", unit="days")
    for s, seed, mode in jobs:
        t0 = time.monotonic()
        model_dir = grid.job_dir(FLAGS.runs_dir, s, seed)
        item_score = FLAGS.item_score if s.module == ab_test.HRL else "cosine"
        work_dir = os.path.join(FLAGS.output_dir, "work", f"{s.name}__{seed}")
        label = f"{s.name} seed {seed} {mode}"
        arm = serve_arm(cfg, world, FLAGS.data_dir, model_dir, mode, work_dir,
                        item_score=item_score, epsilon=FLAGS.epsilon, seed=seed,
                        update_epochs=FLAGS.update_epochs,
                        update_window_days=FLAGS.update_window_days,
                        on_day=lambda day, text: progress.update(
                            1, extra=f"{label} {text}".rstrip()))
        arm["data_fingerprint"] = metadata["fingerprint"]
        save_arm(FLAGS.output_dir, s.name, seed, mode, arm)
        video = arm_summary(arm, FLAGS.min_cell_impressions)
        print(f"stability: {s.name} seed {seed} {mode}: ctr {arm['ctr']:.4f}, video change "
              f"max {video['video_hour_max']:.3f} mean {video['video_hour_mean']:.3f} "
              f"({time.monotonic() - t0:.0f} s)", flush=True)


def load_arms(settings, seeds, modes) -> dict:
    arms = {}
    for s in settings:
        for seed in seeds:
            for mode in modes:
                path = arm_path(FLAGS.output_dir, s.name, seed, mode)
                if os.path.exists(path):
                    with open(path) as f:
                        arms[s.name, seed, mode] = json.load(f)
    return arms


FIGURES = [f"{g}_{cell}_{k}" for g, _ in GROUPS for cell in ("hour", "day")
           for k in ("max", "mean")]
EXTRA = ["video_share", "news_share", "top_share", "ctr", "weight_change"]


def table(settings, seeds, modes, arms, min_impressions: int):
    """-> (Markdown rows, CSV rows): one row per (model, mode) with its arms' figures."""
    md, rows = [], []
    for s in settings:
        for mode in modes:
            summaries = [arm_summary(arms[s.name, seed, mode], min_impressions)
                         for seed in seeds if (s.name, seed, mode) in arms]
            if not summaries:
                continue
            stats = {k: report.Stat.of([x[k] for x in summaries]) for k in FIGURES + EXTRA}
            paper = PAPER.get("dqn" if s.module == ab_test.DQN else s.name)
            md.append([s.label, mode] + [stats[k].text(1, percent=True) for k in FIGURES]
                      + [stats[k].text(1, percent=True)
                         for k in ("video_share", "news_share", "top_share")]
                      + [stats["ctr"].text(4), "" if mode == "frozen" else
                         stats["weight_change"].text(2, percent=True), str(len(summaries)),
                         f"{100 * paper[0]:.1f}% / {100 * paper[1]:.1f}%" if paper else ""])
            rows.append([s.name, s.label, mode, len(summaries)]
                        + [x for k in FIGURES + EXTRA for x in (stats[k].mean, stats[k].std)]
                        + (list(paper) if paper else ["", ""]))
    return md, rows


MD_HEADER = (["model", "mode"] + [f"{g} {cell} {k}" for g, _ in GROUPS for cell in ("hour", "day")
                                  for k in ("max", "mean")]
             + ["video share", "news share", "largest channel's share", "CTR",
                "weight change per update", "seeds",
                "paper video hour max / mean"])


def csv_header() -> list[str]:
    return (["setting", "label", "mode", "seeds"]
            + [f"{k}_{s}" for k in FIGURES + EXTRA for s in ("mean", "std")]
            + ["paper_video_max", "paper_video_mean"])


def hourly_shares(arm: dict, channels: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """The group's share per hour of each served week, [2, 7 * 24] (nan where none served)."""
    counts = np.asarray(arm["channel_impressions_per_hour"], np.float64)[:2 * WEEK]
    share = counts[..., channels].sum(-1) / np.where(counts.sum(-1) > 0, counts.sum(-1), np.nan)
    return share.reshape(2, WEEK * 24)


def write_chart(path: str, settings, arms, seed: int, mode: str) -> bool:
    plt = report.pyplot()
    if plt is None:
        return False
    shown = [s for s in settings if (s.name, seed, mode) in arms]
    if not shown:
        return False
    fig, axes = plt.subplots(len(shown), len(GROUPS), figsize=(12, 2.6 * len(shown) + 0.6),
                             squeeze=False)
    hours = np.arange(WEEK * 24)
    for row, s in zip(axes, shown):
        arm = arms[s.name, seed, mode]
        for ax, (group, channels) in zip(row, GROUPS):
            weeks = hourly_shares(arm, group_index(channels))
            ax.plot(hours, weeks[0], color="tab:blue", lw=1, label="week 1")
            ax.plot(hours, weeks[1], color="tab:orange", lw=1, label="week 2")
            ax.set_title(f"{s.label}: {group} share ({mode}, seed {seed})", fontsize="small")
            ax.set_xticks(np.arange(0, WEEK * 24 + 1, 24))
            ax.grid(alpha=0.3)
    axes[-1][0].set_xlabel("hour of the served week")
    axes[0][0].legend(fontsize="small")
    fig.tight_layout()
    report.save_png(plt, fig, path)
    return True


def main(argv):
    del argv
    try:
        seeds = grid.parse_seeds(FLAGS.seeds)
        settings = ab_test.grid_settings(FLAGS.settings, FLAGS.data_dir, FLAGS.data_flagfile,
                                         FLAGS.hrl_flagfile, FLAGS.hrl_flag, FLAGS.dqn_flagfile,
                                         FLAGS.dqn_flag, FLAGS.ddpg_flagfile, FLAGS.ddpg_flag)
    except ValueError as e:
        raise app.UsageError(str(e)) from None
    unknown = [m for m in FLAGS.modes if m not in MODES]
    if unknown or not FLAGS.modes:
        raise app.UsageError(f"--modes={','.join(FLAGS.modes)}: expected some of {MODES}")
    if FLAGS.item_score not in ("cosine", "click"):
        raise app.UsageError(f"--item_score={FLAGS.item_score}: expected cosine or click")
    if FLAGS.dry_run:
        grid.print_commands(settings, seeds, FLAGS.runs_dir)
        return
    if not FLAGS.report_only:  # before any training: the dataset must suit daily serving
        served = load_checked_world(FLAGS.data_dir, FLAGS.data_flagfile)
    grid.collect(settings, seeds, FLAGS.runs_dir, "stability: training", FLAGS.data_dir,
                 FLAGS.data_flagfile, FLAGS.report_only)
    if not FLAGS.report_only:
        serve_all(settings, seeds, FLAGS.modes, *served)
    arms = load_arms(settings, seeds, FLAGS.modes)
    if not arms:
        raise SystemExit(f"no served arms in {FLAGS.output_dir}/arms")
    md, rows = table(settings, seeds, FLAGS.modes, arms, FLAGS.min_cell_impressions)
    notes = [f"Data: `{FLAGS.data_dir}`; served days: the 14 after training (two weeks), every "
             f"user; epsilon {FLAGS.epsilon:g}; HRL-Rec items by {FLAGS.item_score}. Daily "
             f"updates: {FLAGS.update_epochs} pass(es) over the newest "
             f"{FLAGS.update_window_days} served day(s) (experiments/daily_update.py).",
             f"Relative change |p_2 - p_1| / p_1 of a group's share between the same cell of "
             f"the two weeks: hour = (weekday, hour) cells, day = whole weekdays; cells with "
             f"< {FLAGS.min_cell_impressions} impressions in a week are left out. Mean ± std "
             f"over training seeds. Weight change per update: ||theta_after - theta_before|| "
             f"/ ||theta_before|| of one daily update, averaged over the updates.",
             "Regenerate: `python -m experiments.stability --flagfile=configs/stability.flags`."]
    os.makedirs(FLAGS.output_dir, exist_ok=True)
    path = os.path.join(FLAGS.output_dir, "stability")
    report.write_markdown(path + ".md", "Fig. 4: channel proportion stability in IRecSim",
                          notes, MD_HEADER, md)
    report.write_csv(path + ".csv", csv_header(), rows)
    seed, mode = next(key[1:] for key in sorted(arms, key=lambda k: (
        k[1] != seeds[0], FLAGS.modes.index(k[2]))))  # the first seed's daily arms if served
    drawn = write_chart(path + ".png", settings, arms, seed, mode)
    print(report.markdown_table(MD_HEADER, md), flush=True)
    report.print_written(FLAGS.output_dir, ["stability.md", "stability.csv"], "stability.png",
                         drawn)


if __name__ == "__main__":
    define_flags()
    app.run(main)
