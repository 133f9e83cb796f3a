"""Off-policy estimators (hrl_rec/ope.py): exact expectations on a tiny slate problem, where
every estimator's bias is computed by enumerating every slate the logging policy can show."""
import itertools

import numpy as np
import pytest

from hrl_rec import ope

ITEMS, K = 3, 2
P_X = np.array([0.4, 0.6])                    # two contexts
SLATES = list(itertools.permutations(range(ITEMS), K))   # 6 ordered slates, no repeats
BASE = np.array([[0.5, 0.2, 0.1], [0.1, 0.3, 0.6]])     # attractiveness [x, item]
EXAM = np.array([1.0, 0.6])                              # examination by slot


def _policy(first, second_scale):
    """A sequential policy: slot 1 from `first[x]`, slot 2 from the rest in proportion to
    `second_scale[x]`; returns {x: {slate: probability}}."""
    out = {}
    for x in range(2):
        probs = {}
        for a1, a2 in SLATES:
            rest = [a for a in range(ITEMS) if a != a1]
            p2 = second_scale[x][a2] / sum(second_scale[x][a] for a in rest)
            probs[(a1, a2)] = first[x][a1] * p2
        out[x] = probs
    return out


MU = _policy([[0.2, 0.3, 0.5], [0.6, 0.2, 0.2]], [[1, 1, 1], [3, 2, 1]])
PI = _policy([[0.7, 0.2, 0.1], [0.05, 0.15, 0.8]], [[3, 1, 6], [1, 1, 8]])


def _marginal(policy, x, k, a):
    return sum(p for s, p in policy[x].items() if s[k] == a)


def _prefix(policy, x, s, k):
    return sum(p for t, p in policy[x].items() if t[:k + 1] == s[:k + 1])


def click_independent(x, s):
    return np.array([BASE[x, s[k]] * EXAM[k] for k in range(K)])


def click_cascade(x, s):
    """slot 2's click falls when slot 1 shows item 0 (it satisfied the user)."""
    q = click_independent(x, s)
    q[1] *= 0.3 if s[0] == 0 else 1.0
    return q


def click_anticipating(x, s):
    """slot 1's click depends on the item below it (the user looks at both first)."""
    q = click_independent(x, s)
    q[0] *= 1.9 if s[1] == 2 else 0.1
    return q


def truth(click):
    return sum(P_X[x] * p * click(x, s).sum() for x in range(2) for s, p in PI[x].items())


def _log_of(x, s, click, exact_prefix=True, qhat=None):
    kw = {}
    if exact_prefix:
        kw = dict(logging_prefix=[[_prefix(MU, x, s, k) for k in range(K)]],
                  target_prefix=[[_prefix(PI, x, s, k) for k in range(K)]])
    if qhat is not None:
        kw["q_logged"] = [[qhat(x, s[k], k) for k in range(K)]]
        kw["q_target"] = [[sum(_marginal(PI, x, k, a) * qhat(x, a, k) for a in range(ITEMS))
                           for k in range(K)]]
    return ope.SlateLog(reward=[click(x, s)],
                        logging=[[_marginal(MU, x, k, s[k]) for k in range(K)]],
                        target=[[_marginal(PI, x, k, s[k]) for k in range(K)]], **kw)


def expected_estimate(estimator, click, **kw):
    """E_mu[estimate] of a one-list log, exactly (the estimators are linear in the clicks, so
    the click probabilities stand in for the Bernoulli clicks)."""
    return sum(P_X[x] * p * ope.estimate(_log_of(x, s, click, **kw), estimator)
               for x in range(2) for s, p in MU[x].items())


@pytest.mark.parametrize("click", [click_independent, click_cascade, click_anticipating])
def test_ips_with_the_slate_propensity_is_unbiased_whatever_the_clicks_do(click):
    assert expected_estimate("ips", click) == pytest.approx(truth(click), rel=1e-12)


def test_iips_is_unbiased_for_item_position_clicks_and_biased_when_clicks_interact():
    assert expected_estimate("iips", click_independent) == pytest.approx(
        truth(click_independent), rel=1e-12)
    bias = expected_estimate("iips", click_cascade) - truth(click_cascade)
    assert abs(bias) > 0.01, bias


def test_rips_is_unbiased_for_a_cascade_and_biased_when_a_click_depends_on_a_later_slot():
    for click in (click_independent, click_cascade):
        assert expected_estimate("rips", click) == pytest.approx(truth(click), rel=1e-12)
    bias = expected_estimate("rips", click_anticipating) - truth(click_anticipating)
    assert abs(bias) > 0.01, bias


def test_dr_is_unbiased_with_a_wrong_click_model_when_clicks_are_item_position():
    def wrong(x, a, k):
        return 0.25 + 0.1 * a - 0.05 * k
    assert expected_estimate("dr", click_independent, qhat=wrong) == pytest.approx(
        truth(click_independent), rel=1e-12)

    def exact(x, a, k):
        return BASE[x, a] * EXAM[k]
    # with the true click model every list's DR term is the truth itself: no variance
    values = [ope.estimate(_log_of(x, s, click_independent, qhat=exact), "dr")
              for x in range(2) for s in MU[x]]
    for x in range(2):
        want = sum(p * click_independent(x, s).sum() for s, p in PI[x].items())
        got = [ope.estimate(_log_of(x, s, click_independent, qhat=exact), "dr") for s in MU[x]]
        assert got == pytest.approx([want] * len(got), rel=1e-12)
    assert len(values) == 12


