"""experiments.seed_table: mean ± std with per-seed values, the baselines' key fallbacks, errors."""
import json
import subprocess
import sys

from experiments import seed_table
from tests.conftest import REPO


def test_cells_by_hand_and_the_baselines_fallbacks():
    hrl = [{"auc": 0.74, "auc_cosine_by_slot": 0.55}, {"auc": 0.76, "auc_cosine_by_slot": 0.57}]
    lr = [{"auc": 0.7, "auc_by_slot": 0.56, "valid": {"auc": 0.71}}]
    text = seed_table.table([("A", hrl), ("LR", lr)], ["auc", "auc_cosine_by_slot", "valid_auc"])
    rows = text.splitlines()[2:]
    # mean 0.75, sample std 0.02 / sqrt 2 = 0.0141
    assert rows[0] == "| auc | 0.7500 ± 0.0141 (0.7400 / 0.7600) | 0.7000 (0.7000) |"
    assert rows[1] == "| auc_cosine_by_slot | 0.5600 ± 0.0141 (0.5500 / 0.5700) | 0.5600 (0.5600) |"
    assert rows[2] == "| valid_auc |  | 0.7100 (0.7100) |"
    assert seed_table.expand("runs/x__{0,1}") == ["runs/x__0", "runs/x__1"]


def test_cli_writes_the_table_and_names_a_missing_run(tmp_path):
    for seed in (0, 1):
        (tmp_path / f"r{seed}").mkdir()
        (tmp_path / f"r{seed}" / "eval.json").write_text(json.dumps({"auc": 0.7 + seed / 100}))
    out = tmp_path / "t.md"
    cmd = [sys.executable, "-m", "experiments.seed_table", f"--column=M={tmp_path}/r{{0,1}}",
           "--keys=auc", f"--output={out}"]
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert out.read_text().splitlines()[2] == "| auc | 0.7050 ± 0.0071 (0.7000 / 0.7100) |"
    bad = subprocess.run(cmd[:3] + [f"--column=M={tmp_path}/r9"], cwd=REPO, capture_output=True,
                         text=True, timeout=120)
    assert bad.returncode != 0 and "r9/eval.json not found" in bad.stderr
