"""Slate generation: constraints, exploration propensities, and the incremental in-graph loop
against a full recomputation of every state."""
import numpy as np
import pytest
import tensorflow as tf

from hrl_rec.policy import SlatePolicy, request_from_lists
from tests.hrl_rec.helpers import list_batch, tiny_model

M = 4


def _request(seed=0, b=3):
    return request_from_lists(list_batch(b=b, seed=seed, k=3), M)


@pytest.mark.parametrize("epsilon", [0.0, 0.5])
def test_slates_obey_channel_constraint_and_never_repeat(epsilon):
    model = tiny_model()
    policy = SlatePolicy(model, 10, epsilon=epsilon, seed=1)
    request = _request()
    out = {k: v.numpy() for k, v in policy(request).items()}
    cand_mask = request["cand_mask"].numpy()
    cand_channel = request["cand_channel"].numpy()
    for b in range(3):
        idx = out["index"][b]
        assert len(set(out["item_id"][b])) == 10                    # never repeats an item
        assert cand_mask[b, idx].all()                              # only real candidates
        np.testing.assert_array_equal(out["channel"][b], cand_channel[b, idx])
        np.testing.assert_array_equal(out["item_id"][b], request["cand_item_id"].numpy()[b, idx])
        greedy = ~out["explored"][b]
        np.testing.assert_array_equal(out["channel"][b][greedy], out["lra_channel"][b][greedy])
    p = out["propensity"]
    assert ((p > 0) & (p <= 1)).all()
    if epsilon == 0:
        np.testing.assert_array_equal(p, 1.0)
        assert not out["explored"].any()
    else:
        assert out["explored"].any() and not out["explored"].all()
        # explored slots: epsilon / R (R = 22 candidates minus those placed), or more if the
        # draw hit the greedy item
        remaining = 22 - np.arange(10)
        explored = out["explored"]
        assert (p[explored] >= (0.5 / np.tile(remaining, (3, 1)))[explored] - 1e-6).all()


def test_masked_candidates_are_never_shown_and_exhaustion_gives_minus_one():
    model = tiny_model()
    request = dict(_request())
    mask = np.zeros(request["cand_mask"].shape, np.int64)
    mask[:, :8] = 1                               # 8 candidates for 10 slots
    request["cand_mask"] = tf.constant(mask)
    out = SlatePolicy(model, 10)(request)
    idx, items = out["index"].numpy(), out["item_id"].numpy()
    assert (idx[:, :8] < 8).all()
    assert (items[:, 8:] == -1).all()


def _click_probability(model, a, d):
    """Eq. 16 by hand: sigmoid(w . [a; d] + b + a^T W d) for a [B, k_a], d [B, N, k] -> [B, N]."""
    click = model.click
    w, k_a = click.w.numpy(), a.shape[-1]
    logit = (a @ w[:k_a])[:, None] + d @ w[k_a:] + click.b.numpy()
    if click.interaction:
        logit += np.einsum("bi,ij,bnj->bn", a, click.w_ad.numpy(), d)
    return 1 / (1 + np.exp(-logit))


def _reference_slate(model, request, item_score="cosine", nearest_k=10):
    """Every state recomputed from the full window (model.lra / model.hra on all positions);
    -> (picked candidate indices [B, S], f of Eq. 16 at each pick [B, S])."""
    s, m = 10, M
    window = {k: tf.concat([request[f"hist_{k}"], tf.zeros_like(tf.repeat(
        request[f"hist_{k}"][:, :1], s, 1))], 1).numpy()
        for k in ("item_id", "channel", "slot", "item_fields", "tags", "context", "feedback",
                  "mask")}
    d = model.items({k: request[f"cand_{k}"] for k in ("item_id", "channel", "item_fields",
                                                      "tags", "context")}).numpy()
    dn = d / np.linalg.norm(d, axis=-1, keepdims=True)
    avail = request["cand_mask"].numpy().astype(bool)
    cand_channel = request["cand_channel"].numpy()
    picks, f_picked = [], []
    for t in range(s):
        w = {k: tf.constant(v) for k, v in window.items()}
        w["user_id"], w["user_fields"] = request["user_id"], request["user_fields"]
        a_l = model.lra.actor(model.lra(w)[:, t]).numpy()
        cos_l = np.einsum("bk,bnk->bn", a_l / np.linalg.norm(a_l, axis=-1, keepdims=True), dn)
        c = cand_channel[np.arange(len(a_l)), np.where(avail, cos_l, -3).argmax(1)]
        constraint = tf.constant(np.repeat(c[:, None], s + 1, 1))
        a_h = model.hra.actor(model.hra(w, constraint)[:, t]).numpy()
        cos_h = np.einsum("bk,bnk->bn", a_h / np.linalg.norm(a_h, axis=-1, keepdims=True), dn)
        f = _click_probability(model, np.concatenate([a_l, a_h], -1), d)
        score = cos_h if item_score == "cosine" else f
        allowed = avail & (cand_channel == c[:, None])
        if item_score.startswith("wolpertinger"):   # the k nearest by cosine, then Q or f
            if item_score == "wolpertinger_q":
                s_h = model.hra(w, constraint)[:, t]
                score = model.hra.q(np.repeat(s_h[:, None], d.shape[1], 1), d).numpy()
            top = np.argsort(-np.where(allowed, cos_h, -3), axis=1, kind="stable")[:, :nearest_k]
            top_score = np.where(np.take_along_axis(allowed, top, 1),
                                 np.take_along_axis(score, top, 1), -3)
            pick = np.take_along_axis(top, top_score.argmax(1)[:, None], 1)[:, 0]  # ties: nearer
        else:
            pick = np.where(allowed, score, -3).argmax(1)
        rows = np.arange(len(pick))
        picks.append(pick)
        f_picked.append(f[rows, pick])
        ids = request["cand_item_id"].numpy()
        avail &= ids != ids[rows, pick][:, None]
        for k in ("item_id", "channel", "item_fields", "tags", "context"):
            window[k][:, m + t] = request[f"cand_{k}"].numpy()[rows, pick]
        window["slot"][:, m + t] = t
        window["mask"][:, m + t] = 1
    return np.stack(picks, 1), np.stack(f_picked, 1)


