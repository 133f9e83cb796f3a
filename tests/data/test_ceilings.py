"""The fair ceilings (data.ceilings): Fisher scoring by hand, the MAP optimum, the estimator on a
hand-built population, the noise-free oracle, the AUC arithmetic and metadata.json's keys."""
import numpy as np
import pytest

from data import ceilings, generate
from data.sim_config import SimConfig
from data.stats import SplitStats, binned_auc, fair_ceilings, headroom_share


def _sigmoid(x):
    return 1 / (1 + np.exp(-x))


def test_one_fisher_scoring_step_by_hand():
    # Three rows of one user, x = 1, known = 0, w0 = 0, l2 = 1, one step from w = 0: s = 0.5.
    # e = 1, y = (1, 1, 0): g = 0.5, 0.5, -(0.5 * 0.5) / 0.5 = -0.5 -> sum 0.5;
    # I = 0.5 * 0.25 / 0.5 = 0.25 each -> 0.75; step = 0.5 / (0.75 + 1) = 0.285714.
    x, known = np.ones((3, 1)), np.zeros(3)
    w = ceilings.fit_users(x, known, np.ones(3), np.array([1, 1, 0]), np.zeros(3, int), 1,
                           np.zeros(1), 1.0, steps=1)
    assert w[0, 0] == pytest.approx(0.5 / 1.75)
    # e = 0.5, y = (1, 0, 0): es = 0.25; g = 0.5, -(0.25 * 0.5) / 0.75 = -1/6 twice -> 1/6;
    # I = 0.25 * 0.25 / 0.75 = 1/12 each -> 0.25; step = (1/6) / (0.25 + 1) = 0.133333.
    w = ceilings.fit_users(x, known, np.full(3, 0.5), np.array([1, 0, 0]), np.zeros(3, int), 1,
                           np.zeros(1), 1.0, steps=1)
    assert w[0, 0] == pytest.approx((1 / 6) / 1.25)


def test_fit_reaches_the_maximum_of_each_users_log_posterior_and_empty_users_keep_the_prior():
    rng = np.random.default_rng(0)
    n, k, users = 600, 3, 5
    x, known = rng.normal(size=(n, k)), rng.normal(size=n) - 1
    exam = rng.uniform(0.2, 1.0, size=n)
    group = rng.integers(0, users - 1, size=n)  # user 4 has no rows
    y = rng.uniform(size=n) < 0.3
    w0, l2 = np.array([0.1, -0.2, 0.3]), 2.0
    w = ceilings.fit_users(x, known, exam, y, group, users, w0, l2)

    def log_posterior(wg, g):
        rows = group == g
        p = exam[rows] * _sigmoid(known[rows] + x[rows] @ wg)
        return (np.sum(np.where(y[rows], np.log(p), np.log1p(-p)))
                - 0.5 * l2 * np.sum((wg - w0) ** 2))

    def gradient(wg, g):
        return np.array([(log_posterior(wg + h, g) - log_posterior(wg - h, g)) / 2e-5
                         for h in np.eye(k) * 1e-5])

    for g in range(users - 1):
        # stopped when no weight moves by 1e-4: the gradient is ~ Hessian x 1e-4
        assert np.abs(gradient(w[g], g)).max() < 2e-3 < 0.5 < np.abs(gradient(w0, g)).max()
    np.testing.assert_array_equal(w[users - 1], w0)


def test_the_estimates_approach_each_users_true_latents_as_their_impressions_grow():
    """A hand-built population: 4 users with known weights, clicks drawn from the formula."""
    rng = np.random.default_rng(1)
    true_w = np.array([[1.0, -0.5], [-0.8, 0.3], [0.2, 0.9], [0.0, -1.0]])
    errors = []
    for rows_per_user in (40, 4000):
        group = np.repeat(np.arange(4), rows_per_user)
        x = rng.normal(size=(len(group), 2))
        exam = rng.uniform(0.3, 1.0, size=len(group))
        y = rng.uniform(size=len(group)) < exam * _sigmoid(-1 + np.einsum(
            "nk,nk->n", x, true_w[group]))
        w = ceilings.fit_users(x, np.full(len(group), -1.0), exam, y, group, 4, np.zeros(2), 1.0)
        errors.append(np.abs(w - true_w).max())
    assert errors[1] < 0.15 < errors[0]


