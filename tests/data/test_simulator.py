import dataclasses

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.preprocessing import OneHotEncoder

from data import simulator
from data.generate import simulate_shard
from data.schema import ImpressionLog
from data.sim_config import SimConfig
from data.sim_world import DAY, make_world
from data.simulator import IRecSim

SMALL = SimConfig(n_users=400, n_days=4, test_days=1)


# --- the click model, equation by equation ----------------------------------------------------
def test_examination_hand_computed():
    np.testing.assert_allclose(simulator.examination(3, 0.5), [1.0, 0.70710678, 0.57735027])
    np.testing.assert_allclose(simulator.examination(3, 0.0), [1.0, 1.0, 1.0])


def test_click_logit_hand_computed():
    cfg = SimConfig()  # pref 1.0, match 2.5, rep 0.35 (2 free), tag 0.3, novelty 0.15, fresh 0.4
    z = simulator.click_logit(cfg, alpha=-3.0, pref=0.5, match=0.4, quality=0.2, same_channel=4,
                              shared_tags=1, novel=2, freshness=0.5, drift=0.1, idio=-0.05)
    # -3 + 0.1 + log(4 * 0.5) + 2.5*0.4 + 0.2 - 0.35*(4-2) - 0.3*1 + 0.15*2 + 0.4*0.5 - 0.05
    assert z == pytest.approx(-1.556852819, abs=1e-8)


def test_list_effect_counts_hand_computed():
    np.testing.assert_array_equal(simulator.same_channel_above(np.array([[0, 1, 0, 0]])),
                                  [[0, 0, 1, 2]])
    tags = np.array([[[1, 2, 0], [3, 0, 0], [2, 0, 0], [1, 3, 0], [0, 0, 0]]])
    np.testing.assert_array_equal(simulator.shared_tag_above(tags), [[0, 0, 1, 2, 0]])


def test_drifts_hand_computed():
    np.testing.assert_allclose(simulator.hour_drift(np.array([8]), 0.3),
                               [[0.3, 0.0, -0.28977774, -0.28977774]], atol=1e-7)
    np.testing.assert_allclose(simulator.network_drift(np.array([0, 1]), 0.3),
                               [[0, 0, 0.3, 0.3], [0, 0, -0.15, -0.15]])


def test_age_buckets_and_idiosyncratic_term():
    h = 3600
    np.testing.assert_array_equal(
        simulator.age_bucket(np.array([0, 6 * h - 1, 6 * h, 2 * DAY, 4 * DAY, 10 * DAY, 40 * DAY])),
        [0, 0, 1, 2, 3, 4, 5])
    users, items = np.repeat(np.arange(300), 300), np.tile(np.arange(300), 300)
    eps = simulator.idiosyncratic(7, users, items, 0.5)
    np.testing.assert_array_equal(eps, simulator.idiosyncratic(7, users, items, 0.5))
    assert abs(eps.mean()) < 0.01 and eps.std() == pytest.approx(0.5, rel=0.02)
    assert not np.array_equal(eps, simulator.idiosyncratic(8, users, items, 0.5))


def test_ranking_keys_and_top_k_columns_hand_computed():
    """key = score * 4096 + column; ties go to the larger column; columns come out ascending."""
    r = simulator.RECENT_SCORE
    scores = np.array([[5.0, 1.0, 5.0, 3.0, r, 5.0],
                       [r, 2.0, -7.0, 2.0, 9.0, r]])
    keys = simulator.ranking_keys(scores, np.arange(6))
    np.testing.assert_array_equal(keys[1, :4], [r * 4096, 8193, -28670, 8195])
    np.testing.assert_array_equal(simulator.top_k_columns(keys, 2), [[2, 5], [3, 4]])
    np.testing.assert_array_equal(simulator.top_k_columns(keys, 3), [[0, 2, 5], [1, 3, 4]])
    np.testing.assert_array_equal(simulator.top_k_columns(keys, 5), [[0, 1, 2, 3, 5],
                                                                     [1, 2, 3, 4, 5]])
    with pytest.raises(ValueError, match="4097 columns, at most 4096"):
        simulator.top_k_columns(np.zeros((1, 4097)), 3)


def test_top_k_columns_matches_sort():
    rng = np.random.default_rng(0)
    scores = simulator.quantise(rng.normal(size=(50, 300)), simulator.SCORE_SCALE)
    scores[:, :5] = simulator.RECENT_SCORE
    got = simulator.top_k_columns(simulator.ranking_keys(scores, np.arange(300)), 40)
    want = np.sort(np.argsort(-scores, axis=1, kind="stable")[:, :40], axis=1)
    np.testing.assert_array_equal(got, want)


