"""The mechanisms for the paper's claims (data.mechanisms): each term by hand, each one's monotone
effect on the true click probability or the return rate, and sim_small's bytes with all off."""
import dataclasses

import numpy as np
import pytest

from data import mechanisms
from data.generate import simulate_shard
from data.mechanisms import MechanismState
from data.sim_config import CHANNELS, SimConfig

SMALL = SimConfig(n_users=200, n_days=3, test_days=1)


def test_the_triple_table_is_a_pure_three_way_interaction():
    ages, hours = np.array([5.0, 1, 1, 2, 0, 1]), np.arange(24.0) + 1
    t = mechanisms.triple_table(SimConfig(), ages, hours)
    assert t.shape == (6, mechanisms.HOUR_BLOCKS, len(CHANNELS))
    weights = [ages / ages.sum(), hours.reshape(4, 6).sum(1) / hours.sum(),
               np.array(SimConfig().channel_mix)]
    for axis in range(3):   # every weighted pairwise marginal (and so every other) is 0
        shape = [1, 1, 1]
        shape[axis] = -1
        np.testing.assert_allclose((t * weights[axis].reshape(shape)).sum(axis), 0.0,
                                   atol=1e-12)
    p = np.einsum("a,b,c->abc", *weights)
    assert (p * t ** 2).sum() == pytest.approx(1.0)
    # a table that is a sum of pairwise terms has no three-way part at all
    rng = np.random.default_rng(0)
    ab, bc, ac = rng.normal(size=(6, 4)), rng.normal(size=(4, 5)), rng.normal(size=(6, 5))
    pairwise = ab[:, :, None] + bc[None, :, :] + ac[:, None, :]
    np.testing.assert_allclose(mechanisms.pure_three_way(pairwise), 0.0, atol=1e-12)


def test_satiation_halves_after_one_half_life_and_only_on_the_clicked_channel():
    cfg = SimConfig(satiation_weight=0.5, satiation_halflife_h=2.0)
    state = MechanismState(cfg, n_users=1, n_items=10, field_weights=np.ones(6))
    rows, items = np.array([0]), np.array([[1, 2]])
    channel = np.array([[3, 0]])
    state.after_page(rows, items, channel, np.array([[True, False]]), np.ones((1, 2)),
                     np.array([1000]))
    fields, hour = np.zeros((1, 5), np.int64), np.array([10])
    now = state.click_terms(rows, items, channel, fields, hour, np.array([1000]), 0)
    later = state.click_terms(rows, items, channel, fields, hour, np.array([1000 + 7200]), 0)
    # one click on channel 3: -0.5 * 1 now, -0.5 * 0.5 one half-life later; channel 0 untouched
    np.testing.assert_allclose(now["satiation"], [[-0.5, 0.0]])
    np.testing.assert_allclose(later["satiation"], [[-0.25, 0.0]])


def test_each_click_term_by_hand_and_zero_when_its_weight_is():
    cfg = SimConfig(clickbait_weight=2.0, triple_weight=0.5, shock_size=-1.5,
                    shock_channel="news", shock_day=2, shock_days=1)
    state = MechanismState(cfg, n_users=2, n_items=10, field_weights=np.ones(6))
    rows, items = np.array([0, 1]), np.array([[4, 5], [6, 7]])
    channel = np.array([[0, 2], [0, 3]])
    fields = np.array([[3, 0, 0, 0, 0], [1, 0, 0, 0, 0]])
    hour, t = np.array([7, 20]), np.array([0, 0])
    terms = state.click_terms(rows, items, channel, fields, hour, t, day=2)
    np.testing.assert_allclose(terms["clickbait"], 2.0 * state.clickbait[items])
    want = 0.5 * np.array([[state.triple[3, 1, 0], state.triple[3, 1, 2]],
                           [state.triple[1, 3, 0], state.triple[1, 3, 3]]])
    np.testing.assert_allclose(terms["triple"], want)
    np.testing.assert_allclose(terms["shock"], [[-1.5, 0.0], [-1.5, 0.0]])
    assert not state.click_terms(rows, items, channel, fields, hour, t, day=3)["shock"].any()
    off = MechanismState(SimConfig(), 2, 10, np.ones(6)).click_terms(
        rows, items, channel, fields, hour, t, day=2)
    assert all(not v.any() for v in off.values())


