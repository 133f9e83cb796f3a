"""The model-level controls (experiments.model_controls): their datasets and runs, the paired
t by hand, the verdicts, the table from finished runs, and flag errors."""
import csv
import math
import subprocess
import sys

import pytest
from absl import flags

from experiments import grid, model_controls
from tests.conftest import REPO


def test_each_control_gets_an_on_and_an_off_dataset_with_its_weight_at_zero():
    controls = model_controls.select(["gru", "self_attention"])
    assert model_controls.datasets(controls) == [
        ("on", None), ("satiation_weight_off", "satiation_weight"),
        ("triple_weight_off", "triple_weight")]
    assert model_controls.dataset_flags("p.flags", ["--n_users=1000"], "triple_weight") == \
        "--flagfile=p.flags\n--n_users=1000\n--triple_weight=0\n"
    assert model_controls.dataset_flags("p.flags", [], None) == "--flagfile=p.flags\n"
    with pytest.raises(ValueError, match=r"--controls=gru,gamma: expected some of"):
        model_controls.select(["gru", "gamma"])


def test_a_dataset_flagfile_with_other_flags_is_never_reused(tmp_path):
    path = model_controls.write_flagfile(str(tmp_path), "on", "--flagfile=a\n")
    assert open(path).read() == "--flagfile=a\n"
    assert model_controls.write_flagfile(str(tmp_path), "on", "--flagfile=a\n") == path
    with pytest.raises(SystemExit, match="holds other flags than this command's"):
        model_controls.write_flagfile(str(tmp_path), "on", "--flagfile=b\n")


def test_t_is_the_mean_over_its_standard_error_and_the_verdict_reads_both_datasets():
    # d = (0.004, 0.006, 0.005): mean 0.005, std 0.001, se 0.001 / sqrt(3), t = 8.66
    stat = model_controls.report.Stat.of([0.004, 0.006, 0.005])
    assert model_controls.t_value(stat) == pytest.approx(0.005 / (0.001 / math.sqrt(3)))
    assert model_controls.t_value(model_controls.report.Stat.of([0.002])) is None
    assert model_controls.t_value(model_controls.report.Stat.of([0.002, 0.002])) == math.inf
    assert model_controls.verdict(8.7, 1.0, 3.0) == "passed"
    assert model_controls.verdict(2.0, 1.0, 3.0) == "no effect with the mechanism on"
    assert model_controls.verdict(8.7, 4.0, 3.0) == "an effect with the mechanism off too"
    assert model_controls.verdict(None, 1.0, 3.0) == "not enough seeds"


def test_the_table_pairs_each_seed_on_each_dataset(tmp_path, monkeypatch):
    # test AUC by (dataset, setting, seed): the GRU helps by 0.004-0.006 with satiation on, by
    # -0.001..+0.001 with it off
    auc = {("on", "hrl_rec"): [0.760, 0.762, 0.761], ("on", "no_gru"): [0.756, 0.756, 0.756],
           ("satiation_weight_off", "hrl_rec"): [0.770, 0.771, 0.769],
           ("satiation_weight_off", "no_gru"): [0.771, 0.770, 0.769]}
    seen = []

    def collect(settings, seeds, runs_dir, desc, data_dir, data_flagfile):
        name = data_dir.rsplit("/", 1)[-1]
        seen.append((name, [s.name for s in settings], open(data_flagfile).read()))
        return {(s.name, seed): {"auc": auc[name, s.name][seed], "data_fingerprint": name}
                for s in settings for seed in seeds}
    monkeypatch.setattr(grid, "collect", collect)
    out = tmp_path / "out"
    values = flags.FlagValues()
    model_controls.define_flags(values)
    values(["x", "--controls=gru", "--seeds=0,1,2", f"--data_root={tmp_path / 'd'}",
            f"--output_dir={out}", f"--runs_dir={tmp_path / 'r'}",
            "--data_flag=--n_users=1000", f"--data_flagfile={REPO}/configs/sim_claims.flags"])
    monkeypatch.setattr(model_controls, "FLAGS", values)
    model_controls.main([])
    assert [(n, s) for n, s, _ in seen] == [("on", ["hrl_rec", "no_gru"]),
                                            ("satiation_weight_off", ["hrl_rec", "no_gru"])]
    assert seen[1][2].endswith("--n_users=1000\n--satiation_weight=0\n")
    rows = list(csv.DictReader(open(out / "model_controls.csv")))
    assert len(rows) == 1 and rows[0]["verdict"] == "passed"
    # on: d = (0.004, 0.006, 0.005) -> t 8.66; off: d = (-0.001, 0.001, 0) -> t 0
    assert float(rows[0]["d_on_mean"]) == pytest.approx(0.005)
    assert float(rows[0]["t_on"]) == pytest.approx(8.660, abs=1e-3)
    assert float(rows[0]["t_off"]) == pytest.approx(0.0, abs=1e-9)
    text = open(out / "model_controls.md").read()
    assert "GRU state encoder (satiation_weight)" in text and "passed" in text


def test_cli_dry_run_prints_each_dataset_and_command_and_names_a_bad_flag():
    cmd = [sys.executable, "-m", "experiments.model_controls",
           "--flagfile=configs/model_controls.flags", "--seeds=0", "--dry_run"]
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.splitlines()
    assert lines[0] == "# datasets/model_controls/on: --flagfile=configs/sim_claims.flags"
    assert sum(line.startswith("#") for line in lines) == 3 and len(lines) == 3 + 3 + 2 + 2
    bad = subprocess.run(cmd + ["--controls=gamma"], cwd=REPO, capture_output=True, text=True,
                         timeout=120)
    assert bad.returncode != 0 and "--controls=gamma: expected some of" in bad.stderr
