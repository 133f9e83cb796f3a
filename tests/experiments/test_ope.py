"""experiments.ope on a small synthetic Open Bandit folder: the logging policy's estimates equal
its observed CTR, a greedy policy's ESS is the rows it agrees with, and bad files are named."""
import json
import subprocess
import sys

import numpy as np
import pytest

from tests.conftest import REPO

ITEMS = 4


def _write_obd(root, rows=240, bad_line=None):
    folder = root / "men"
    folder.mkdir(parents=True)
    with open(folder / "item_context.csv", "w") as f:
        f.write(",item_id,item_feature_0,item_feature_1,item_feature_2,item_feature_3\n")
        for i in range(ITEMS):
            f.write(f"{i},{i},{i / 10},c{i % 2},d,e\n")
    rng = np.random.default_rng(0)
    cols = ["", "timestamp", "item_id", "position", "click", "propensity_score",
            *[f"user_feature_{j}" for j in range(4)],
            *[f"user-item_affinity_{i}" for i in range(ITEMS)]]
    lines = [",".join(cols)]
    for r in range(rows):
        day = 24 + r * 4 // rows                       # four days, 24..27
        item = int(rng.integers(ITEMS))
        click = int(rng.random() < (0.4 if item == 2 else 0.1))
        user = [f"u{int(rng.integers(2))}", "a", "b", "c"]
        lines.append(",".join([str(r), f"2019-11-{day} 00:00:{r % 60:02d}+00:00", str(item),
                               str(1 + r % 3), str(click), str(1 / ITEMS), *user,
                               *[f"{rng.random():.3f}" for _ in range(ITEMS)]]))
    if bad_line is not None:
        lines[bad_line] = lines[bad_line].replace(",0.25,", ",0.0,", 1)
    (folder / "men.csv").write_text("\n".join(lines) + "\n")
    return lines


def _run(tmp_path, *extra):
    cmd = [sys.executable, "-m", "experiments.ope", "--parts=obd",
           f"--obd_dir={tmp_path / 'obd'}",
           "--campaigns=men", "--split_day=2019-11-26", "--bootstrap=50",
           f"--output_dir={tmp_path / 'out'}", *extra]
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)


def test_logging_policy_estimates_equal_its_observed_ctr_and_greedy_ess_counts_agreement(
        tmp_path):
    lines = _write_obd(tmp_path / "obd")
    done = _run(tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads((tmp_path / "out" / "obd.json").read_text())["men"]
    test = [line.split(",") for line in lines[1:] if line.split(",")[1] >= "2019-11-26"]
    observed = np.mean([int(r[4]) for r in test])
    assert out["observed_ctr"] == observed and out["test_rows"] == len(test)
    uniform = out["policies"]["uniform"]["estimates"]
    assert uniform["ips"]["value"] == observed and uniform["snips"]["value"] == observed
    assert uniform["ips"]["ess"] == len(test)
    # most_clicked shows the k-th best training item (Laplace-smoothed click rate) at position
    # k: its weights are 4 on the evaluation rows that agree and 0 elsewhere, so its ESS is the
    # number of agreeing rows
    train = [r.split(",") for r in lines[1:] if r.split(",")[1] < "2019-11-26"]
    items = np.array([int(r[2]) for r in train])
    clicks = np.bincount(items, [int(r[4]) for r in train], ITEMS)
    rate = (clicks + 1) / (np.bincount(items, minlength=ITEMS) + ITEMS)
    ranked = np.argsort(-rate, kind="stable")
    agree = [r for r in test if int(r[2]) == ranked[int(r[3]) - 1]]
    most = out["policies"]["most_clicked"]["estimates"]["ips"]
    assert most["ess"] == len(agree) > 0
    assert most["value"] == pytest.approx(sum(ITEMS * int(r[4]) for r in agree) / len(test))
    for name in ("obd.md", "obd.csv"):
        assert (tmp_path / "out" / name).stat().st_size > 0


def test_a_bad_row_is_named_by_file_line_and_column_and_nothing_is_written(tmp_path):
    _write_obd(tmp_path / "obd", bad_line=7)
    done = _run(tmp_path)
    assert done.returncode != 0
    assert "men.csv line 8 column propensity_score: 0.0 not in (0, 1]" in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "out").exists()
    bad_flag = _run(tmp_path, "--policies=uniform,best")
    assert bad_flag.returncode != 0 and "--policies: ['best'] unknown" in bad_flag.stderr
