"""experiments.ope_sim / experiments.ope --parts=simulator: the exploration logs are the
dataset's own test days, the logged propensities are the logging policy's, the click model is
the logging policy's LR, and the CLI writes its table and resumes from its cached truths."""
import json
import subprocess
import sys

import numpy as np
import pytest

from experiments import online, ope_sim
from tests.conftest import REPO


@pytest.fixture(scope="module")
def sim(sim_data):
    return online.load_world(str(sim_data))


@pytest.fixture(scope="module")
def base_collector(sim):
    cfg, world, metadata = sim
    return ope_sim.collect(cfg, world, metadata["shards"], {"base": (online.logging_arm(0.0), 0)})


def test_collected_logs_are_the_test_days_the_logging_policy_served(sim, base_collector):
    cfg, world, metadata = sim
    collector = base_collector
    served = online.run_arm(cfg, world, metadata["shards"], online.logging_arm(cfg.epsilon))
    reward = np.concatenate(collector.reward)
    assert reward.sum() == served["clicks"] and reward.size == served["impressions"]
    log = collector.log("base")
    # where the base arm (the same LR and quotas, no exploration) agrees with every logged slot
    # so far, the logged item was the greedy one: its propensity is 1 - eps + eps / R
    s = cfg.list_size
    remaining = cfg.candidates_per_channel * 4 - np.arange(s)
    greedy = 1 - cfg.epsilon + cfg.epsilon / remaining
    agreed = log.target_prefix > 0
    assert agreed[:, 0].mean() > 0.8
    np.testing.assert_allclose(log.logging[agreed], np.broadcast_to(greedy, log.logging.shape)[
        agreed], rtol=1e-6)
    np.testing.assert_allclose(log.logging_prefix, np.cumprod(log.logging, 1))


def test_click_probabilities_are_the_logged_true_ctr_and_change_nothing(sim):
    cfg, world, metadata = sim
    from data.generate import simulate_shard
    envs, checked = [], []

    def act(req, policy, rng):
        slates, props = policy.act(req.user_fields, req.candidates, req.candidate_age,
                                   cfg.epsilon, rng)
        checked.append(envs[0].click_probabilities(req, slates))
        envs[0].click_probabilities(req, slates[:, ::-1])   # another slate: no side effect
        return slates, props

    def observe(req, slates, fb):
        if req.day >= 0:
            np.testing.assert_allclose(checked.pop(), fb.true_ctr, rtol=1e-6)

    days, _ = simulate_shard(cfg, 0, metadata["shards"], world=world, act=act,
                             observe=observe, on_env=envs.append)
    served = online.run_arm(cfg, world, metadata["shards"], online.logging_arm(cfg.epsilon),
                            start_day=0)
    assert sum(int(log.clicked.sum()) for _, log, _ in days) == served["clicks"]


def test_ips_and_rips_cover_the_base_arms_truth_on_the_logged_requests(sim, base_collector):
    cfg, world, metadata = sim
    from hrl_rec import ope
    collector = base_collector
    log, truth = collector.log("base"), collector.truth("base")
    assert 0 < truth < cfg.list_size
    for estimator in ("ips", "rips"):
        assert ope.bootstrap(log, estimator, samples=300).covers(truth), estimator


def test_lr_click_probability_is_the_logging_policys_logit_at_the_slot(sim):
    cfg, world, metadata = sim
    checked = []

    def act(req, policy, rng, history):
        slates, props = policy.act(req.user_fields, req.candidates, req.candidate_age, 0.0, rng)
        got = ope_sim.lr_click_probability(policy, req, slates)
        model = policy.model
        rank = model.rank_scores(req.user_fields, req.candidates, req.candidate_age)
        channel = model.channel_scores(req.user_fields)
        n, c, k = req.candidates.shape
        for i in range(min(n, 3)):
            for slot in range(cfg.list_size):
                ch, j = np.argwhere(req.candidates[i] == slates[i, slot])[0]
                logit = (rank[i, ch, j] + channel[i, ch]
                         + model.weights[model.item_offset[4] + slot]
                         - model.weights[model.item_offset[4]])
                assert got[i, slot] == pytest.approx(1 / (1 + np.exp(-logit)), rel=1e-9)
                checked.append(1)
        return slates, props

    online.run_arm(cfg, world, metadata["shards"], act)
    assert len(checked) > 50


@pytest.mark.slow
def test_cli_takes_truths_from_an_ab_test_folder_serves_the_rest_and_resumes(sim_data,
                                                                               tmp_path):
    # an ab_test folder holding the base arm's online value (a made-up 0.5) for this dataset
    fingerprint = json.loads((sim_data / "metadata.json").read_text())["fingerprint"]
    ab = tmp_path / "ab"
    ab.mkdir()
    (ab / "table3.md").write_text(f"Data: (fingerprint `{fingerprint}`)\n")
    (ab / "table3_arms.csv").write_text("arm,seed,ctr,clicks,impressions,requests\n"
                                        "base,,0.5,5,10,1\n")
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "experiments.ope", "--parts=simulator",
           f"--data_dir={sim_data}", "--data_flagfile=", "--bootstrap=50",
           "--sim_estimators=ips,rips,dr", f"--output_dir={out}", f"--truth_from={ab}"]
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = json.loads((out / "simulator.json").read_text())["rows"]
    assert {(r["arm"], r["estimator"]) for r in rows} == {
        (a, e) for a in ("base (LR + channel quotas, no exploration)",
                         "LR without channel quotas (CTR only)") for e in ("ips", "rips", "dr")}
    for r in rows:
        assert r["low"] <= r["estimate"] <= r["high"] and 0 < r["truth"] < 1
    online_truth = {r["arm"]: r["online_truth"] for r in rows}
    assert online_truth["base (LR + channel quotas, no exploration)"] == 0.5   # from the CSV
    assert 0 < online_truth["LR without channel quotas (CTR only)"] < 0.5      # served here
    assert "| base (LR + channel quotas, no exploration) |" in (out / "simulator.md").read_text()
    # a rerun serves nothing: both truths come from the CSV and the cache
    again = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "(truth from" in again.stderr + again.stdout
    assert json.loads((out / "simulator.json").read_text())["rows"] == rows
    cached = json.loads((out / "simulator_truth.json").read_text())["arms"]
    assert cached["base"]["source"] == str(ab / "table3_arms.csv") and "lr_no_quotas" in cached
    (ab / "table3.md").write_text("Data: (fingerprint `0000`)\n")
    bad = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert bad.returncode != 0 and "does not name the fingerprint" in bad.stderr
    bad = subprocess.run(cmd[:-1] + [f"--arm=X={tmp_path}/nope_{{0,1}}"], cwd=REPO,
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode != 0 and "nope_0/model.keras not found" in bad.stderr
