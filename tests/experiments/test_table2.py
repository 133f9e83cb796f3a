"""Table 2's grid: its rows and commands, the paired t-test and the table's figures by hand, the CLI."""
import csv
import json
import math
import subprocess
import sys

import pytest

from experiments import ablation, table2
from tests.conftest import REPO


def _settings(names=("lr", "deepfm", "hrl_rec"), hrl_flags=("--max_steps=5",)):
    return table2.grid_settings(list(names), "D", "D.flags", "hrl.flags", list(hrl_flags),
                                "b.flags", ["--epochs=3"])


def test_rows_are_lr_first_then_the_papers_order_with_hrl_rec_last():
    settings = _settings(("hrl_rec", "autoint", "fm"))
    assert [s.name for s in settings] == ["lr", "fm", "autoint", "hrl_rec"]
    assert [s.module for s in settings] == ["baselines.train"] * 3 + ["hrl_rec.train"]
    assert settings[1].args == ("--model=fm", "--flagfile=b.flags", "--data_dir=D", "--epochs=3")
    assert settings[3].args == ("--flagfile=hrl.flags", "--data_dir=D", "--data_flagfile=D.flags",
                                "--max_steps=5")
    with pytest.raises(ValueError, match=r"--models: unknown \['xgboost'\]; expected"):
        _settings(("lr", "xgboost"))


def test_lr_and_hrl_rec_are_table_4s_commands_so_runs_can_be_shared():
    ours = {s.name: s for s in _settings(hrl_flags=())}
    theirs = {s.name: s for s in ablation.grid_settings(["hrl_rec"], "D", "D.flags", "hrl.flags",
                                                        [], "b.flags", ["--epochs=3"])}
    for name in ("lr", "hrl_rec"):
        assert (ours[name].module, ours[name].args) == (theirs[name].module, theirs[name].args)


def test_paired_t_test_by_hand():
    # Differences 1, 2, 3: mean 2, sample std 1, t = 2 / (1 / sqrt 3) = 2 sqrt 3 = 3.4641.
    # Student's t with 2 degrees of freedom: P(|T| > t) = 1 - t / sqrt(t^2 + 2) = 1 - sqrt(12/14).
    t, p = table2.paired_t_test([11.0, 12.0, 13.0], [10.0, 10.0, 10.0])
    assert t == pytest.approx(2 * math.sqrt(3))
    assert p == pytest.approx(1 - math.sqrt(12 / 14))  # 0.0742
    t, p = table2.paired_t_test([10.0, 10.0, 10.0], [11.0, 12.0, 13.0])
    assert (t, p) == (pytest.approx(-2 * math.sqrt(3)), pytest.approx(1 - math.sqrt(12 / 14)))
    assert table2.paired_t_test([0.75, 0.76], [0.74, 0.75]) == (math.inf, 0.0)  # same gap twice
    assert table2.paired_t_test([0.75, 0.76], [0.75, 0.76]) == (0.0, 1.0)
    assert table2.paired_t_test([0.75], [0.74]) is None


CEILINGS = {"oracle_auc": 0.82, "oracle_auc_noise_free": 0.81, "learnable_ceiling_auc": 0.765}


def _baseline(auc, logloss=0.27):
    return {"auc": auc, "logloss": logloss, **CEILINGS, "data_fingerprint": "f00d",
            "valid": {"auc": auc + 0.01, "epoch": 2}, "steps": 100, "wall_seconds": 9.0}


def _hrl(auc):
    return {"auc": auc, "logloss": 0.26, **CEILINGS, "data_fingerprint": "f00d",
            "valid_auc": auc + 0.02, "best_epoch": 3}


RESULTS = {("lr", 0): _baseline(0.740), ("lr", 1): _baseline(0.742),
           ("deepfm", 0): _baseline(0.760, 0.26), ("deepfm", 1): _baseline(0.763, 0.25),
           ("hrl_rec", 0): _hrl(0.745), ("hrl_rec", 1): _hrl(0.746)}


