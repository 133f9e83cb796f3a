"""benchmarks.mechanisms: a planted mechanism shows in the oracle and in a model handed its term,
and vanishes with its flag off; the CLI names a bad mechanism."""
import json
import subprocess
import sys

from benchmarks import mechanisms
from data.sim_config import SimConfig
from tests.conftest import REPO


def test_a_planted_satiation_shows_and_vanishes_with_its_flag_off():
    cfg = SimConfig(n_users=300, n_days=4, test_days=1, satiation_weight=1.0)
    line = mechanisms.check(cfg, "satiation", max_rows=50_000)
    assert line["oracle_effect"] > 0.01 and line["recovered_effect"] > 0.005
    assert abs(line["flag_off_effect"]) < 1e-6
    assert line["passed"] == (line["recovered_effect"] >= 0.5 * line["oracle_effect"])
    off = mechanisms.check(SimConfig(n_users=300, n_days=4, test_days=1), "triple", 50_000)
    assert off["passed"] is None and "--triple_weight is 0" in off["message"]


def test_cli_prints_one_line_per_mechanism_and_names_a_bad_one():
    cmd = [sys.executable, "-m", "benchmarks.mechanisms", "--n_users=100", "--n_days=3",
           "--test_days=1", "--mechanisms=shock"]
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    lines = [json.loads(x) for x in done.stdout.splitlines()]
    assert [x["name"] for x in lines] == ["shock", *mechanisms.RETURN_MECHANISMS]
    assert all(x["passed"] is None for x in lines)
    bad = subprocess.run(cmd[:-1] + ["--mechanisms=gravity"], cwd=REPO, capture_output=True,
                         text=True, timeout=300)
    assert bad.returncode != 0 and "--mechanisms: unknown ['gravity']" in bad.stderr
    bad = subprocess.run(cmd + ["--planning_weights=1,x"], cwd=REPO, capture_output=True,
                         text=True, timeout=300)
    assert bad.returncode != 0 and "--planning_weights=1,x: expected numbers" in bad.stderr


def test_the_return_check_picks_the_best_lambda_and_compares_it_with_the_flag_off(monkeypatch):
    # clicks per user by (fatigue weight, planner lambda or None for the myopic oracle)
    table = {(1.0, None): 40.0, (1.0, 1.0): 41.0, (1.0, 3.0): 44.0,
             (0.0, None): 50.0, (0.0, 3.0): 49.0}
    monkeypatch.setattr(mechanisms, "clicks_per_user", lambda cfg, policy: table[
        (cfg.fatigue_weight, policy.weight if policy.mechanism else None)])
    line = mechanisms.return_check(SimConfig(n_users=300, n_days=4, test_days=1,
                                             fatigue_weight=1.0), "fatigue_weight", [1.0, 3.0])
    assert line["planning_weight"] == 3.0
    assert abs(line["oracle_effect"] - 0.1) < 1e-12            # 44 / 40 - 1
    assert abs(line["flag_off_effect"] - (-0.02)) < 1e-12      # 49 / 50 - 1
    assert line["passed"] is True                              # >= 0.05 and < 0.01
    table[(0.0, 3.0)] = 51.0                                   # planning helps without it too
    assert mechanisms.return_check(SimConfig(n_users=300, n_days=4, test_days=1,
                                             fatigue_weight=1.0), "fatigue_weight",
                                   [1.0, 3.0])["passed"] is False


def test_completion_off_brings_the_clicks_own_satisfaction_back(monkeypatch):
    seen = []

    def clicks(cfg, policy):
        seen.append((cfg.satisfaction_completion, cfg.satisfaction_click))
        return 40.0
    monkeypatch.setattr(mechanisms, "clicks_per_user", clicks)
    cfg = SimConfig(n_users=300, n_days=4, test_days=1, satisfaction_completion=3.0,
                    satisfaction_click=0.0)
    mechanisms.return_check(cfg, "satisfaction_completion", [1.0])
    # myopic and planner with it on, then both with it off and the clicks counting again
    assert seen == [(3.0, 0.0), (3.0, 0.0), (0.0, 1.0), (0.0, 1.0)]
