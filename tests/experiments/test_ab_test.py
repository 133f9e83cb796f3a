"""Table 3's A/B test: its arms and commands, the table's figures by hand, and flag errors."""
import csv
import json
import subprocess
import sys

import pytest

from experiments import ab_test, grid
from tests.conftest import REPO


def _arm(ctr, acn, awt, share=(0.25, 0.25, 0.25, 0.25)):
    return {"ctr": ctr, "acn": acn, "awt": awt, "impressions": 100, "clicks": 10,
            "requests": 10, "sessions": 5, "active_users": 4, "dwell_per_capita": 1.5,
            "channel_share": list(share), "channel_share_per_day": [list(share)]}


def test_settings_share_the_commands_of_the_other_grids():
    settings = ab_test.grid_settings(["critic_bilinear", "hrl_rec"], "D", "D.flags", "h.flags",
                                     ["--max_steps=5"])
    assert [s.name for s in settings] == ["hrl_rec", "critic_bilinear"]
    assert settings[0].args == grid.hrl_rec_args("h.flags", "D", "D.flags", ["--max_steps=5"])
    assert settings[1].args[-1] == "--critic_form=bilinear"
    with pytest.raises(ValueError, match=r"--settings: unknown \['dqn'\]; expected"):
        ab_test.grid_settings(["dqn"], "D", "D.flags", "h.flags", [])


def test_dqn_rows_train_with_their_flagfile_and_serve_once_by_q():
    settings = ab_test.grid_settings(["hrl_rec", "dd_dqn", "dqn_lr"], "D", "D.flags", "h.flags",
                                     ["--max_steps=5"], "q.flags", ["--epochs=1"])
    assert [(s.name, s.module) for s in settings] == [
        ("dqn_lr", "baselines.dqn_train"), ("dd_dqn", "baselines.dqn_train"),
        ("hrl_rec", "hrl_rec.train")]
    assert settings[1].args == ("--flagfile=q.flags", "--data_dir=D", "--data_flagfile=D.flags",
                                "--epochs=1", "--variant=dd_dqn")
    rows = ab_test.table_rows(settings, ["click"])
    assert [(r.name, r.item_score) for r in rows] == [("dqn_lr", "cosine"), ("dd_dqn", "cosine"),
                                                      ("hrl_rec+click", "click")]
    assert rows[1].label == "Double-Dueling DQN"


def test_the_flat_ddpg_row_trains_with_its_flagfile_and_serves_once_by_its_cosine():
    settings = ab_test.grid_settings(["hrl_rec", "ddpg", "dqn_lr"], "D", "D.flags", "h.flags",
                                     [], "q.flags", [], "p.flags", ["--epochs=1"])
    assert [(s.name, s.module) for s in settings] == [
        ("dqn_lr", "baselines.dqn_train"), ("ddpg", "baselines.ddpg_train"),
        ("hrl_rec", "hrl_rec.train")]
    assert settings[1].args == ("--flagfile=p.flags", "--data_dir=D", "--data_flagfile=D.flags",
                                "--epochs=1")
    rows = ab_test.table_rows(settings, ["cosine", "click"])
    assert [(r.name, r.item_score) for r in rows] == [
        ("dqn_lr", "cosine"), ("ddpg", "cosine"), ("hrl_rec", "cosine"),
        ("hrl_rec+click", "click")]
    assert rows[1].label == "DDPG (flat)" and ab_test.PAPER["ddpg"] == (5.80, 7.82)


def test_ddpg_hierarchical_is_table_4s_run_without_l_c_served_by_the_cosine_only():
    from experiments import ablation
    ours = ab_test.grid_settings(["no_click_loss"], "D", "D.flags", "h.flags", [])
    theirs = [s for s in ablation.grid_settings(["no_click_loss"], "D", "D.flags", "h.flags", [],
                                                "lr.flags", []) if s.name == "no_click_loss"]
    assert [(s.name, s.args) for s in ours] == [(s.name, s.args) for s in theirs]
    rows = ab_test.table_rows(ours, ["cosine", "click"])
    assert [(r.name, r.item_score) for r in rows] == [("no_click_loss", "cosine")]
    assert rows[0].label.startswith("DDPG (hierarchical)")