def test_per_slot_products_are_biased_where_the_no_repeat_rule_couples_the_slots():
    # without the prefix probabilities, IPS multiplies the slots' marginals: exact only for
    # slots drawn independently, and the logging policy never repeats an item
    bias = expected_estimate("ips", click_independent, exact_prefix=False) - truth(
        click_independent)
    assert abs(bias) > 0.01, bias


def test_snips_clipping_and_ess_on_a_hand_built_log():
    # three lists of two slots; per-slot weights (2, 1), (0, 4), (1, 1): slate weights 2, 0, 1
    log = ope.SlateLog(reward=[[1, 0], [1, 1], [0, 1]],
                       logging=[[0.25, 0.5], [0.5, 0.25], [0.5, 0.5]],
                       target=[[0.5, 0.5], [0.0, 1.0], [0.5, 0.5]])
    assert ope.estimate(log, "ips") == pytest.approx((2 * 1 + 0 * 2 + 1 * 1) / 3)
    assert ope.estimate(log, "snips") == pytest.approx((2 * 1 + 0 + 1 * 1) / 3)
    assert ope.estimate(log, "iips") == pytest.approx((2 * 1 + 4 * 1 + 1 * 1) / 3)
    # RIPS: prefix weights (2, 2), (0, 0), (1, 1)
    assert ope.estimate(log, "rips") == pytest.approx((2 + 0 + 1) / 3)
    # clip at 1.5: per-slot (1.5, 1), (0, 1.5), (1, 1)
    assert ope.estimate(log, "iips", clip=1.5) == pytest.approx((1.5 + 1.5 + 1) / 3)
    assert ope.per_slot_estimate(log, "iips").tolist() == pytest.approx([2 / 3, 5 / 3])
    # ESS of slate weights (2, 0, 1): 9 / 5
    assert ope.estimator_ess(log, "ips") == pytest.approx(9 / 5)
    assert ope.effective_sample_size([1, 1, 1, 1]) == pytest.approx(4.0)
    assert ope.effective_sample_size([0, 0]) == 0.0


def test_padding_slots_count_neither_in_rewards_nor_in_weights():
    log = ope.SlateLog(reward=[[1, 1], [0, 5]], logging=[[0.5, 0.5], [0.5, 0.0]],
                       target=[[1.0, 1.0], [0.5, 0.0]], mask=[[1, 1], [1, 0]])
    # list 1: weights (2, 2) -> slate 4, reward 2; list 2: one slot, weight 1, reward 0
    assert ope.estimate(log, "ips") == pytest.approx((4 * 2 + 1 * 0) / 2)
    assert ope.estimate(log, "iips") == pytest.approx((2 + 2 + 0) / 2)


def test_bootstrap_interval_is_seeded_and_brackets_the_estimate():
    rng = np.random.default_rng(0)
    n = 400
    log = ope.SlateLog(reward=rng.binomial(1, 0.3, (n, 3)), logging=np.full((n, 3), 0.5),
                       target=rng.choice([0.0, 1.0], (n, 3)))
    a = ope.bootstrap(log, "iips", samples=200, seed=3)
    b = ope.bootstrap(log, "iips", samples=200, seed=3)
    assert (a.low, a.high) == (b.low, b.high)
    assert a.low < a.value < a.high and a.n == n
    assert a.value == pytest.approx(ope.estimate(log, "iips"))
    # equal weights (target = logging): the interval is about the mean's +-1.96 se
    same = ope.SlateLog(reward=log.reward, logging=log.logging, target=log.logging)
    e = ope.bootstrap(same, "ips", samples=2000, seed=0)
    se = log.reward.sum(1).std() / np.sqrt(n)
    assert e.high - e.low == pytest.approx(2 * 1.96 * se, rel=0.15)
    assert e.ess == pytest.approx(n)


def test_bad_logs_are_refused_naming_the_field_and_the_list():
    with pytest.raises(ValueError, match=r"logging propensity of list 1 slot 0 is 0.0"):
        ope.SlateLog(reward=[[1], [0]], logging=[[0.5], [0.0]], target=[[1.0], [1.0]])
    with pytest.raises(ValueError, match=r"SlateLog.target: list 0 slot 1 is 1.5"):
        ope.SlateLog(reward=[[1, 0]], logging=[[0.5, 0.5]], target=[[1.0, 1.5]])
    with pytest.raises(ValueError, match=r"SlateLog.logging: expected shape \(1, 2\)"):
        ope.SlateLog(reward=[[1, 0]], logging=[[0.5]], target=[[1.0, 1.0]])
    with pytest.raises(ValueError, match="needs SlateLog.q_logged"):
        ope.estimate(ope.SlateLog(reward=[[1]], logging=[[1.0]], target=[[1.0]]), "dr")
    with pytest.raises(ValueError, match="expected one of"):
        ope.estimate(ope.SlateLog(reward=[[1]], logging=[[1.0]], target=[[1.0]]), "pi")