def test_table_figures_by_hand(tmp_path):
    text, drawn = table2.write_table(str(tmp_path), _settings(), RESULTS, [0, 1], ["a note"])
    rows = text.splitlines()[2:]
    # LR 0.740, 0.742: mean 0.741, sample std 0.002 / sqrt 2 = 0.0014.
    # HRL-Rec - LR: 0.005, 0.004: mean 0.0045, std 0.0007, t = 0.0045 / (0.001 / 2) = 9; with one
    # degree of freedom T is Cauchy: p = 1 - 2 atan(9) / pi = 0.0704.
    assert rows[0] == ("| LR | 0.7410 ± 0.0014 |  |  | 0.0045 ± 0.0007 | 0.070 (t = 9.00) | "
                       "0.2700 ± 0.0000 | 2 | 0.7311 / 0.00% |")
    # DeepFM vs LR per seed: 0.26 / 0.24 - 1 = 8.333%, 0.263 / 0.242 - 1 = 8.678%; headroom
    # share (0.760 - 0.740) / (0.765 - 0.740) = 80%, (0.763 - 0.742) / (0.765 - 0.742) = 91.30%.
    # HRL-Rec - DeepFM: -0.015, -0.017: mean -0.016, std 0.0014; t = -0.016 / (0.002 / 2) = -16,
    # p = 2 P(T_1 > 16) = 1 - 2 atan(16) / pi = 0.0398.
    assert rows[1] == ("| DeepFM | 0.7615 ± 0.0021 | 8.51 ± 0.24% | 85.65 ± 7.99% | "
                       "-0.0160 ± 0.0014 | 0.040 (t = -16.00) | 0.2550 ± 0.0071 | 2 | "
                       "0.7819 / 21.98% |")
    # HRL-Rec vs LR: 0.245 / 0.24 - 1 = 2.083%, 0.246 / 0.242 - 1 = 1.653%; headroom share
    # 0.005 / 0.025 = 20%, 0.004 / 0.023 = 17.39%.
    assert rows[2] == ("| HRL-Rec | 0.7455 ± 0.0007 | 1.87 ± 0.30% | 18.70 ± 1.84% |  |  | "
                       "0.2600 ± 0.0000 | 2 | 0.8097 / 34.01% |")
    assert rows[3] == "| oracle (true click probabilities) | 0.8200 |  |  |  |  |  |  |  |"
    assert rows[4] == "| oracle without eps_ui (noise-free) | 0.8100 |  |  |  |  |  |  |  |"
    assert rows[5] == ("| learnable ceiling (true formula, users estimated from earlier days) "
                       "| 0.7650 |  |  |  |  |  |  |  |")
    md = (tmp_path / "table2.md").read_text()
    assert md.startswith("# Table 2: offline evaluation (test AUC)\n\na note\n")
    assert md.endswith(text)
    with open(tmp_path / "table2.csv") as f:
        table = list(csv.DictReader(f))
    assert [r["model"] for r in table] == ["lr", "deepfm", "hrl_rec"]
    assert float(table[1]["p"]) == pytest.approx(1 - 2 * math.atan(16) / math.pi)
    assert float(table[1]["hrl_rec_minus_model_mean"]) == pytest.approx(-0.016)
    assert table[0]["rela_impr_mean"] == "" and table[2]["t"] == ""
    assert table[2]["paper_auc"] == "0.8097"
    with open(tmp_path / "table2_runs.csv") as f:
        runs = list(csv.DictReader(f))
    assert [(r["model"], r["seed"]) for r in runs][:3] == [("deepfm", "0"), ("hrl_rec", "0"),
                                                          ("lr", "0")]
    assert (runs[0]["valid_auc"], runs[0]["best_epoch"]) == ("0.77", "2")  # baselines' nesting
    assert (runs[1]["valid_auc"], runs[1]["best_epoch"]) == ("0.765", "3")
    assert drawn and (tmp_path / "table2.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(tmp_path.glob("*.tmp"))


def test_a_p_below_alpha_is_starred_and_unfinished_models_are_left_out(tmp_path):
    results = {("lr", s): _baseline(0.740 + s / 1000) for s in range(3)}
    results.update({("hrl_rec", s): _hrl(0.750 + s / 1000 + (0.0001 if s == 1 else 0))
                    for s in range(3)})
    text, _ = table2.write_table(str(tmp_path), _settings(), results, [0, 1, 2], [])
    rows = text.splitlines()[2:]
    assert [r.split(" | ")[0] for r in rows] == [
        "| LR", "| HRL-Rec", "| oracle (true click probabilities)",
        "| oracle without eps_ui (noise-free)",
        "| learnable ceiling (true formula, users estimated from earlier days)"]
    # Differences 0.010, 0.0101, 0.010: mean 0.010033, std 0.0000577, t = 301, p = 1.1e-5.
    assert " *" in rows[0].split(" | ")[5] and rows[0].split(" | ")[5].startswith("0.000 *")


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "experiments.table2", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=300)