def test_paper_losses_arm_undoes_every_departure_of_the_quickstart_from_the_paper():
    from hrl_rec.config import HRLConfig
    setting, = ab_test.grid_settings(["paper_losses"], "D", "D.flags", "h.flags", [])
    args = dict(a[2:].split("=", 1) for a in setting.args if a.startswith("--") and "=" in a)
    # every flag the quickstart sets, but the sizes, the schedule and the data, is given its
    # paper (HRLConfig default) value: a loss added to the quickstart later must be undone too
    kept = {"data_dir", "data_flagfile", "experiment", "max_seq_len", "embedding_dim",
            "hidden_dim", "heads", "state_window", "batch_size", "learning_rate", "epochs",
            "patience"}
    quickstart = {line.split("=", 1)[0][2:] for line in open(f"{REPO}/configs/quickstart.flags")
                  if line.startswith("--")}
    losses = quickstart - kept
    assert {"served_distill_weight", "critic_direction", "beta"} <= losses
    assert losses <= set(args), sorted(losses - set(args))
    defaults = HRLConfig()
    for name in losses:
        default = getattr(defaults, name)
        if isinstance(default, bool):
            assert args[name] == str(default).lower(), name
        elif isinstance(default, float):
            assert float(args[name]) == default, name
        else:
            assert args[name] == default, name


def test_rows_serve_each_setting_by_each_item_score():
    settings = ab_test.grid_settings(["hrl_rec", "critic_bilinear"], "D", "D.flags", "h.flags",
                                     [])
    rows = ab_test.table_rows(settings, ["cosine", "click"])
    assert [(r.name, r.setting.name, r.item_score) for r in rows] == [
        ("hrl_rec", "hrl_rec", "cosine"), ("hrl_rec+click", "hrl_rec", "click"),
        ("critic_bilinear", "critic_bilinear", "cosine"),
        ("critic_bilinear+click", "critic_bilinear", "click")]
    assert rows[1].label == "HRL-Rec, items by f (Eq. 16)"
    wolpertinger = ab_test.table_rows(settings[:1], ["wolpertinger_q", "wolpertinger_f"])
    assert [r.label for r in wolpertinger] == ["HRL-Rec, Wolpertinger (k nearest, then Q)",
                                               "HRL-Rec, Wolpertinger (k nearest, then f)"]
    with pytest.raises(ValueError, match=r"--item_scores: unknown \['ctr'\]"):
        ab_test.table_rows(settings, ["ctr"])


def test_table_figures_by_hand(tmp_path):
    settings = ab_test.table_rows(ab_test.grid_settings(["hrl_rec"], "D", "D.flags", "h.flags",
                                                        []), ["cosine"])
    base = _arm(0.10, 3.0, 5.0, (0.3, 0.3, 0.2, 0.2))
    arms = {("hrl_rec", 0): _arm(0.11, 3.3, 4.0, (0.0, 0.2, 0.4, 0.4)),
            ("hrl_rec", 1): _arm(0.09, 3.0, 6.0, (0.1, 0.1, 0.4, 0.4))}
    refs = [("lr_no_quotas", "LR alone", _arm(0.12, 2.7, 4.5, (0.1, 0.1, 0.4, 0.4)))]
    text, drawn = ab_test.write_table(str(tmp_path), settings, arms, base, [0, 1], ["a note"],
                                      refs)
    rows = text.splitlines()[2:]
    assert rows[0] == ("| base (LR + channel quotas, no exploration) | 0.1000 | 3.000 | 5.000 |"
                       "  |  |  | news 30%, article 30%, long_video 20%, short_video 20% |  |  |")
    # one run: +20%, -10%, -10%, no spread
    assert rows[1] == ("| LR alone | 0.1200 | 2.700 | 4.500 | 20.0% | -10.0% | -10.0% | news 10%, "
                       "article 10%, long_video 40%, short_video 40% | 1 |  |")
    # CTR: +10% and -10% -> 0 ± 14.1; ACN: +10%, 0% -> +5 ± 7.1; AWT: -20%, +20% -> 0 ± 28.3.
    assert rows[2] == ("| HRL-Rec | 0.1000 ± 0.0141 | 3.150 ± 0.212 | 5.000 ± 1.414 | "
                       "0.0 ± 14.1% | 5.0 ± 7.1% | 0.0 ± 28.3% | news 5%, article 15%, "
                       "long_video 40%, short_video 40% | 2 | +6.34% / +11.67% |")
    with open(tmp_path / "table3.csv") as f:
        table = list(csv.DictReader(f))
    assert [r["setting"] for r in table] == ["base", "lr_no_quotas", "hrl_rec"]
    assert all(None not in r and "" not in r.keys() for r in table)  # rows as long as the header
    assert (table[2]["paper_ctr"], table[2]["paper_acn"], table[1]["paper_ctr"]) == (
        "6.34", "11.67", "")
    assert float(table[2]["acn_vs_base_mean"]) == pytest.approx(0.05)
    assert float(table[2]["share_news"]) == pytest.approx(0.05)
    with open(tmp_path / "table3_arms.csv") as f:
        runs = list(csv.DictReader(f))
    assert [(r["arm"], r["seed"]) for r in runs] == [("base", ""), ("lr_no_quotas", ""),
                                                    ("hrl_rec", "0"), ("hrl_rec", "1")]
    assert json.loads(runs[2]["channel_share"]) == [0.0, 0.2, 0.4, 0.4]
    assert drawn and (tmp_path / "table3.png").read_bytes()[:4] == b"\x89PNG"


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "experiments.ab_test", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=300)


