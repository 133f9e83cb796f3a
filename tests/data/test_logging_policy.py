import dataclasses

import numpy as np
import pytest

from data.logging_policy import (WEIGHT_SCALE, LoggingPolicy, mixture_slot_probabilities,
                                 slot_probabilities)
from data.sim_config import SimConfig
from data.sim_world import make_world
from data.simulator import IRecSim

CFG = SimConfig(n_users=300, n_days=3, test_days=1)


@pytest.fixture(scope="module")
def setup():
    world = make_world(CFG)
    env = IRecSim(world, rng_key=0)
    req = env.reset(np.arange(300))
    policy = LoggingPolicy(CFG, world)
    rng = np.random.default_rng(1)
    policy.model.weights = rng.normal(size=policy.model.n_features)  # a non-trivial ranking
    return world, req, policy


def test_slot_probabilities_hand_computed():
    used = np.array([[True, False, False, False]])
    probs = slot_probabilities(used, np.array([2]), 0.3)
    np.testing.assert_allclose(probs, [[0.0, 0.1, 0.8, 0.1]])


@pytest.mark.parametrize("epsilon", [0.0, 0.1, 0.5, 1.0])
def test_logged_propensity_is_the_policy_probability_and_sums_to_one(setup, epsilon):
    _, req, policy = setup
    trace = []
    slates, props = policy.act(req.user_fields, req.candidates, req.candidate_age, epsilon,
                               np.random.default_rng(0), trace=trace)
    assert len(trace) == CFG.list_size
    rows = np.arange(len(req))
    for slot, (used, greedy, choice) in enumerate(trace):
        dist = slot_probabilities(used, greedy, epsilon)
        np.testing.assert_allclose(dist.sum(1), 1.0)
        np.testing.assert_allclose(props[:, slot], dist[rows, choice])
        assert not used[rows, choice].any()  # never repeats an item
    assert len(np.unique(slates, axis=1)) == len(slates) or True
    assert all(len(set(row)) == CFG.list_size for row in slates)


def test_exploration_frequency_matches_the_distribution(setup):
    """Empirical choice frequencies of one state match pi (Monte Carlo, fixed seed)."""
    _, req, policy = setup
    one = slice(0, 1)
    counts = {}
    trials = 4000
    rng = np.random.default_rng(5)
    for _ in range(trials):
        trace = []
        policy.act(req.user_fields[one], req.candidates[one], req.candidate_age[one], 0.5, rng,
                   trace=trace)
        used, greedy, choice = trace[0]
        counts[int(choice[0])] = counts.get(int(choice[0]), 0) + 1
    dist = slot_probabilities(used, greedy, 0.5)[0]
    assert counts[int(greedy[0])] / trials == pytest.approx(dist[greedy[0]], abs=0.03)
    others = trials - counts[int(greedy[0])]
    assert others / trials == pytest.approx(1 - dist[greedy[0]], abs=0.03)


def test_greedy_page_respects_quotas_and_orders_by_predicted_ctr(setup):
    world, req, policy = setup
    slates, props = policy.act(req.user_fields, req.candidates, req.candidate_age, 0.0,
                               np.random.default_rng(0))
    np.testing.assert_allclose(props, 1.0)
    quota = np.bincount(CFG.quota_channels(), minlength=4)
    for row in slates:
        np.testing.assert_array_equal(np.bincount(world.items.channel[row], minlength=4), quota)
    order = policy.greedy_order(req.user_fields, req.candidates, req.candidate_age)
    np.testing.assert_array_equal(
        slates, np.take_along_axis(req.candidates.reshape(len(req), -1), order, 1))


def test_without_quotas_the_page_is_the_top_of_all_channels_by_the_full_logit(setup):
    world, req, policy = setup
    slates, _ = policy.act(req.user_fields, req.candidates, req.candidate_age, 0.0,
                           np.random.default_rng(0), quotas=False)
    n, c, k = req.candidates.shape
    # the full logit of every candidate: its within-channel score plus its channel's score
    logit = (policy.model.rank_scores(req.user_fields, req.candidates, req.candidate_age)
             + policy.model.channel_scores(req.user_fields)[:, :, None]).reshape(n, -1)
    top = np.argsort(-logit, axis=1, kind="stable")[:, :CFG.list_size]
    np.testing.assert_array_equal(
        slates, np.take_along_axis(req.candidates.reshape(n, -1), top, 1))
    counts = np.stack([np.bincount(world.items.channel[r], minlength=4) for r in slates])
    quota = np.bincount(CFG.quota_channels(), minlength=4)
    assert (counts != quota).any(axis=1).mean() > 0.5   # most pages leave the quota mix


def test_uniform_policy_propensities():
    world = make_world(CFG)
    req = IRecSim(world).reset(np.arange(100))
    _, props = LoggingPolicy(CFG, world).act(req.user_fields, req.candidates, req.candidate_age,
                                             1.0, np.random.default_rng(0))
    n_cand = 4 * CFG.candidates_per_channel
    np.testing.assert_allclose(props, np.broadcast_to(1.0 / (n_cand - np.arange(10)), props.shape))