@pytest.mark.parametrize("options", [dict(state_window="sliding"), dict(state_window="prefix"),
                                     dict(state_encoder_gru=False),
                                     dict(field_self_attention=False)])
def test_incremental_policy_matches_full_recomputation(options):
    model = tiny_model(**options)
    request = _request(seed=4)
    # eager: the code the compiled policy traces (other tests run it compiled), without the
    # seconds of tracing a 10-slot loop of two agents for each option
    out = SlatePolicy(model, 10).slate(request)
    np.testing.assert_array_equal(out["index"].numpy(), _reference_slate(model, request)[0])


def test_click_scoring_picks_the_item_of_highest_f_in_the_channel():
    model = tiny_model(state_window="prefix", click_interaction=True)
    model.click.w_ad.assign(np.random.default_rng(0).normal(size=model.click.w_ad.shape))
    request = _request(seed=4)
    picks, f = _reference_slate(model, request, item_score="click")
    out = SlatePolicy(model, 10, item_score="click").slate(request)     # eager
    np.testing.assert_array_equal(out["index"].numpy(), picks)
    np.testing.assert_allclose(out["ctr"].numpy(), f, rtol=1e-5)   # the reported ctr is f
    assert (picks != _reference_slate(model, request)[0]).any()   # the two scores differ here


def test_a_position_biased_click_model_serves_with_the_slot_bias_in_ctr():
    model = tiny_model(click_position_bias=True)
    model.click.b_slot.assign(np.linspace(-1.0, 1.0, 10))
    request = _request(seed=4)
    picks, f = _reference_slate(model, request, item_score="click")
    out = SlatePolicy(model, 10, item_score="click").slate(request)     # eager
    np.testing.assert_array_equal(out["index"].numpy(), picks)   # b_k shifts every item alike
    # f by hand plus slot t's bias b_t, as Eq. 16 with the position term gives it
    logit = np.log(f / (1 - f)) + np.linspace(-1.0, 1.0, 10)
    np.testing.assert_allclose(out["ctr"].numpy(), 1 / (1 + np.exp(-logit)), rtol=1e-5)


def test_wolpertinger_picks_by_q_or_f_among_the_k_nearest():
    model = tiny_model(state_window="prefix", click_interaction=True, critic_form="bilinear",
                       critic_direction=True)
    model.click.w_ad.assign(np.random.default_rng(0).normal(size=model.click.w_ad.shape))
    model.hra.critics[0].bias.assign(5.0)   # Q above the ReLU's zero, so its ranking shows
    request = _request(seed=4)
    nearest = _reference_slate(model, request)[0]
    for item_score in ("wolpertinger_q", "wolpertinger_f"):
        picks, _ = _reference_slate(model, request, item_score, 3)
        out = SlatePolicy(model, 10, item_score=item_score, wolpertinger_k=3).slate(request)
        np.testing.assert_array_equal(out["index"].numpy(), picks)
        assert (picks != nearest).any()   # not the nearest item
    # k = 1 is the nearest item (Sec. 3.5); k = every candidate is the best f of the channel
    one = SlatePolicy(model, 10, item_score="wolpertinger_f", wolpertinger_k=1)
    np.testing.assert_array_equal(one.slate(request)["index"].numpy(), nearest)
    every = SlatePolicy(model, 10, item_score="wolpertinger_f", wolpertinger_k=1000)
    np.testing.assert_array_equal(every.slate(request)["index"].numpy(),
                                  _reference_slate(model, request, "click")[0])


