"""experiments.stability (Fig. 4) and experiments.daily_update: the relative changes by hand,
the update window, a daily arm that trains the model it serves, the dataset checks and the
CLI. (A frozen arm is online.run_arm with online.model_arm, tested in test_online.py.)"""
import dataclasses
import json
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from data import generate
from data.sim_config import SimConfig
from data.sim_world import DAY
from baselines.dqn import DQNConfig, QNetwork
from experiments import grid, online, stability
from experiments.daily_update import DailyUpdate, learner_for
from hrl_rec.model import HRLRec
from tests.hrl_rec.helpers import TINY, tiny_config

REPO = pathlib.Path(__file__).resolve().parents[2]
DQN_CFG = DQNConfig(variant="dd_dqn", **TINY, batch_size=4, candidates_per_channel=2)


def _counts(week1, week2):
    """[14, cells, 4] impressions: every day of a week gets the same cells."""
    return np.array([week1] * 7 + [week2] * 7, np.int64)


def test_relative_changes_by_hand():
    # cell 0: video (channels 2, 3) share 600/1000 -> 450/1000: |0.45 - 0.6| / 0.6 = 0.25
    # cell 1: 300/1200 = 0.25 -> 330/1100 = 0.3: 0.2; cell 2: 500 impressions in week 2, left out
    week1 = [[200, 200, 300, 300], [600, 300, 200, 100], [100, 100, 400, 400]]
    week2 = [[300, 250, 250, 200], [500, 270, 300, 30], [100, 100, 150, 150]]
    changes = stability.relative_changes(_counts(week1, week2), [2, 3], 1000)
    np.testing.assert_allclose(changes, [0.25, 0.2] * 7)
    # news (channel 0): 0.2 -> 0.3 (0.5); 0.5 -> 500/1100 (1/11)
    np.testing.assert_allclose(stability.relative_changes(_counts(week1, week2), [0], 1000),
                               [0.5, 1 / 11] * 7)
    with pytest.raises(ValueError, match=r"13 served days: two weeks \(14\) are needed"):
        stability.relative_changes(np.ones((13, 4)), [0], 1)


def test_arm_summary_by_hand():
    hourly = np.zeros((14, 24, 4), np.int64)
    hourly[:7, 9] = [500, 500, 500, 500]   # 9 o'clock, week 1: video 0.5
    hourly[7:, 9] = [600, 600, 400, 400]   # week 2: video 0.4 (change 0.2), news 0.3 (0.2)
    hourly[:7, 20] = [100, 100, 400, 400]  # 20 o'clock: video 0.8 -> 0.8 (0), news 0.1 -> 0.1
    hourly[7:, 20] = [100, 100, 400, 400]
    arm = {"ctr": 0.1, "acn": 2.0, "channel_impressions_per_hour": hourly.tolist()}
    s = stability.arm_summary(arm, 1000)
    assert s["video_hour_max"] == pytest.approx(0.2) and s["video_hour_mean"] == pytest.approx(0.1)
    assert s["video_hour_cells"] == 14
    # whole days: video 1800/3000 = 0.6 -> 1600/3000: 1/9; news 600/3000 -> 700/3000: 1/6
    assert s["video_day_max"] == pytest.approx(1 / 9) and s["news_day_mean"] == pytest.approx(1 / 6)
    assert s["video_share"] == pytest.approx((7 * 1800 + 7 * 1600) / (7 * 3000 + 7 * 3000))
    # channels over both weeks: 7 x [600, 600, 900, 900] + 7 x [700, 700, 800, 800]
    assert s["top_share"] == pytest.approx(1700 / 6000)


