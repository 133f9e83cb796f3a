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
        ope.estimate(ope.SlateLog(reward=[[1]], logging=[[1.0]], target=[[1.0]]), "pseudo")
    with pytest.raises(ValueError, match=r"item ids expected in \[0, 3\)"):
        ope.slate_indicator([[0, 3]], 3)
    with pytest.raises(ValueError, match="summing to 1"):
        ope.slate_moments([[0, 1], [1, 0]], [0.5, 0.6], 3)


# --- the pseudo-inverse estimator (Swaminathan et al. 2017) ---------------------------------
# A logging policy that draws each slot independently (repeats allowed), so the per-slot
# propensities are the whole story and PI's closed form applies.
PRODUCT_SLATES = list(itertools.product(range(ITEMS), repeat=K))     # 9 slates
MU_SLOT = np.array([[[0.2, 0.3, 0.5], [0.5, 0.25, 0.25]],            # [x, k, item]
                    [[0.6, 0.2, 0.2], [0.1, 0.3, 0.6]]])
PI_PRODUCT = {x: {s: 1.0 if s == ((0, 2) if x == 0 else (2, 1)) else 0.0
                  for s in PRODUCT_SLATES} for x in range(2)}          # deterministic target


def click_additive_interacting(x, s):
    """slot 1 shows item 1 and takes 80% of slot 2's clicks (it answers the same need): each
    slot's click depends on the other slot's item, the list's sum does not."""
    q = click_independent(x, s)
    moved = 0.8 * q[1] * (s[0] == 1)
    return q + np.array([moved, -moved])


def click_pair_bonus(x, s):
    """a bonus when both slots show the same item: the sum is not additive over slots."""
    return click_independent(x, s) + (0.3 if s[0] == s[1] else 0.0)


def _product_truth(click):
    return sum(P_X[x] * p * click(x, s).sum() for x in range(2)
               for s, p in PI_PRODUCT[x].items())


def _product_expected(estimator, click):
    total = 0.0
    for x in range(2):
        for s in PRODUCT_SLATES:
            mu = np.prod([MU_SLOT[x, k, s[k]] for k in range(K)])
            log = ope.SlateLog(reward=[click(x, s)],
                               logging=[[MU_SLOT[x, k, s[k]] for k in range(K)]],
                               target=[[sum(p for t, p in PI_PRODUCT[x].items() if t[k] == s[k])
                                        for k in range(K)]])
            total += P_X[x] * mu * ope.estimate(log, estimator)
    return total


def test_pi_list_weight_is_the_sum_of_slot_weights_less_k_minus_one_by_hand():
    # slot weights (2, 0) and (4, 1): g = 2 + 0 - 1 = 1 and 4 + 1 - 1 = 4; rewards 1 and 2
    log = ope.SlateLog(reward=[[1, 0], [1, 1]], logging=[[0.5, 0.5], [0.25, 1.0]],
                       target=[[1.0, 0.0], [1.0, 1.0]])
    assert ope.pseudo_inverse_weights(log).tolist() == pytest.approx([1.0, 4.0])
    assert ope.estimate(log, "pi") == pytest.approx((1 * 1 + 2 * 4) / 2)
    # slot terms split -(K - 1) equally: list 1 (1 * (2 - 0.5), 1 * (0 - 0.5))
    assert ope.per_slot_terms(log, "pi")[0].tolist() == pytest.approx([1.5, -0.5])
    assert ope.per_slot_estimate(log, "pi").sum() == pytest.approx(ope.estimate(log, "pi"))
    # clip at 3 clips the slot weight 4: g = 3 + 1 - 1
    assert ope.pseudo_inverse_weights(log, clip=3.0)[1] == pytest.approx(3.0)
    assert ope.estimator_ess(log, "pi") == pytest.approx(25 / 17)
    # a padded list of one real slot: g = w (no constant), reward of the real slot only
    pad = ope.SlateLog(reward=[[1, 7]], logging=[[0.5, 0.1]], target=[[1.0, 1.0]],
                       mask=[[1, 0]])
    assert ope.estimate(pad, "pi") == pytest.approx(2.0)


def test_pi_is_unbiased_for_additive_list_rewards_where_iips_is_not():
    click = click_additive_interacting
    assert _product_expected("pi", click) == pytest.approx(_product_truth(click), rel=1e-12)
    assert abs(_product_expected("iips", click) - _product_truth(click)) > 0.01
    # and where IIPS's own assumption holds, both are unbiased
    for estimator in ("pi", "iips", "ips"):
        assert _product_expected(estimator, click_independent) == pytest.approx(
            _product_truth(click_independent), rel=1e-12)


def test_pi_is_biased_when_the_list_reward_is_not_additive_and_ips_is_not():
    bias = _product_expected("pi", click_pair_bonus) - _product_truth(click_pair_bonus)
    assert abs(bias) > 0.01, bias
    assert _product_expected("ips", click_pair_bonus) == pytest.approx(
        _product_truth(click_pair_bonus), rel=1e-12)


def test_pi_closed_form_equals_the_pseudo_inverse_of_gamma_for_independent_slots():
    rng = np.random.default_rng(0)
    for x in range(2):
        probs = np.array([np.prod([MU_SLOT[x, k, s[k]] for k in range(K)])
                          for s in PRODUCT_SLATES])
        _, gamma = ope.slate_moments(PRODUCT_SLATES, probs, ITEMS)
        q_pi, _ = ope.slate_moments(PRODUCT_SLATES, [PI_PRODUCT[x][s] for s in PRODUCT_SLATES],
                                    ITEMS)
        reward = rng.uniform(size=len(PRODUCT_SLATES))
        general = ope.pseudo_inverse_terms(reward, PRODUCT_SLATES, q_pi, gamma)
        log = ope.SlateLog(reward=np.stack([reward, np.zeros_like(reward)], 1),
                           logging=[[MU_SLOT[x, k, s[k]] for k in range(K)]
                                    for s in PRODUCT_SLATES],
                           target=[[q_pi[k * ITEMS + s[k]] for k in range(K)]
                                   for s in PRODUCT_SLATES])
        assert general == pytest.approx(reward * ope.pseudo_inverse_weights(log), abs=1e-9)


def test_pi_with_the_logging_gamma_is_unbiased_under_the_no_repeat_rule_and_its_product_form_not():
    # the logging policy MU never repeats an item, so the slots are coupled: the closed form
    # (per-slot propensities) is biased, the general form with MU's Gamma is not
    def additive(x, s):
        return click_additive_interacting(x, s)
    want = truth(additive)
    general = 0.0
    for x in range(2):
        probs = np.array([MU[x][s] for s in SLATES])
        _, gamma = ope.slate_moments(SLATES, probs, ITEMS)
        q_pi, _ = ope.slate_moments(SLATES, [PI[x][s] for s in SLATES], ITEMS)
        rewards = np.array([additive(x, s).sum() for s in SLATES])
        general += P_X[x] * (probs * ope.pseudo_inverse_terms(rewards, SLATES, q_pi,
                                                              gamma)).sum()
    assert general == pytest.approx(want, rel=1e-9)
    bias = expected_estimate("pi", additive, exact_prefix=False) - want
    assert abs(bias) > 0.01, bias