def test_the_noise_free_oracle_removes_eps_ui_from_the_logit():
    exam, z, idio = np.array([1.0, 0.5]), np.array([0.3, -1.2]), np.array([0.4, -0.1])
    imp = ceilings.Impressions(user=np.zeros(2), day=np.zeros(2), item=np.zeros(2, int),
                               clicked=np.zeros(2, bool), exam=exam, known=np.zeros(2),
                               idio=idio, true_ctr=exam * _sigmoid(z))
    np.testing.assert_allclose(imp.noise_free, exam * _sigmoid(z - idio))


def test_auc_and_the_headroom_share_by_hand():
    # Positives 0.35, 0.8 against negatives 0.1, 0.4: 3 of 4 pairs won.
    assert ceilings.auc(np.array([0.1, 0.4, 0.35, 0.8]), np.array([0, 0, 1, 1])) == 0.75
    # a tie counts one half: (1 + 0.5) / 2
    assert ceilings.auc(np.array([0.2, 0.5, 0.5]), np.array([0, 0, 1])) == 0.75
    assert ceilings.auc(np.array([0.2, 0.5]), np.array([1, 1])) is None
    pos, neg = np.array([0, 1, 1]), np.array([1, 1, 0])    # bins 0 < 1 < 2
    # the positive in bin 1: 1 negative below, 1 tied (0.5); the one in bin 2: 2 below
    assert binned_auc(pos, neg) == pytest.approx((1.5 + 2) / 4)
    assert headroom_share(0.75, 0.74, 0.76) == pytest.approx(0.5)
    assert headroom_share(0.73, 0.74, 0.76) == pytest.approx(-0.5)
    assert headroom_share(0.75, 0.74, 0.74) is None and headroom_share(0.75, None, 0.76) is None


def test_ceilings_merge_across_shards_and_old_shard_statistics_have_none():
    a, b = SplitStats(4, 10), SplitStats(4, 10)
    a.add_ceilings([0.1, 0.6], [1, 0], [0.2, 0.7], [0, 1])
    b.add_ceilings([0.3], [0], [0.5], [1])
    merged = SplitStats(4, 10)
    for s in (a, b):
        merged.merge(SplitStats.from_json(s.to_json()))
    # noise-free: positive 0.1 vs negatives 0.6, 0.3 -> 0; learnable: 0.7, 0.5 vs 0.2 -> 1
    assert merged.ceilings() == {"oracle_auc_noise_free": 0.0, "learnable_ceiling_auc": 1.0}
    old = a.to_json()
    for key in ("has_ceilings", "noise_free_pos", "noise_free_neg", "ceiling_pos", "ceiling_neg"):
        old.pop(key)
    merged.merge(SplitStats.from_json(old))
    assert merged.ceilings() == {}
    assert fair_ceilings({"splits": {"test": {}}}) == {
        "oracle_auc_noise_free": None, "learnable_ceiling_auc": None,
        "valid_learnable_ceiling_auc": None}


def test_metadata_gives_the_ceilings_of_each_split_below_the_oracle(tmp_path):
    cfg = SimConfig(n_users=300, n_days=5, test_days=1)
    meta = generate.generate(cfg, str(tmp_path), n_shards=1, processes=1, history_context=20)
    for split in ("train", "test"):
        s = meta["splits"][split]
        assert 0.5 < s["learnable_ceiling_auc"] < 1 and 0.5 < s["oracle_auc_noise_free"] < 1
    test = meta["splits"]["test"]
    assert test["learnable_ceiling_auc"] < test["oracle_auc_noise_free"] < test["oracle_auc"]
    fit = meta["ceiling_fit"][0]
    assert fit["l2"] in ceilings.L2_GRID and len(fit["valid_auc_by_l2"]) == len(ceilings.L2_GRID)
    assert fair_ceilings(meta)["learnable_ceiling_auc"] == test["learnable_ceiling_auc"]