def test_fatigue_lowers_the_return_rate_after_a_single_channel_day_not_after_an_even_one():
    # concentration: one channel 1 - 1/4 = 0.75; an even mix 0; no impressions 0
    assert mechanisms.channel_concentration(np.array([[8.0, 0, 0, 0], [2, 2, 2, 2],
                                                      [0, 0, 0, 0]])).tolist() == [0.75, 0.0, 0.0]
    factors = []
    for weight in (0.0, 1.0, 2.0):
        state = MechanismState(SimConfig(fatigue_weight=weight, satisfaction_memory=0.5), 2, 10,
                               np.ones(6))
        state.day_channel[:] = [[8, 0, 0, 0], [2, 2, 2, 2]]
        state.end_day(np.array([True, True]))
        factors.append(state.rate_factor())
    # F = 0.5 * 0.75 = 0.375 for the single-channel user: exp(-w * 0.375)
    np.testing.assert_allclose([f[0] for f in factors], np.exp(-np.array([0, 1, 2]) * 0.375))
    assert all(f[1] == 1.0 for f in factors)


def test_topic_fatigue_counts_each_shown_items_topic_and_lowers_the_rate_by_its_formula():
    cfg = SimConfig(topic_fatigue_weight=2.0, satisfaction_memory=0.5, n_topics=4)
    # items 0-3 of topic 0, items 4-9 of topics 1, 2, 3, 1, 2, 3
    topics = np.array([0, 0, 0, 0, 1, 2, 3, 1, 2, 3])
    state = MechanismState(cfg, 2, 10, np.ones(6), item_topic=topics)
    no_click = np.zeros((2, 4), bool)
    # user 0 sees four items of topic 0; user 1 one item of each topic
    state.after_page(np.array([0, 1]), np.array([[0, 1, 2, 3], [0, 4, 5, 6]]),
                     np.zeros((2, 4), np.int64), no_click, np.zeros((2, 4)), 0)
    np.testing.assert_array_equal(state.day_topic, [[4, 0, 0, 0], [1, 1, 1, 1]])
    state.end_day(np.array([True, True]))
    # G = 0.5 * (1 - 1/4) = 0.375 for user 0, 0 for user 1; factor exp(-2 G)
    np.testing.assert_allclose(state.topic_fatigue, [0.375, 0.0])
    np.testing.assert_allclose(state.rate_factor(), [np.exp(-0.75), 1.0])
    # a second day without sessions decays G by the memory: 0.1875
    state.start_day()
    state.end_day(np.array([False, False]))
    np.testing.assert_allclose(state.topic_fatigue, [0.1875, 0.0])
    # channel fatigue (every item shown here is channel 0: F = 0.1875 for both) multiplies in
    state.cfg = dataclasses.replace(cfg, fatigue_weight=1.0)
    np.testing.assert_allclose(state.rate_factor(), np.exp([-0.1875 - 0.375, -0.1875]))
    with pytest.raises(ValueError, match="item_topic: expected 10 topics in"):
        MechanismState(cfg, 2, 10, np.ones(6), item_topic=np.full(10, 4))


def test_topic_fatigue_lowers_sessions_under_a_topic_concentrating_policy():
    sessions = []
    for weight in (0.0, 3.0):
        cfg = dataclasses.replace(SMALL, n_days=4, topic_fatigue_weight=weight)
        count = [0]

        def observe(req, slates, fb):
            if req.day >= 1:
                count[0] += int((req.page == 0).sum())

        simulate_shard(cfg, 0, 1, observe=observe)
        sessions.append(count[0])
    assert sessions[1] < 0.9 * sessions[0]


def test_clickbait_share_keeps_u01_on_a_share_of_items_and_zero_elsewhere():
    u = np.random.default_rng([3, 21]).uniform(size=2000)
    every = mechanisms.clickbait_scores(SimConfig(seed=3), 2000)
    np.testing.assert_array_equal(every, u)                      # share 1: the draw of before
    some = mechanisms.clickbait_scores(SimConfig(seed=3, clickbait_share=0.25), 2000)
    np.testing.assert_allclose(some, np.maximum(0.0, (u - 0.75) / 0.25))
    carrying = some > 0
    assert 0.22 < carrying.mean() < 0.28                         # about a quarter of the items
    assert 0.45 < some[carrying].mean() < 0.55                   # each of them U(0, 1)
    with pytest.raises(ValueError, match="--clickbait_share=0.0 must be in"):
        SimConfig(clickbait_share=0.0)