def test_matching_keys_are_exact_integers():
    """[q(u), 1] @ pool_keys equals 4096 * (q(u).q(v) + jitter) + column in Python integers, so
    no BLAS kernel or summation order can change a candidate set."""
    env, req = _first_requests(SMALL, np.arange(50))
    u = env.interest[req.rows[:3]]
    uq = simulator.quantise(u, simulator.COORD_SCALE)
    got = np.concatenate([uq, np.ones((3, 1))], axis=1) @ env.pool_keys
    latent = env.pool_keys[:-1] / 4096
    jitter = (env.pool_keys[-1] - env.channel_column) / 4096
    assert (latent == np.rint(latent)).all() and (jitter == np.rint(jitter)).all()
    assert np.abs(latent).max() <= 2 ** 16
    lo, hi = env.pool_offset[1], env.pool_offset[2]
    assert env.channel_column[lo:hi].tolist() == list(range(hi - lo))
    cols = [0, 7, lo, hi - 1, len(env.channel_column) - 2]
    for r, row in enumerate(uq):
        for col in cols:
            exact = sum(int(a) * int(b) for a, b in zip(row, latent[:, col]))
            assert got[r, col] == 4096 * (exact + int(jitter[col])) + int(env.channel_column[col])
    assert np.abs(got).max() < 2.0 ** 52 and (got == np.rint(got)).all()
    assert simulator.quantise([0.25, -1.0 / 3.0], 2.0 ** 16).tolist() == [16384.0, -21845.0]


@pytest.mark.parametrize("name, delta, sign", [
    ("match", 0.3, +1), ("novel", 1, +1), ("same_channel", 3, -1), ("shared_tags", 1, -1)])
def test_click_logit_monotone_and_switchable(name, delta, sign):
    base = dict(alpha=-3.0, pref=0.25, match=0.1, quality=0.0, same_channel=2, shared_tags=0,
                novel=0, freshness=0.0, drift=0.0, idio=0.0)
    cfg = SimConfig()
    z0 = simulator.click_logit(cfg, **base)
    z1 = simulator.click_logit(cfg, **{**base, name: base[name] + delta})
    assert np.sign(z1 - z0) == sign
    weight = {"match": "match_weight", "novel": "novelty_weight",
              "same_channel": "repeat_penalty", "shared_tags": "tag_repeat_penalty"}[name]
    off = dataclasses.replace(cfg, **{weight: 0.0})
    assert simulator.click_logit(off, **{**base, name: base[name] + delta}) == pytest.approx(
        simulator.click_logit(off, **base))


# --- the environment --------------------------------------------------------------------------
def _first_requests(cfg, users=np.arange(200)):
    env = IRecSim(make_world(cfg), rng_key=0)
    return env, env.reset(users)


def _homogeneous_slates(req, world):
    """10 news candidates sharing as many tags as possible: a maximally repetitive page."""
    news = req.candidates[:, 0]
    first_tag = world.items.tags[news, 0]
    order = np.argsort(first_tag, axis=1, kind="stable")
    return np.take_along_axis(news, order, 1)[:, :10]


def test_position_bias_in_env_and_switch_off():
    # List effects also depend on the slot (items above), so they are off in both arms.
    base = dataclasses.replace(SMALL, repeat_penalty=0.0, tag_repeat_penalty=0.0)
    for decay in (base.position_decay, 0.0):
        cfg = dataclasses.replace(base, position_decay=decay)
        world = make_world(cfg)
        rng = np.random.default_rng(0)
        slot_ctr = np.zeros(10)
        for _ in range(20):  # the same items in random orders: only the position differs
            env = IRecSim(world, rng_key=0)
            req = env.reset(np.arange(200))
            slates = req.candidates[:, :, :3].reshape(len(req), -1)[:, :10]
            order = rng.permuted(np.tile(np.arange(10), (len(req), 1)), axis=1)  # one per user
            fb, _ = env.step(np.take_along_axis(slates, order, 1))
            slot_ctr += fb.true_ctr.mean(0) / 20
        if decay > 0:
            assert (np.diff(slot_ctr) < 0).all()
        else:
            np.testing.assert_allclose(slot_ctr, slot_ctr.mean(), rtol=0.1)


def test_repetition_lowers_clicks_and_switches_off():
    on = SMALL
    off = dataclasses.replace(SMALL, repeat_penalty=0.0, tag_repeat_penalty=0.0)
    env_on, req_on = _first_requests(on)
    env_off, req_off = _first_requests(off)
    np.testing.assert_array_equal(req_on.candidates, req_off.candidates)
    slates = _homogeneous_slates(req_on, env_on.world)
    fb_on, _ = env_on.step(slates)
    fb_off, _ = env_off.step(slates)
    np.testing.assert_allclose(fb_on.true_ctr[:, 0], fb_off.true_ctr[:, 0], rtol=1e-6)
    assert (fb_on.true_ctr[:, 5:] <= fb_off.true_ctr[:, 5:] + 1e-7).all()
    assert fb_on.true_ctr[:, 5:].mean() < 0.8 * fb_off.true_ctr[:, 5:].mean()


