"""The myopic and planning oracles of issue 22's return-rate controls (data.oracle_policy)."""
import dataclasses
import types

import numpy as np
import pytest

from data.generate import simulate_shard
from data.oracle_policy import OraclePolicy, greedy_slates
from data.sim_config import SimConfig
from data.sim_world import make_world
from data.simulator import IRecSim

# what greedy_slates reads of a SimConfig, at hand-computable values
CFG = types.SimpleNamespace(list_size=2, repeat_penalty=1.5, repeat_free=0,
                            tag_repeat_penalty=0.4)


def test_greedy_fill_takes_the_best_logit_given_the_items_above():
    z = np.array([[3.0, 2.0, 1.0, 0.5]])
    channel = np.array([[0, 0, 1, 1]])
    no_tags = np.zeros((1, 4, 2), np.int64)
    # slot 0: z 3; slot 1: candidate 1 scores 2 - 1.5 * 1 = 0.5 < candidate 2's 1
    np.testing.assert_array_equal(greedy_slates(z, channel, no_tags, CFG), [[0, 2]])
    # a shared tag costs 0.4: candidate 2 shares tag 7 with candidate 0 -> 0.6 < 1 is still
    # above candidate 1 (0.5); with candidate 3 at 0.9 and no tag, 3 wins (0.9 > 0.6)
    tags = np.array([[[7, 0], [0, 0], [7, 5], [0, 0]]])
    z2 = np.array([[3.0, 2.0, 1.0, 0.9]])
    np.testing.assert_array_equal(greedy_slates(z2, channel, tags, CFG), [[0, 3]])


def test_planning_values_change_the_fill_as_their_formulas_say():
    z = np.array([[3.0, 2.9, 1.0, 0.5]])
    channel = np.array([[0, 1, 2, 3]])
    tags = np.zeros((1, 4, 2), np.int64)
    # a static value: -lambda b with b = (1, 0, 0, 0), lambda 0.5 -> 2.5 < 2.9
    value = -0.5 * np.array([[1.0, 0.0, 0.0, 0.0]])
    np.testing.assert_array_equal(greedy_slates(z, channel, tags, CFG, value), [[1, 0]])
    # fatigue: today 9 impressions of channel 0, 1 of channel 1 -> shares 0.9 and 0.1;
    # lambda 1: 3 - 0.9 = 2.1 < 2.9 - 0.1 = 2.8; after channel 1 is placed its share is 0.2
    # of 11 -> slot 1: 3 - 9/11 = 2.18 > 1 - 0 (channel 2)
    counts = np.array([[9.0, 1.0, 0.0, 0.0]])
    np.testing.assert_array_equal(
        greedy_slates(z, channel, tags, CFG, channel_counts=counts, channel_weight=1.0),
        [[1, 0]])
    # topic fatigue: the same counts per topic; candidates 0 and 1 share topic 0 (share 0.9):
    # slot 0: 3 - 0.9 = 2.1 > 2.9 - 0.9 = 2.0 > 1 - 0.1 -> candidate 0; slot 1 (topic 0 now
    # 10/11): 2.9 - 0.909 = 1.99 > candidate 2's 1 - 1/11 = 0.91
    group = np.array([[0, 0, 1, 2]])
    np.testing.assert_array_equal(
        greedy_slates(z, channel, tags, CFG, channel_counts=counts, channel_weight=1.0,
                      group=group), [[0, 1]])
    # at lambda 3 the topic-1 candidate wins slot 0: 1 - 0.3 = 0.7 > 3 - 2.7 = 0.3
    np.testing.assert_array_equal(
        greedy_slates(z, channel, tags, CFG, channel_counts=counts, channel_weight=3.0,
                      group=group)[0, 0], 2)


def test_candidate_logits_give_the_click_probability_of_a_candidate_at_the_top():
    cfg = dataclasses.replace(SimConfig(n_users=300, n_days=3, test_days=1),
                              clickbait_weight=2.0, satiation_weight=0.7, triple_weight=0.6)
    env = IRecSim(make_world(cfg), rng_key=0)
    req = env.reset(np.arange(100))
    cand = env.candidate_logits(req)
    # a slate whose first item is candidate j: slot 0 has nothing above it
    for j in (0, 57, 399):
        cols = (np.arange(cfg.list_size) + j) % cand["items"].shape[1]
        slates = cand["items"][:, cols]
        p = env.click_probabilities(req, slates)[:, 0]
        np.testing.assert_allclose(p, env._exam[0] / (1 + np.exp(-cand["z"][:, j])), rtol=1e-9)


@pytest.mark.parametrize("mechanism", [None, "clickbait_satisfaction", "fatigue_weight",
                                       "topic_fatigue_weight"])
def test_the_oracles_serve_their_candidates_for_a_whole_period(mechanism):
    cfg = dataclasses.replace(SimConfig(n_users=200, n_days=2, test_days=1),
                              clickbait_weight=2.0, clickbait_satisfaction=1.0,
                              fatigue_weight=1.0, topic_fatigue_weight=1.0)
    policy = OraclePolicy(cfg, mechanism, 1.0 if mechanism else 0.0)
    served = []

    def observe(req, slates, fb):
        if req.day >= 0:
            served.append(np.isin(slates, req.candidates.reshape(len(req), -1)).all())

    simulate_shard(cfg, 0, 1, act=policy, observe=observe, on_env=policy.bind)
    assert served and all(served)
    with pytest.raises(ValueError, match="mechanism must be one of"):
        OraclePolicy(cfg, "novelty")