def test_satisfaction_rises_with_completion_and_falls_with_clicked_clickbait():
    cfg = SimConfig(satisfaction_completion=1.0, clickbait_satisfaction=2.0)
    state = MechanismState(cfg, 1, 10, np.ones(6))
    items, channel = np.array([[1, 2]]), np.array([[0, 1]])
    state.after_page(np.array([0]), items, channel, np.array([[True, True]]),
                     np.array([[0.5, 0.25]]), np.array([0]))
    want = (0.75 - 2.0 * state.clickbait[[1, 2]].sum()) / 2        # two pages
    assert state.satisfaction_terms(np.array([2.0]))[0] == pytest.approx(want)


def test_completion_quality_adds_its_weight_times_the_items_n01_score_to_the_completion_logit():
    from data.sim_world import make_world
    from data.simulator import IRecSim, sigmoid
    e = mechanisms.completion_quality_scores(SimConfig(seed=4), 5000)
    np.testing.assert_array_equal(e, np.random.default_rng([4, 23]).standard_normal(5000))
    cfg = dataclasses.replace(SMALL, completion_quality=2.0)
    plain = IRecSim(make_world(SMALL), rng_key=0)
    env = IRecSim(make_world(cfg), rng_key=0)
    req, req_plain = env.reset(np.arange(50)), plain.reset(np.arange(50))
    cand, cand_plain = env.candidate_logits(req), plain.candidate_logits(req_plain)
    np.testing.assert_array_equal(cand["items"], cand_plain["items"])
    logit = np.log(cand_plain["completion"] / (1 - cand_plain["completion"]))
    want = sigmoid(logit + 2.0 * env.mech.quality[cand["items"]])
    np.testing.assert_allclose(cand["completion"], want, rtol=1e-9)
    # the click logit does not see it: clicks now are independent of what they consume
    np.testing.assert_array_equal(cand["z"], cand_plain["z"])


def test_satisfaction_click_weighs_the_click_count_in_the_days_satisfaction():
    from data.sim_world import make_world
    from data.simulator import IRecSim
    out = {}
    for w in (1.0, 0.0):
        env = IRecSim(make_world(dataclasses.replace(SMALL, satisfaction_click=w)), rng_key=0)
        env.reset(np.arange(3))
        env.day_clicks[:] = [4.0, 0.0, 2.0]
        env.day_new_tags[:], env.day_repeats[:] = 0.0, 0.0
        env.day_pages[:] = [2, 1, 0]
        before = env.satisfaction.copy()
        env._end_of_day()
        m = env.cfg.satisfaction_memory
        out[w] = (env.satisfaction - m * before) / (1 - m)          # today's term
    # 4 clicks over 2 pages: 2 per page with the clicks' weight 1, 0 without; the inactive
    # user (no page) gets the reference either way
    assert out[1.0][:2].tolist() == pytest.approx([2.0, 0.0])
    assert out[0.0][:2].tolist() == pytest.approx([0.0, 0.0])
    assert out[1.0][2] == out[0.0][2] == pytest.approx(SMALL.satisfaction_reference)


def _mean_true_ctr(cfg, channel=None, days=None):
    logs, _ = simulate_shard(cfg, 0, 1)
    ctr = []
    for day, log, _ in logs:
        keep = np.ones(len(log), bool) if channel is None else log.channel == channel
        if days is None or day in days:
            ctr.append(log.true_ctr[keep])
    return float(np.concatenate(ctr).mean())


@pytest.mark.parametrize("flag, value, direction", [("clickbait_weight", 1.0, 1),
                                                    ("satiation_weight", 1.0, -1)])
def test_each_click_mechanism_moves_the_true_click_probability_its_way(flag, value, direction):
    base = _mean_true_ctr(SMALL)
    moved = _mean_true_ctr(dataclasses.replace(SMALL, **{flag: value}))
    assert np.sign(round(moved - base, 4)) == direction


def test_a_negative_shock_lowers_its_channels_click_probability_on_its_days_only():
    cfg = dataclasses.replace(SMALL, shock_size=-1.0, shock_channel="short_video", shock_day=1,
                              shock_days=1)
    short = CHANNELS.index("short_video")
    assert _mean_true_ctr(cfg, short, {1}) < _mean_true_ctr(SMALL, short, {1})
    assert _mean_true_ctr(cfg, short, {0}) == _mean_true_ctr(SMALL, short, {0})


def test_bad_mechanism_flags_are_named():
    with pytest.raises(ValueError, match="--shock_channel='tv'"):
        SimConfig(shock_channel="tv")
    with pytest.raises(ValueError, match="--satiation_halflife_h=0"):
        SimConfig(satiation_halflife_h=0)