def _serve(cfg, pick_novel: bool, days: int = 3):
    """Runs the env with a policy that shows the most (or least) novel tags; -> satisfaction."""
    cfg = dataclasses.replace(cfg, n_days=days, test_days=1)
    env = IRecSim(make_world(cfg), rng_key=0)
    req = env.reset(np.arange(cfg.n_users))
    while not env.done:
        tags = env.world.items.tags[req.candidates.reshape(len(req), -1)]
        known = np.take_along_axis(env.profile[req.rows], tags.reshape(len(req), -1), 1)
        novel = ((tags > 0) & ~known.reshape(tags.shape)).sum(-1)
        order = np.argsort(-novel if pick_novel else novel, axis=1, kind="stable")[:, :10]
        _, req = env.step(np.take_along_axis(req.candidates.reshape(len(req), -1), order, 1))
    return env.satisfaction


def test_novel_tags_raise_later_engagement_and_switch_off():
    novel, familiar = _serve(SMALL, True), _serve(SMALL, False)
    assert novel.mean() > familiar.mean() + 0.1  # satisfaction drives tomorrow's session rate
    rate = lambda cfg, sat: np.exp(cfg.return_weight * np.tanh(sat - cfg.satisfaction_reference))
    assert rate(SMALL, novel).mean() > rate(SMALL, familiar).mean()
    off = dataclasses.replace(SMALL, return_weight=0.0)
    assert rate(off, novel).mean() == rate(off, familiar).mean() == 1.0