def test_epsilon_and_item_score_are_checked():
    with pytest.raises(ValueError, match="epsilon must be in"):
        SlatePolicy(tiny_model(), 10, epsilon=1.5)
    with pytest.raises(ValueError, match=r"item_score must be one of \('cosine', 'click', "
                                         r"'wolpertinger_q', 'wolpertinger_f'\), got 'ctr'"):
        SlatePolicy(tiny_model(), 10, item_score="ctr")
    with pytest.raises(ValueError, match="wolpertinger_k must be >= 1, got 0"):
        SlatePolicy(tiny_model(), 10, item_score="wolpertinger_q", wolpertinger_k=0)


def _events(request, lo=0, hi=M, order=None):
    """History positions lo..hi of a raw request as update_state's events (event_id = the
    position), optionally permuted within the block."""
    events = {f"event_{k}": request[f"hist_{k}"][:, lo:hi] for k in (
        "item_id", "channel", "slot", "item_fields", "tags", "context", "feedback", "mask")}
    b = request["user_id"].shape[0]
    events["event_id"] = tf.tile(tf.range(lo, hi, dtype=tf.int64)[None], [b, 1])
    if order is not None:
        events = {k: tf.gather(v, order, axis=1) for k, v in events.items()}
    return events


def _state_from_history(policy, request, blocks=((0, M),)):
    state = policy.initial_state(request["user_id"], request["user_fields"])
    for lo, hi in blocks:
        state = policy.update_state(state, request["user_id"], request["user_fields"],
                                    _events(request, lo, hi))
    return state


def test_cached_state_slates_equal_raw_history_slates():
    model = tiny_model(state_window="prefix")
    policy = SlatePolicy(model, 10)
    request = _request(seed=4)
    raw = policy.slate(request)                               # eager: no tracing cost
    candidates = {k: v for k, v in request.items() if not k.startswith("hist_")}
    # the history in one update, in two, and in shuffled order (event ids give the order)
    for blocks in (((0, M),), ((0, 1), (1, M))):
        cached = policy.slate_from_state(_state_from_history(policy, request, blocks),
                                         candidates)
        np.testing.assert_array_equal(cached["index"].numpy(), raw["index"].numpy())
        np.testing.assert_allclose(cached["score"].numpy(), raw["score"].numpy(), atol=1e-5)
        np.testing.assert_allclose(cached["ctr"].numpy(), raw["ctr"].numpy(), atol=1e-5)
    state = policy.initial_state(request["user_id"], request["user_fields"])
    shuffled = policy.update_state(state, request["user_id"], request["user_fields"],
                                   _events(request, order=[2, 0, 3, 1]))
    in_order = _state_from_history(policy, request)
    for k in in_order:
        np.testing.assert_allclose(shuffled[k].numpy(), in_order[k].numpy(), atol=1e-6)


def test_a_state_update_is_idempotent_for_already_seen_behaviours():
    model = tiny_model(state_window="prefix")
    policy = SlatePolicy(model, 10)
    request = _request(seed=5)
    state = _state_from_history(policy, request)
    assert state["last_event_id"].numpy().tolist() == [M - 1] * 3
    again = policy.update_state(state, request["user_id"], request["user_fields"],
                                _events(request))           # the same behaviours replayed
    for k in state:
        np.testing.assert_array_equal(again[k].numpy(), state[k].numpy())
    # a block holding seen and new behaviours applies the new ones only
    partial = _state_from_history(policy, request, ((0, 2),))
    overlap = policy.update_state(partial, request["user_id"], request["user_fields"],
                                  _events(request, 1, M))   # position 1 was seen
    for k in state:
        np.testing.assert_allclose(overlap[k].numpy(), state[k].numpy(), atol=1e-6)
    # the tail keeps the last `span` positions, padding first: row 0's padded position too
    assert policy.span == 10
    np.testing.assert_array_equal(state["tail_mask"].numpy()[:, -M:],
                                  np.sort(request["hist_mask"].numpy(), axis=1))
    assert not state["tail_mask"].numpy()[:, :-M].any()


def test_a_sliding_window_model_refuses_a_cached_state():
    policy = SlatePolicy(tiny_model(state_window="sliding"), 10)
    request = _request()
    with pytest.raises(ValueError, match=r"cached user state needs the prefix GRU "
                                         r"\(--state_window=prefix.*LRA has state_window=sliding"):
        policy.initial_state(request["user_id"], request["user_fields"])
