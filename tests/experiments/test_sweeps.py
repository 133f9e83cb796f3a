"""Fig. 3's sweeps: their points and commands, the figure's numbers by hand, and flag errors."""
import csv
import subprocess
import sys

import pytest

from experiments import ablation, grid, sweeps
from tests.conftest import REPO

COMMON = grid.hrl_rec_args("hrl.flags", "D", "D.flags", ["--max_steps=5"])


def _points(gammas=(0.0, 0.3, 0.9), lens=(5.0, 20.0)):
    return sweeps.sweep_points({"gamma": list(gammas), "max_seq_len": list(lens)},
                               {"gamma": 0.3, "max_seq_len": 20.0}, COMMON)


def test_each_point_changes_one_flag_and_the_unchanged_point_is_shared():
    points = _points()
    gamma = [(v, s.name, s.args[len(COMMON):]) for v, s in points["gamma"]]
    assert gamma == [(0.0, "gamma0", ("--gamma=0",)), (0.3, "hrl_rec", ()),
                     (0.9, "gamma0.9", ("--gamma=0.9",))]
    assert [(s.name, s.args[-1]) for _, s in points["max_seq_len"]] == [
        ("seq5", "--max_seq_len=5"), ("hrl_rec", "--max_steps=5")]
    assert [s.name for s in sweeps.unique_settings(points)] == [
        "gamma0", "hrl_rec", "gamma0.9", "seq5"]
    # Table 4's rows of the same model are the same commands, so one runs folder serves both.
    table4 = {s.name: s for s in ablation.grid_settings(
        ["hrl_rec", "gamma0"], "D", "D.flags", "hrl.flags", ["--max_steps=5"], "lr.flags", [])}
    mine = {s.name: s for s in sweeps.unique_settings(points)}
    for name in ("hrl_rec", "gamma0"):
        assert (mine[name].module, mine[name].args) == (table4[name].module, table4[name].args)


def test_the_unchanged_value_comes_from_the_flagfile_then_the_flags_then_the_default(tmp_path):
    inner = tmp_path / "inner.flags"
    inner.write_text("# a comment\n--max_seq_len=30\n--gamma=0.5\n")
    outer = tmp_path / "outer.flags"
    outer.write_text(f"--flagfile={inner}\n--max_seq_len=20\n")
    assert sweeps.base_value(str(outer), [], "max_seq_len") == 20     # the last one wins
    assert sweeps.base_value(str(outer), [], "gamma") == 0.5          # nested flagfile
    assert sweeps.base_value(str(outer), ["--gamma=0.7"], "gamma") == 0.7
    inner.write_text("--beta=1\n")
    assert sweeps.base_value(str(inner), [], "gamma") == 0.3          # HRLConfig (Sec. 4.3)


@pytest.mark.parametrize("values, sweep, message", [
    (["0", "1.5"], 0, r"--gamma_values: 1.5 is out of range \(expected \[0, 1\]\)"),
    (["0.1", "x"], 0, r"--gamma_values: 'x' is not a number"),
    (["5", "0"], 1, r"--seq_lens: 0 is out of range \(expected >= 1\)"),
    (["5", "2.5"], 1, r"--seq_lens: '2.5' is not a number"),
    (["5", "5"], 1, r"--seq_lens: expected distinct values"),
])
def test_bad_sweep_values_are_named(values, sweep, message):
    with pytest.raises(ValueError, match=message):
        sweeps.parse_values(values, sweeps.SWEEPS[sweep])


def test_values_are_sorted():
    assert sweeps.parse_values(["0.5", "0", "0.3"], sweeps.SWEEPS[0]) == [0.0, 0.3, 0.5]


def _run(auc, valid):
    return {"auc": auc, "valid_auc": valid, "best_epoch": 2, "data_fingerprint": "f00d"}


def test_figure_numbers_by_hand(tmp_path):
    results = {("hrl_rec", 0): _run(0.745, 0.750), ("hrl_rec", 1): _run(0.747, 0.752),
               ("gamma0", 0): _run(0.741, 0.748), ("gamma0", 1): _run(0.744, 0.751),
               ("seq5", 0): _run(0.735, 0.740)}          # seq5 seed 1 and gamma0.9 unfinished
    text, drawn = sweeps.write_figure(str(tmp_path), _points(), results, [0, 1], ["a note"])
    rows = text.splitlines()[2:]
    # gamma0 vs unchanged per seed: -0.004, -0.003 -> -0.0035 ± 0.0007 (sample std).
    assert rows == [
        "| gamma | 0 | 0.7425 ± 0.0021 | -0.0035 ± 0.0007 | 0.7495 ± 0.0021 | 2 | gamma0 |",
        "| gamma | 0.3 | 0.7460 ± 0.0014 |  | 0.7510 ± 0.0014 | 2 | hrl_rec |",
        "| max_seq_len | 5 | 0.7350 | -0.0100 | 0.7400 | 1 | seq5 |",
        "| max_seq_len | 20 | 0.7460 ± 0.0014 |  | 0.7510 ± 0.0014 | 2 | hrl_rec |"]
    md = (tmp_path / "fig3.md").read_text()
    assert md.startswith("# Fig. 3: HRL-Rec against gamma and sequence length\n\na note\n")
    with open(tmp_path / "fig3.csv") as f:
        table = list(csv.DictReader(f))
    assert [(r["parameter"], r["value"], r["seeds"]) for r in table] == [
        ("gamma", "0", "2"), ("gamma", "0.3", "2"), ("max_seq_len", "5", "1"),
        ("max_seq_len", "20", "2")]
    assert float(table[0]["auc_vs_base_mean"]) == pytest.approx(-0.0035)
    assert table[1]["auc_vs_base_mean"] == "" and table[2]["paper_best"] == "50"
    with open(tmp_path / "fig3_runs.csv") as f:
        assert len(list(csv.DictReader(f))) == 5
    assert drawn and (tmp_path / "fig3.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(tmp_path.glob("*.tmp"))


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "experiments.sweeps", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=300)


def test_cli_dry_run_prints_every_command_and_bad_flags_are_named():
    done = _cli("--flagfile=configs/sweeps.flags", "--seeds=4", "--dry_run")
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.splitlines()
    # gamma 0, 0.1, 0.5, 0.7, 0.9, the unchanged point, then m 5, 10, 50, 100
    assert len(lines) == 10
    assert lines[2].endswith("--flagfile=configs/quickstart.flags --data_dir=datasets/sim_small "
                             "--data_flagfile=configs/sim_small.flags --seed=4 "
                             "--model_dir=runs/sweeps/hrl_rec__4")
    assert lines[9].endswith("--max_seq_len=100 --seed=4 --model_dir=runs/sweeps/seq100__4")
    bad = _cli("--gamma_values=0,2", "--dry_run")
    assert bad.returncode != 0 and "--gamma_values: 2 is out of range" in bad.stderr
    bad = _cli("--hrl_flagfile=configs/nope.flags", "--dry_run")
    assert bad.returncode != 0 and "configs/nope.flags" in bad.stderr