def test_cli_dry_run_prints_every_command_and_bad_flags_are_named():
    done = _cli("--flagfile=configs/table2.flags", "--seeds=4", "--dry_run")
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.splitlines()
    assert len(lines) == 8 and "-m baselines.train --model=lr" in lines[0]
    assert lines[5].endswith("--model=deepfm --flagfile=configs/baselines.flags --data_dir="
                             "datasets/sim_small --epochs=3 --patience=1 --seed=4 "
                             "--model_dir=runs/table2/deepfm__4")
    assert lines[7].endswith("-m hrl_rec.train --flagfile=configs/quickstart.flags --data_dir="
                             "datasets/sim_small --data_flagfile=configs/sim_small.flags --seed=4 "
                             "--model_dir=runs/table2/hrl_rec__4")
    bad = _cli("--models=lr,xgboost", "--dry_run")
    assert bad.returncode != 0 and "--models: unknown ['xgboost']" in bad.stderr


def test_cli_report_only_reads_the_finished_runs_and_runs_nothing(tmp_path):
    runs, out = tmp_path / "runs", tmp_path / "out"
    settings = {s.name: s for s in table2.grid_settings(
        ["lr", "fm", "hrl_rec"], "D", "D.flags", "q.flags", [], "b.flags", [])}
    for name, seed, run in (("lr", 0, _baseline(0.74)), ("hrl_rec", 0, _hrl(0.75))):
        folder = runs / f"{name}__{seed}"
        folder.mkdir(parents=True)
        (folder / "eval.json").write_text(json.dumps(run))
        (folder / "job.json").write_text(json.dumps(
            {"module": settings[name].module, "args": list(settings[name].args), "seed": seed}))
    args = ["--data_dir=D", "--data_flagfile=D.flags", "--hrl_flagfile=q.flags",
            "--baseline_flagfile=b.flags", "--models=lr,fm,hrl_rec", f"--runs_dir={runs}",
            f"--output_dir={out}", "--report_only"]
    done = _cli(*args, "--seeds=0,1")
    assert done.returncode == 0, done.stderr[-2000:]
    assert "6 runs" in done.stderr and "2 finished before" in done.stderr
    assert "| LR | 0.7400 |" in done.stdout and "| HRL-Rec | 0.7500 | 4.17% |" in done.stdout
    assert "FM" not in done.stdout and sorted(p.name for p in runs.iterdir()) == ["hrl_rec__0",
                                                                                 "lr__0"]
    assert (out / "table2.md").exists() and (out / "table2_runs.csv").exists()
    empty = _cli(*args[:-3], f"--runs_dir={tmp_path / 'none'}", f"--output_dir={out}",
                 "--report_only")
    assert empty.returncode != 0 and "no finished runs in" in empty.stderr