@pytest.fixture(scope="module")
def daily_data(tmp_path_factory):
    """150 users over 4 days, the last 2 served; a tiny untrained HRL-Rec and DQN saved as runs
    (root/run, root/dqn)."""
    root = tmp_path_factory.mktemp("stability")
    generate.generate(SimConfig(n_users=150, n_days=4, test_days=2), str(root / "data"),
                      n_shards=1, processes=1)
    cfg, world, metadata = online.load_world(str(root / "data"))
    for name, model, config in (
            ("run", HRLRec(metadata["spec"], **TINY), tiny_config()),
            ("dqn", QNetwork(metadata["spec"], encoder="gru", dueling=True, **TINY), DQN_CFG)):
        (root / name).mkdir()
        model.save(root / name / "model.keras")
        (root / name / "eval.json").write_text(
            json.dumps({"flags": dataclasses.asdict(config)}))
    return root, cfg, world, metadata


def test_the_update_window_is_the_newest_days_with_their_history(daily_data, tmp_path):
    root, cfg, world, metadata = daily_data
    model = online.load_model(str(root / "run"))
    update = DailyUpdate(model, str(root / "run"), str(root / "data"), str(tmp_path),
                         window_days=1)
    days = {}
    online.run_arm(cfg, world, 1, online.logging_arm(0.1), start_day=3,
                   on_day=lambda day, log: days.setdefault(day, log))
    for day in range(3):
        update.add_day(days[day])
    window, target = update.window(2)
    day2 = days[2]
    # the targets are day 2's impressions, each once
    assert target.sum() == len(day2)
    assert (window.timestamp[target == 1] // DAY == 2).all()
    # the context: for each user of day 2, its last m = 4 earlier impressions, none of others
    context = window.take(np.flatnonzero(target == 0))
    assert (context.timestamp < 2 * DAY).all()
    assert set(context.user_id) <= set(day2.user_id)
    earlier = {u: (days[0].user_id == u).sum() + (days[1].user_id == u).sum()
               for u in set(day2.user_id)}
    for u in set(day2.user_id):
        assert (context.user_id == u).sum() == min(earlier[u], TINY["max_seq_len"])
    two = DailyUpdate(model, str(root / "run"), str(root / "data"), str(tmp_path / "two"),
                      window_days=2)
    for day in range(3):
        two.add_day(days[day])
    assert two.window(2)[1].sum() == len(days[1]) + len(day2)


def test_a_daily_arm_trains_the_model_it_serves_after_each_served_day(daily_data, tmp_path):
    root, cfg, world, metadata = daily_data
    seen = []
    with pytest.raises(ValueError, match=r"mode 'weekly': expected one of \('daily', 'frozen'"):
        stability.serve_arm(cfg, world, str(root / "data"), str(root / "run"), "weekly", "w")
    # a DQN (its learner and trace are the cheaper; the HRL-Rec learner's window is above)
    daily = stability.serve_arm(cfg, world, str(root / "data"), str(root / "dqn"), "daily",
                                str(tmp_path), epsilon=0.1,
                                on_day=lambda day, text: seen.append((day, text)))
    assert daily["days"] == [2, 3] and daily["mode"] == "daily"
    # one update, after day 2 (the last day's would serve nothing), over day 2's lists
    [u] = daily["updates"]
    lists = np.asarray(daily["channel_impressions_per_hour"])[0].sum() // 10
    assert u["day"] == 2 and u["steps"] == -(-lists // DQN_CFG.batch_size)
    assert np.isfinite(u["loss/total"]) and u["transitions"] > 0 and u["weight_change"] > 0
    assert [d for d, _ in seen] == [-1, 0, 1, 2, 3] and "day 2 update" in seen[3][1]
    assert (tmp_path / "window" / "train-00000-of-00001.tfrecord").exists()
    out = tmp_path / "results"  # a fresh output folder: save_arm makes arms/ and tb/
    stability.save_arm(str(out), "dqn", 0, "daily", daily)
    assert json.loads((out / "arms" / "dqn__0__daily.json").read_text())["updates"] == [u]
    scalars = _scalars(out / "tb" / "dqn__0__daily")
    assert scalars["eval/share_news"] == [(2, pytest.approx(daily["channel_share_per_day"][0][0])),
                                          (3, pytest.approx(daily["channel_share_per_day"][1][0]))]
    assert scalars["update/weight_change"] == [(2, pytest.approx(u["weight_change"]))]
    assert scalars["loss/total"] == [(2, pytest.approx(u["loss/total"]))]


def _scalars(tb_dir) -> dict:
    """{tag: [(step, value)]} of every event file under tb_dir."""
    import tensorflow as tf
    out = {}
    for path in tb_dir.glob("events.out.tfevents.*"):
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            for v in event.summary.value:
                value = float(tf.make_ndarray(v.tensor))
                out.setdefault(v.tag, []).append((event.step, value))
    return out


def _recorded(cfg) -> dict:
    """A config as a run records it in eval.json: list flags as lists of strings."""
    return {k: [str(x) for x in v] if isinstance(v, tuple) else v
            for k, v in dataclasses.asdict(cfg).items()}


def test_learner_for_reads_the_runs_settings(daily_data, tmp_path):
    root, *_ = daily_data
    model = online.load_model(str(root / "run"))
    cfg = tiny_config(reward_click=(1.0, 2.0, 1.0, 0.5), gamma=0.7)
    (tmp_path / "eval.json").write_text(json.dumps({"flags": _recorded(cfg)}))
    learner, read = learner_for(model, str(tmp_path))
    assert read == cfg and learner.model is model
    assert [row[0] for row in learner.weights] == [1.0, 2.0, 1.0, 0.5]  # [channel][click]


def test_learner_for_gives_a_flat_ddpg_its_own_learner(daily_data, tmp_path):
    from baselines.ddpg import DDPGConfig, FlatDDPG
    from baselines.ddpg_learner import DDPGLearner
    _, _, _, metadata = daily_data
    model = FlatDDPG(metadata["spec"], **TINY)
    cfg = DDPGConfig(**TINY, critic_steps=2, gamma=0.1)
    (tmp_path / "eval.json").write_text(json.dumps({"flags": _recorded(cfg)}))
    learner, read = learner_for(model, str(tmp_path))
    assert isinstance(learner, DDPGLearner) and read == cfg and learner.model is model


def test_learner_for_names_what_is_missing(daily_data, tmp_path):
    root, *_ = daily_data
    model = online.load_model(str(root / "run"))
    with pytest.raises(FileNotFoundError, match=r"eval.json not found: daily updates need"):
        learner_for(model, str(tmp_path))
    (tmp_path / "eval.json").write_text(json.dumps({"flags": {"gamma": 0.3}}))
    with pytest.raises(ValueError, match=r"eval.json: `flags` lacks \['max_seq_len'"):
        learner_for(model, str(tmp_path))
    with pytest.raises(ValueError, match=r"epochs 0 and window_days 1: expected >= 1"):
        DailyUpdate(model, str(root / "run"), str(root / "data"), str(tmp_path), epochs=0)


def test_the_dataset_must_have_one_shard_and_two_served_weeks(daily_data):
    root, cfg, _, metadata = daily_data
    with pytest.raises(ValueError, match=r"data has 2 test days; two weeks are needed"):
        stability.check_dataset(str(root / "data"), cfg, metadata)
    two_weeks = dataclasses.replace(cfg, n_days=20, test_days=14)
    stability.check_dataset("d", two_weeks, metadata)
    with pytest.raises(ValueError, match=r"d has 2 user shards: daily updates serve"):
        stability.check_dataset("d", two_weeks, {**metadata, "shards": 2})


def test_table_and_chart_from_saved_arms(tmp_path):
    hourly = np.full((14, 24, 4), 100, np.int64)
    hourly[7:, :, 0] = 150  # news 0.25 -> 150/450 in week 2
    arm = {"ctr": 0.1, "acn": 1.0, "channel_impressions_per_hour": hourly.tolist(),
           "updates": [{"weight_change": 0.01}, {"weight_change": 0.03}]}
    settings = [grid.Setting("dqn_gru", "DQN (GRU)", "baselines.dqn_train", ()),
                grid.Setting("hrl_rec", "HRL-Rec", "hrl_rec.train", ())]
    arms = {("dqn_gru", 0, "daily"): arm, ("dqn_gru", 1, "daily"): arm,
            ("hrl_rec", 0, "daily"): arm}
    md, rows = stability.table(settings, [0, 1], ["daily", "frozen"], arms, 100)
    assert [r[:2] for r in md] == [["DQN (GRU)", "daily"], ["HRL-Rec", "daily"]]
    news = (150 / 450) / 0.25 - 1
    header = stability.MD_HEADER
    assert md[0][header.index("news hour max")] == f"{100 * news:.1f} ± 0.0%"
    assert md[1][header.index("news hour mean")] == f"{100 * news:.1f}%"   # one seed
    assert md[0][-1] == "18.0% / 11.7%" and md[1][-1] == "4.5% / 1.4%"
    assert md[0][header.index("weight change per update")] == "2.00 ± 0.00%"
    # news over both weeks: (7 x 100 + 7 x 150) / (7 x 400 + 7 x 450), the largest channel
    assert md[0][header.index("largest channel's share")] == f"{100 * 1750 / 5950:.1f} ± 0.0%"
    assert rows[0][:4] == ["dqn_gru", "DQN (GRU)", "daily", 2]
    assert len(rows[0]) == len(stability.csv_header())
    pytest.importorskip("matplotlib")
    assert stability.write_chart(str(tmp_path / "s.png"), settings, arms, 0, "daily")
    assert (tmp_path / "s.png").stat().st_size > 0


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "experiments.stability", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=300)


def test_cli_dry_run_and_bad_flags(sim_data, tmp_path):
    done = _cli("--flagfile=configs/stability.flags", "--seeds=1", "--dry_run")
    assert done.returncode == 0, done.stderr[-2000:]
    data = "--data_dir=datasets/sim_stability --data_flagfile=configs/sim_stability.flags"
    assert done.stdout.splitlines() == [
        f"{sys.executable} -m baselines.dqn_train --flagfile=configs/dqn.flags {data} "
        f"--variant=dqn_gru --seed=1 --model_dir=runs/stability/dqn_gru__1",
        f"{sys.executable} -m hrl_rec.train --flagfile=configs/quickstart.flags {data} "
        f"--seed=1 --model_dir=runs/stability/hrl_rec__1"]
    bad = _cli("--modes=weekly", "--dry_run")
    assert bad.returncode != 0 and "--modes=weekly: expected some of ('daily', 'frozen')" \
        in bad.stderr
    bad = _cli("--item_score=ctr", "--dry_run")
    assert bad.returncode != 0 and "--item_score=ctr: expected cosine or click" in bad.stderr
    # a dataset without two served weeks stops before any training
    bad = _cli(f"--data_dir={sim_data}", f"--runs_dir={tmp_path}")
    assert bad.returncode != 0 and "has 1 test days; two weeks are needed" in bad.stderr
    assert not list(tmp_path.iterdir())


def test_cli_report_only_tables_the_saved_arms(tmp_path):
    runs, out = tmp_path / "runs", tmp_path / "out"
    hourly = np.full((14, 24, 4), 1000, np.int64)
    arm = {"ctr": 0.1, "acn": 1.0, "channel_impressions_per_hour": hourly.tolist(),
           "updates": [], "days": list(range(7, 21)), "channel_share_per_day": []}
    for name in ("dqn_gru", "hrl_rec"):
        (runs / f"{name}__0").mkdir(parents=True)
        (runs / f"{name}__0" / "eval.json").write_text(json.dumps({"auc": 0.7}))
        stability.save_arm(str(out), name, 0, "frozen", arm)
    done = _cli("--flagfile=configs/stability.flags", "--seeds=0", "--report_only",
                f"--runs_dir={runs}", f"--output_dir={out}")
    assert done.returncode == 0, done.stderr[-2000:]
    table = (out / "stability.md").read_text()
    assert "| DQN (GRU) | frozen | 0.0% |" in table and "| HRL-Rec | frozen |" in table
    assert "daily" not in table.split("| model |")[1]          # no daily arm was saved
    assert (out / "stability.csv").read_text().count("\n") == 3