def test_matching_does_not_depend_on_the_block_size():
    """Same draws, same candidates in the same order, whatever the block; each row is the top
    K of its channel's pool by score (ties to the later pool item), in pool order, and skips the
    user's recent items."""
    env, req = _first_requests(SMALL, np.arange(300))
    env.recent[req.rows[:5], :3] = req.candidates[:5, 0, :3]  # recently shown: never again
    hour = req.context[:, 0]
    state = env.rng.bit_generator.state
    whole, age = env._matching(req.rows, hour, block=10**6)
    for block in (1, 7, 256):
        env.rng.bit_generator.state = state
        got, got_age = env._matching(req.rows, hour, block=block)
        np.testing.assert_array_equal(got, whole)
        np.testing.assert_array_equal(got_age, age)
    np.testing.assert_array_equal(age, env.candidate_age_buckets(hour, whole))
    for r in range(5):
        assert not np.isin(req.candidates[r, 0, :3], whole[r]).any()
    for c, pool in enumerate(env.pools):
        assert np.isin(whole[:, c], pool).all()
        assert (np.sort(whole[:, c], 1)[:, 1:] != np.sort(whole[:, c], 1)[:, :-1]).all()
    # The definition, in Python: the K best pool items by (score, column), recent ones excluded.
    env.rng.bit_generator.state = state
    d = env.cfg.latent_dim
    u = env.interest[req.rows] + env.rng.standard_normal((len(req), d), dtype=np.float32) * (
        env.cfg.match_noise / np.sqrt(d))
    latent = env.pool_keys[:-1, :-1] / 4096
    jitter = (env.pool_keys[-1, :-1] - env.channel_column[:-1]) / 4096
    k = env.cfg.candidates_per_channel
    for r in (0, 3, len(req) // 2, len(req) - 1):
        uq = [int(x) for x in simulator.quantise(u[r], simulator.COORD_SCALE)]
        recent = set(env.recent[req.rows[r]].tolist())
        for c, pool in enumerate(env.pools):
            lo = env.pool_offset[c]
            score = {j: sum(a * int(b) for a, b in zip(uq, latent[:, lo + j])) + int(jitter[lo + j])
                     for j in range(len(pool)) if int(pool[j]) not in recent}
            best = sorted(score, key=lambda j: (score[j], j), reverse=True)[:k]
            assert whole[r, c].tolist() == pool[sorted(best)].tolist()


def test_env_rejects_bad_slates_and_users():
    env, req = _first_requests(SMALL, np.arange(100))
    n = len(req)
    assert n >= 3
    flat = req.candidates.reshape(n, -1)
    with pytest.raises(ValueError, match=rf"slates has shape \({n}, 9\), expected \({n}, 10\)"):
        env.step(flat[:, :9])
    bad = flat[:, :10].copy()
    bad[2, 4] = -5
    with pytest.raises(ValueError, match="slate row 2 slot 4: item -5 is not among"):
        env.step(bad)
    dup = flat[:, :10].copy()
    dup[1, 1] = dup[1, 0]
    with pytest.raises(ValueError, match="slate row 1 repeats an item"):
        env.step(dup)
    with pytest.raises(ValueError, match=r"user ids must be in \[0, 400\)"):
        IRecSim(env.world).reset([0, 400])


def test_env_runs_to_the_end_and_reports_done():
    cfg = dataclasses.replace(SMALL, n_days=2, test_days=1)
    env, req = _first_requests(cfg, np.arange(50))
    steps = 0
    while not env.done:
        slates = req.candidates.reshape(len(req), -1)[:, :10]
        fb, req = env.step(slates)
        assert fb.clicked.shape == fb.dwell.shape == (len(slates), 10)
        assert ((fb.dwell > 0) == fb.clicked).all()
        steps += 1
    assert steps > 2 and len(req) == 0
    with pytest.raises(RuntimeError, match="reset"):
        env.step(np.zeros((0, 10), np.int64))


def test_config_errors_name_the_flag():
    with pytest.raises(ValueError, match="--alpha needs 4 values"):
        SimConfig(alpha=(1.0, 2.0))
    with pytest.raises(ValueError, match="--test_days=14 must be in"):
        SimConfig(test_days=14)
    with pytest.raises(ValueError, match="--channel_quota: unknown channels"):
        SimConfig(channel_quota="news," * 9 + "podcast")
    with pytest.raises(ValueError, match="fewer than --candidates_per_channel"):
        SimConfig(new_items_per_day=(100, 60, 15, 15))


# --- properties of a generated log (SIMULATOR.md, "test each") -------------------------------
@pytest.fixture(scope="module")
def two_weeks():
    cfg = SimConfig(n_users=1500, n_days=14, test_days=3)
    days, world = simulate_shard(cfg, 0, 1)
    return cfg, world, ImpressionLog.concat([d[1] for d in days])


def test_video_ctr_above_article_and_ctr_falls_with_slot(two_weeks):
    _, _, log = two_weeks
    ctr = np.bincount(log.channel, weights=log.clicked) / np.bincount(log.channel)
    assert min(ctr[2], ctr[3]) > ctr[1]
    slot_ctr = np.bincount(log.slot, weights=log.true_ctr) / np.bincount(log.slot)
    assert (np.diff(slot_ctr) < 0).all()


def test_channel_preference_is_personal_and_stable(two_weeks):
    cfg, _, log = two_weeks
    clicks = log.take(log.clicked == 1)
    week1 = clicks.take(clicks.timestamp < 7 * DAY)
    week2 = clicks.take(clicks.timestamp >= 7 * DAY)
    counts = np.zeros((cfg.n_users, 4))
    np.add.at(counts, (week1.user_id, week1.channel), 1)
    global_mix = counts.sum(0) / counts.sum()
    personal = (counts + 2 * global_mix) / (counts.sum(1, keepdims=True) + 2)
    ll_personal = np.log(personal[week2.user_id, week2.channel]).mean()
    ll_global = np.log(global_mix[week2.channel]).mean()
    assert ll_personal > ll_global + 0.05


def test_features_carry_signal_and_oracle_leaves_room(two_weeks):
    cfg, _, log = two_weeks
    x = np.concatenate([log.user_fields, log.context, log.item_fields,
                        log.channel[:, None], log.slot[:, None]], axis=1)
    train = log.timestamp < cfg.test_start_day * DAY
    enc = OneHotEncoder(handle_unknown="ignore").fit(x[train])
    lr = LogisticRegression(max_iter=300).fit(enc.transform(x[train]), log.clicked[train])
    auc_lr = roc_auc_score(log.clicked[~train], lr.predict_proba(enc.transform(x[~train]))[:, 1])
    auc_oracle = roc_auc_score(log.clicked[~train], log.true_ctr[~train])
    assert auc_lr > 0.6
    assert auc_oracle > auc_lr + 0.05
    assert auc_oracle > 0.75


def test_logged_propensities_are_probabilities(two_weeks):
    _, _, log = two_weeks
    assert ((log.propensity > 0) & (log.propensity <= 1)).all()
    explored = log.propensity < 0.5  # eps / R: a uniformly explored slot
    assert 0.05 < explored.mean() < 0.15  # epsilon = 0.1


def test_kuairand_world(shared_data):
    cfg = SimConfig(n_users=300, n_days=2, test_days=1, item_source="kuairand",
                    kuairand_dir=str(shared_data / "kuairand"))
    world = make_world(cfg)
    assert len(world.items) == 7583
    assert np.bincount(world.items.channel, minlength=4).min() >= cfg.candidates_per_channel
    assert world.users.field_names[0] == "user_active_degree"
    days, _ = simulate_shard(cfg, 0, 1, world=world)
    log = ImpressionLog.concat([d[1] for d in days])
    assert len(log) > 1000 and 0.01 < log.clicked.mean() < 0.3
    with pytest.raises(FileNotFoundError, match="user_features_pure.csv|video_features"):
        make_world(dataclasses.replace(cfg, kuairand_dir="/nonexistent"))
