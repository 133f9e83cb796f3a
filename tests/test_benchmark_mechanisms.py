"""benchmarks.mechanisms: a planted mechanism shows in the oracle and in a model handed its term,
and vanishes with its flag off; the CLI names a bad mechanism."""
import json
import subprocess
import sys

import numpy as np

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
    bad = subprocess.run(cmd + ["--return_parts=oracle"], cwd=REPO, capture_output=True,
                         text=True, timeout=300)
    assert bad.returncode != 0 and "--return_parts=oracle: expected some of" in bad.stderr


def test_the_return_check_picks_the_best_lambda_and_compares_it_with_the_flag_off(monkeypatch):
    # clicks per user by (fatigue weight, planner lambda or None for the myopic oracle)
    table = {(1.0, None): 40.0, (1.0, 1.0): 41.0, (1.0, 3.0): 44.0,
             (0.0, None): 50.0, (0.0, 3.0): 49.0}
    monkeypatch.setattr(mechanisms, "clicks_per_user", lambda cfg, policy: table[
        (cfg.fatigue_weight, policy.weight if policy.mechanism else None)])
    line = mechanisms.return_check(SimConfig(n_users=300, n_days=4, test_days=1,
                                             fatigue_weight=1.0), "fatigue_weight", [1.0, 3.0],
                                   ("planning",))
    assert line["planning_weight"] == 3.0
    assert abs(line["oracle_effect"] - 0.1) < 1e-12            # 44 / 40 - 1
    assert abs(line["flag_off_effect"] - (-0.02)) < 1e-12      # 49 / 50 - 1
    assert line["passed"] is True                              # >= 0.05 and < 0.01
    table[(0.0, 3.0)] = 51.0                                   # planning helps without it too
    assert mechanisms.return_check(SimConfig(n_users=300, n_days=4, test_days=1,
                                             fatigue_weight=1.0), "fatigue_weight",
                                   [1.0, 3.0], ("planning",))["passed"] is False


def test_completion_off_brings_the_clicks_own_satisfaction_back(monkeypatch):
    seen = []

    def clicks(cfg, policy):
        seen.append((cfg.satisfaction_completion, cfg.satisfaction_click))
        return 40.0
    monkeypatch.setattr(mechanisms, "clicks_per_user", clicks)
    cfg = SimConfig(n_users=300, n_days=4, test_days=1, satisfaction_completion=3.0,
                    satisfaction_click=0.0)
    mechanisms.return_check(cfg, "satisfaction_completion", [1.0], ("planning",))
    # myopic and planner with it on, then both with it off and the clicks counting again
    assert seen == [(3.0, 0.0), (3.0, 0.0), (0.0, 1.0), (0.0, 1.0)]


def _panel(beta, confounder_beta, n_users=800, n_days=40, seed=0):
    """Sessions on day d + 1 ~ Poisson(a_u exp(beta x_ud + confounder_beta w_ud)), x and w
    standard normal with correlation 0.8, every user active every day."""
    rng = np.random.default_rng(seed)
    level = rng.uniform(0.5, 2.0, size=(n_users, 1))
    x = rng.standard_normal((n_users, n_days))
    w = 0.8 * x + 0.6 * rng.standard_normal((n_users, n_days))
    rate = level * np.exp(beta * x + confounder_beta * w)
    sessions = np.concatenate([rng.poisson(level), rng.poisson(rate[:, :-1])], axis=1)
    others = len(mechanisms.PANEL_COVARIATES) - 1
    covariates = np.concatenate([w[..., None], np.zeros((n_users, n_days, others - 1))], -1)
    return mechanisms.Panel(x, np.ones((n_users, n_days)), sessions.astype(float), covariates)


def test_the_session_regression_recovers_a_planted_effect_beside_a_correlated_covariate():
    # (40 days per user: the exposure is the user's own mean, which attenuates the coefficient
    # over few days, e.g. -0.27 at 8)
    fit = mechanisms.session_response(_panel(beta=-0.3, confounder_beta=0.2))
    assert abs(fit["coef"] - (-0.3)) < 3 * fit["se"] and fit["z"] < -10
    assert abs(fit["effect"] - np.expm1(fit["coef"])) < 1e-12
    # without the covariate the same data give a biased coefficient: -0.3 + 0.2 * 0.8
    panel = _panel(beta=-0.3, confounder_beta=0.2)
    panel.covariates[:] = 0.0                               # a constant column is dropped
    assert abs(mechanisms.session_response(panel)["coef"] - (-0.14)) < 0.03
    # no effect: |z| small
    assert abs(mechanisms.session_response(_panel(beta=0.0, confounder_beta=0.2))["z"]) < 3


def test_the_recovered_part_reads_its_feature_on_and_off_and_passes_by_sign(monkeypatch):
    seen = []
    fits = {1.0: {"coef": -0.2, "se": 0.05, "z": -4.0, "sd": 0.1, "effect": -0.18},
            0.0: {"coef": -0.01, "se": 0.05, "z": -0.2, "sd": 0.1, "effect": -0.01}}

    def panel(cfg, feature):
        seen.append((cfg.topic_fatigue_weight, feature))
        return cfg.topic_fatigue_weight
    monkeypatch.setattr(mechanisms, "daily_panel", panel)
    monkeypatch.setattr(mechanisms, "session_response", lambda weight: fits[weight])
    cfg = SimConfig(n_users=300, n_days=4, test_days=1, topic_fatigue_weight=1.0)
    line = mechanisms.return_check(cfg, "topic_fatigue_weight", [1.0], ("recovered",))
    assert seen == [(1.0, "topic_concentration"), (0.0, "topic_concentration")]
    assert line["recovered_effect"] == -0.18 and line["recovered_off_effect"] == -0.01
    assert line["passed"] is True and line["oracle_effect"] is None
    fits[0.0] = {**fits[0.0], "effect": -0.1}                 # off keeps more than half of it
    assert mechanisms.return_check(cfg, "topic_fatigue_weight", [1.0],
                                   ("recovered",))["passed"] is False
    fits[0.0]["effect"], fits[1.0]["z"] = -0.01, -2.0         # not 3 standard errors from 0
    assert mechanisms.return_check(cfg, "topic_fatigue_weight", [1.0],
                                   ("recovered",))["passed"] is False


def test_the_panel_holds_each_active_day_of_a_real_simulation():
    cfg = SimConfig(n_users=200, n_days=3, test_days=1, topic_fatigue_weight=1.0)
    panel = mechanisms.daily_panel(cfg, "topic_concentration")
    active = panel.pages > 0
    assert active.any() and np.isfinite(panel.feature[active]).all()
    assert np.isnan(panel.feature[~active]).all()
    assert (panel.sessions[active] >= 1).all() and (panel.sessions[~active] == 0).all()
    assert ((panel.feature[active] >= 0) & (panel.feature[active] < 1)).all()