def test_cli_dry_run_and_bad_flags():
    done = _cli("--flagfile=configs/ab_test.flags", "--seeds=2", "--dry_run")
    assert done.returncode == 0, done.stderr[-2000:]
    data = "--data_dir=datasets/sim_small --data_flagfile=configs/sim_small.flags"
    dqn = [f"{sys.executable} -m baselines.dqn_train --flagfile=configs/dqn.flags {data} "
           f"--variant={v} --seed=2 --model_dir=runs/ab_test/{v}__2"
           for v in ("dqn_lr", "dqn_gru", "dd_dqn")]
    hrl = f"{sys.executable} -m hrl_rec.train --flagfile=configs/quickstart.flags {data}"
    assert done.stdout.splitlines() == dqn + [  # one training run serves both item scores
        f"{sys.executable} -m baselines.ddpg_train --flagfile=configs/ddpg.flags {data} "
        "--seed=2 --model_dir=runs/ab_test/ddpg__2",
        f"{hrl} --click_loss_weight=0 --eval_score=cosine --seed=2 "
        "--model_dir=runs/ab_test/no_click_loss__2",
        f"{hrl} --seed=2 --model_dir=runs/ab_test/hrl_rec__2",
        f"{hrl} {' '.join(ab_test.PAPER_LOSSES)} --seed=2 "
        "--model_dir=runs/ab_test/paper_losses__2"]
    bad = _cli("--epsilon=2", "--dry_run")
    assert bad.returncode != 0 and "--epsilon=2.0: expected a value in [0, 1]" in bad.stderr
    bad = _cli("--item_scores=cosine,ctr", "--dry_run")
    assert bad.returncode != 0 and "--item_scores: unknown ['ctr']" in bad.stderr
    bad = _cli("--settings=dqn", "--dry_run")
    assert bad.returncode != 0 and "--settings: unknown ['dqn']" in bad.stderr


def test_a_start_day_past_the_data_is_named(sim_data, tmp_path):
    bad = _cli(f"--data_dir={sim_data}", "--start_day=9", f"--runs_dir={tmp_path}")
    assert bad.returncode != 0 and f"--start_day=9: {sim_data} has days 0-3" in bad.stderr
    assert not list(tmp_path.iterdir())                  # nothing trained
    bad = _cli(f"--data_dir={sim_data}", "--start_day=2", "--end_day=2", f"--runs_dir={tmp_path}")
    assert bad.returncode != 0 and "--end_day=2: expected a day after the first served day (2)" \
        in bad.stderr
    assert not list(tmp_path.iterdir())