def test_lr_learns_a_planted_signal():
    world = make_world(CFG)
    policy = LoggingPolicy(CFG, world)
    rng = np.random.default_rng(0)
    n = 20_000
    items = rng.integers(0, len(world.items), n)
    fields = world.users.fields[rng.integers(0, CFG.n_users, n)]
    good = world.items.fields[items, 0] == 4  # top observed-quality bucket clicks more
    clicked = (rng.uniform(size=n) < np.where(good, 0.4, 0.05)).astype(np.int64)
    policy.model.fit(fields, items, np.zeros(n, np.int64), rng.integers(0, 10, n), clicked)
    w = policy.model.weights
    q = policy.model.item_offset[1]
    assert w[q + 4] > w[q:q + 4].max() + 1.0
    scaled = w * WEIGHT_SCALE  # on the 2^-16 grid that makes every CPU's weights the same
    np.testing.assert_array_equal(scaled, np.rint(scaled))
    assert np.count_nonzero(w) > 10


def test_rank_scores_hand_computed(setup):
    """logit up to the (user, channel) part = w[quality] + w[duration] + w[age] + sum over
    profile fields f of w[f x topic of the item's first tag]."""
    world, req, policy = setup
    m = policy.model
    w, items = m.weights, world.items
    scores = m.rank_scores(req.user_fields, req.candidates, req.candidate_age)
    for r, c, j in [(0, 0, 0), (5, 2, 17), (len(req) - 1, 3, 199)]:
        i, age = req.candidates[r, c, j], req.candidate_age[r, c, j]
        topic = max(world.tag_topic[items.tags[i, 0]], 0)
        expected = (w[m.item_offset[1] + items.fields[i, 0]]
                    + w[m.item_offset[2] + items.fields[i, 1]] + w[m.item_offset[3] + age]
                    + sum(w[m.cross_topic_offset + (v + m.field_offset[f]) * m.n_topics + topic]
                          for f, v in enumerate(req.user_fields[r])))
        assert scores[r, c, j] == pytest.approx(expected, rel=1e-12)


def test_greedy_order_does_not_depend_on_the_block_size(setup):
    _, req, policy = setup
    whole = policy.greedy_order(req.user_fields, req.candidates, req.candidate_age, block=10**6)
    for block in (1, 7, 256):
        np.testing.assert_array_equal(
            policy.greedy_order(req.user_fields, req.candidates, req.candidate_age, block=block),
            whole)
    none = policy.greedy_order(req.user_fields[:0], req.candidates[:0], req.candidate_age[:0])
    assert none.shape == (0, CFG.list_size)


QUOTAS = "3,3,2,2;2,2,3,3;4,2,2,2;1,1,4,4"


def test_mixture_slot_probabilities_by_hand():
    # two quotas, weights 3:1; greedy 2 and 3; eps 0.4 over 3 unused: 0.4 / 3 each
    used = np.array([[True, False, False, False]])
    probs = mixture_slot_probabilities(used, np.array([[2, 3]]), np.array([[3.0, 1.0]]), 0.4)
    e = 0.4 / 3
    np.testing.assert_allclose(probs, [[0.0, e, e + 0.75 * 0.6, e + 0.25 * 0.6]])


@pytest.mark.parametrize("epsilon", [0.0, 0.1, 1.0])
def test_randomised_quota_propensities_are_the_mixture_and_sum_to_one(setup, epsilon):
    world, req, _ = setup
    cfg = dataclasses.replace(CFG, quota_choices=QUOTAS)
    policy = LoggingPolicy(cfg, world)
    policy.model.weights = np.random.default_rng(1).normal(size=policy.model.n_features)
    trace = []
    slates, props = policy.act(req.user_fields, req.candidates, req.candidate_age, epsilon,
                               np.random.default_rng(0), trace=trace)
    rows = np.arange(len(req))
    for slot, (used, greedy, weights, choice) in enumerate(trace):
        dist = mixture_slot_probabilities(used, greedy, weights, epsilon)
        np.testing.assert_allclose(dist.sum(1), 1.0)
        np.testing.assert_allclose(props[:, slot], dist[rows, choice])
    assert (props > 0).all() and (np.sort(slates, 1)[:, 1:] != np.sort(slates, 1)[:, :-1]).all()
    # pages differ in their channel counts, as the quotas say
    counts = {tuple(np.bincount(world.items.channel[s], minlength=4)) for s in slates}
    assert len(counts) > 1


def test_a_randomised_quotas_first_slot_frequency_matches_its_propensity(setup):
    """Without exploration, slot 0 shows the top item of the drawn quota: over many draws
    for one request, each item's frequency approaches its logged propensity."""
    world, req, _ = setup
    cfg = dataclasses.replace(CFG, quota_choices=QUOTAS)
    policy = LoggingPolicy(cfg, world)
    policy.model.weights = np.random.default_rng(1).normal(size=policy.model.n_features)
    one = slice(0, 1)
    seen, logged = {}, {}
    for seed in range(400):
        slates, props = policy.act(req.user_fields[one], req.candidates[one],
                                   req.candidate_age[one], 0.0, np.random.default_rng(seed))
        seen[slates[0, 0]] = seen.get(slates[0, 0], 0) + 1
        logged[slates[0, 0]] = props[0, 0]
    for item, count in seen.items():
        assert abs(count / 400 - logged[item]) < 0.08


def test_bad_quota_choices_are_named():
    with pytest.raises(ValueError, match="--quota_choices: '3,3,2' needs 4 counts"):
        SimConfig(quota_choices="3,3,2,2;3,3,2")
    with pytest.raises(ValueError, match="--quota_choices: 'a,b' is not 4 integers"):
        SimConfig(quota_choices="a,b")
