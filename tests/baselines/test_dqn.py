"""Table 3's DQN rows: the Q head and the Bellman targets by hand, learning, save/load, slates."""
import json
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf
from absl import flags

from baselines import dqn, dqn_learner
from baselines.dqn_policy import QSlatePolicy
from baselines.dqn_train import DQNRunner
from hrl_rec.model import target_copy, window_of
from hrl_rec.policy import request_from_lists
from hrl_rec.runner import RunSettings, run
from tests.conftest import REPO
from tests.hrl_rec.helpers import SPEC_DICT, TINY, list_batch


def _net(variant="dqn_gru", **kw):
    encoder, _, dueling = dqn.VARIANTS[variant]
    return dqn.QNetwork(SPEC_DICT, encoder=encoder, dueling=dueling, **{**TINY, **kw})


def _head(dueling):
    head = dqn.QHead(dueling)
    head.build((None, 2), (None, 2))
    head.w_v.assign([1.0, -1.0])
    head.b_v.assign(0.5)
    head.w_a.assign([[1.0, 0.0], [0.0, 2.0]])
    head.u_a.assign([0.0, 1.0])
    return head


S = tf.constant([[[1.0, 2.0]]])                                   # B = 1, T = 1
D = tf.constant([[[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]])           # N = 3 candidates
ALLOWED = tf.constant([[[True, True, False]]])


def test_q_head_by_hand():
    # V = 1 - 2 + 0.5 = -0.5; W_a s + u_a = (1, 4) + (0, 1) = (1, 5);
    # A = d . (1, 5) = 1, 5, 6 -> Q = 0.5, 4.5, 5.5.
    q = _head(False)(S, D, ALLOWED)
    np.testing.assert_allclose(q.numpy(), [[[0.5, 4.5, 5.5]]])
    # dueling: minus the mean advantage of the allowed candidates, (1 + 5) / 2 = 3.
    q = _head(True)(S, D, ALLOWED)
    np.testing.assert_allclose(q.numpy(), [[[-2.5, 1.5, 2.5]]])


def test_huber_next_value_and_the_logged_diagonal_by_hand():
    np.testing.assert_allclose(dqn_learner.huber(tf.constant([0.5, -2.0, 3.0]), 1.0).numpy(),
                               [0.125, 1.5, 2.5])
    q_target = tf.constant([[[1.0, 4.0, 9.0], [2.0, 0.0, 1.0]]])     # [B=1, S=2, N=3]
    q_online = tf.constant([[[5.0, 1.0, 0.0], [0.0, 0.0, 0.0]]])
    allowed = tf.constant([[[True, True, False], [False, False, False]]])
    # max over allowed: 4; nothing allowed: 0.  Double: online picks candidate 0 -> Q' = 1.
    np.testing.assert_allclose(dqn_learner.next_value(q_target, allowed).numpy(), [[4.0, 0.0]])
    np.testing.assert_allclose(dqn_learner.next_value(q_target, allowed, q_online).numpy(),
                               [[1.0, 0.0]])
    shifted = dqn_learner.shift_allowed(tf.constant([[[True, False], [False, True]]]))
    np.testing.assert_array_equal(shifted.numpy(), [[[False, True], [False, False]]])
    np.testing.assert_allclose(dqn_learner.logged_q(q_target).numpy(), [[1.0, 0.0]])


def test_linear_encoder_is_linear_in_the_fields_and_averages_over_the_window():
    net = _net("dqn_lr")
    window = window_of(list_batch())
    fields, profile = net.fields(window)
    f, h0 = net.behaviours(window)
    flat = tf.reshape(fields, [*fields.shape[:2], -1])
    np.testing.assert_allclose(f.numpy(), (flat @ net.behaviour.kernel + net.behaviour.bias)
                               .numpy(), rtol=1e-5, atol=1e-6)
    s = net.states(window)                                           # sliding, m = 4
    w = window["mask"].numpy()[..., None].astype(np.float32)
    t = 2                                                           # positions 2..5
    expected = (h0.numpy() + (f.numpy() * w)[:, t:t + 4].sum(1)) / (1 + w[:, t:t + 4].sum(1))
    np.testing.assert_allclose(s[:, t].numpy(), expected, rtol=1e-5, atol=1e-6)


def _cfg(variant, **kw):
    return dqn.DQNConfig(variant=variant, **{**TINY, "batch_size": 4, "candidates_per_channel": 2,
                                             "learning_rate": 1e-2, "target_update_period": 1,
                                             **kw})


@pytest.mark.parametrize("variant", ["dqn_gru", "dd_dqn"])
def test_targets_follow_the_bellman_equation(variant):
    batch = list_batch(k=2)
    net = _net(variant)
    learner = dqn_learner.DQNLearner(net, target_copy(net), _cfg(variant, gamma=0.3))
    fwd = net.slot_q(batch)
    y, reward, weight = learner.targets(batch, fwd)
    allowed = dqn_learner.shift_allowed(fwd[2])
    # The target network is a copy, so the double target equals the max target here.
    q_next = net.q(fwd[0][:, 1:], fwd[1], allowed)
    v = np.where(allowed.numpy(), q_next.numpy(), -np.inf).max(-1)
    _, done = learner.transition_masks(batch)
    expected = reward.numpy() + 0.3 * (1 - done.numpy()) * np.where(np.isfinite(v), v, 0.0)
    np.testing.assert_allclose(y.numpy(), expected, rtol=1e-5, atol=1e-6)
    assert done.numpy()[-1, 6] == 1 and done.numpy()[0, 9] == 1 and weight.numpy()[-1, 7] == 0
    learner.cfg = _cfg(variant, gamma=0.0)
    np.testing.assert_allclose(learner.targets(batch, fwd)[0].numpy(), reward.numpy())


def test_train_steps_fit_a_fixed_batch_and_move_the_target():
    batch = list_batch(k=2)
    net = _net("dd_dqn")
    target = target_copy(net)
    learner = dqn_learner.DQNLearner(net, target, _cfg("dd_dqn", tau=0.5))
    first = learner.train_step(batch)
    assert int(learner.step) == 1
    # tau = 0.5 after one step: the target is halfway between its start and the online net
    moved = [not np.allclose(t.numpy(), v.numpy()) for t, v in zip(target.weights, net.weights)]
    assert any(moved)
    for _ in range(30):
        last = learner.train_step(batch)
    assert float(last["loss/td"]) < 0.5 * float(first["loss/td"])
    assert float(first["data/transitions"]) == 3 * 10 - 3


def test_save_load_round_trip_gives_the_same_q(tmp_path):
    batch = list_batch()
    for variant in ("dqn_lr", "dd_dqn"):
        net = _net(variant, state_window="prefix")
        path = tmp_path / f"{variant}.keras"
        net.save(path)
        loaded = keras.models.load_model(path)
        assert isinstance(loaded, dqn.QNetwork) and loaded.options == net.options
        np.testing.assert_allclose(loaded(batch).numpy(), net(batch).numpy(), rtol=1e-6)
        np.testing.assert_allclose(net(batch).numpy(), dqn_learner.logged_q(
            net.slot_q(batch)[3]).numpy())


@pytest.mark.parametrize("window", ["sliding", "prefix"])
def test_slates_are_the_greedy_q_item_given_the_items_placed_before(window):
    net = _net("dd_dqn", state_window=window)
    request = request_from_lists(list_batch(b=3, k=3, seed=5), 4)
    request["cand_mask"] = tf.tensor_scatter_nd_update(request["cand_mask"], [[0, 2]], [0])
    out = QSlatePolicy(net, 10).slate(request)         # eager: the same code, no tracing
    # Reference: each slot's state from net.states over the window holding the items placed so
    # far, Q of every candidate, the best one not masked and not placed.
    items = net.items({k: request[f"cand_{k}"] for k in ("item_id", "channel", "item_fields",
                                                         "tags", "context")})
    hist = {k: request[f"hist_{k}"].numpy() for k in ("item_id", "channel", "slot",
                                                      "item_fields", "tags", "context",
                                                      "feedback", "mask")}
    b, m = 3, 4
    window = {k: np.concatenate([v, np.zeros_like(np.repeat(v[:, :1], 10, 1))], 1)
              for k, v in hist.items()}
    available = request["cand_mask"].numpy().astype(bool)
    for t in range(10):
        w = {k: tf.constant(v) for k, v in window.items()}
        w["user_id"], w["user_fields"] = request["user_id"], request["user_fields"]
        state = net.states(w)[:, t]
        q = net.q(state[:, None], items, tf.constant(available)[:, None])[:, 0].numpy()
        pick = np.where(available, q, -np.inf).argmax(1)
        np.testing.assert_array_equal(out["index"][:, t].numpy(), pick)
        np.testing.assert_allclose(out["score"][:, t].numpy(), q[np.arange(b), pick], rtol=1e-5,
                                   atol=1e-8)
        ids = request["cand_item_id"].numpy()[np.arange(b), pick]
        available &= ids[:, None] != request["cand_item_id"].numpy()
        for k in ("item_id", "channel", "item_fields", "tags", "context"):
            window[k][:, m + t] = request[f"cand_{k}"].numpy()[np.arange(b), pick]
        window["slot"][:, m + t], window["mask"][:, m + t] = t, 1
    assert (out["propensity"].numpy() == 1).all() and 2 not in out["index"].numpy()[0]
    assert all(len(set(row)) == 10 for row in out["item_id"].numpy())


def test_exploration_propensities_are_exact():
    net = _net("dqn_lr")
    request = request_from_lists(list_batch(b=3, k=3, seed=5), 4)
    greedy = QSlatePolicy(net, 10).slate(request)
    out = QSlatePolicy(net, 10, epsilon=0.5, seed=3)(request)     # compiled
    explored, prob = out["explored"].numpy(), out["propensity"].numpy()
    assert explored.any() and not explored.all()
    # P(d_t) = 0.5 [d_t = greedy] + 0.5 / (candidates left); one candidate leaves per slot
    left = request["cand_mask"].numpy().sum(1)[:, None] - np.arange(10)[None]
    greedy_share = prob - 0.5 / left
    assert np.isclose(greedy_share, 0.0).sum() + np.isclose(greedy_share, 0.5).sum() == 30
    assert np.allclose(greedy_share[~explored], 0.5)
    # slot 0 follows no earlier pick, so its greedy item is the all-greedy slate's
    np.testing.assert_array_equal(np.isclose(greedy_share[:, 0], 0.5),
                                  out["index"].numpy()[:, 0] == greedy["index"].numpy()[:, 0])


def test_the_runner_trains_evaluates_and_saves_a_dqn(sim_data, tmp_path):
    cfg = _cfg("dd_dqn", batch_size=64)
    report = run(cfg, RunSettings(data_dir=str(sim_data), model_dir=str(tmp_path), epochs=1,
                                  eval_batch_size=64), runner_class=DQNRunner)
    assert 0 < report["auc"] < 1 and 0 < report["valid_auc"] < 1
    assert report["best_epoch"] == 1 and "logloss" not in report and "oracle_auc" in report
    saved = json.loads((tmp_path / "eval.json").read_text())
    assert saved["auc"] == report["auc"] and saved["flags"]["variant"] == "dd_dqn"
    loaded = keras.models.load_model(tmp_path / "model.keras")
    assert isinstance(loaded, dqn.QNetwork) and loaded.options["dueling"]
    assert (tmp_path / "ckpt" / "checkpoint").exists() and list((tmp_path / "tb").iterdir())


def test_config_errors_name_the_flag_and_the_flagfile_mirrors_the_quickstart():
    for kw, message in ((dict(variant="dqn_cnn"), r"--variant=dqn_cnn: expected one of"),
                        (dict(gamma=1.5), r"--gamma=1.5: expected in \[0, 1\]"),
                        (dict(embedding_dim=5, heads=2), r"--embedding_dim=5: expected a mult")):
        with pytest.raises(ValueError, match=message):
            dqn.validate(dqn.DQNConfig(**kw))

    def values(path):
        argv = flags.FlagValues().read_flags_from_files([f"--flagfile={path}"], force_gnu=True)
        return dict(a[2:].split("=", 1) for a in argv)
    ours, quickstart = values(REPO / "configs/dqn.flags"), values(REPO / "configs/quickstart.flags")
    shared = (set(ours) & set(quickstart)) - {"experiment"}
    assert set(ours) - shared == {"experiment"}         # every DQN setting is the quickstart's
    assert len(shared) >= 12 and {k: ours[k] for k in shared} == {k: quickstart[k]
                                                                  for k in shared}


def test_cli_names_a_bad_flag():
    done = subprocess.run([sys.executable, "-m", "baselines.dqn_train", "--variant=dqn_cnn"],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode != 0 and "--variant=dqn_cnn: expected one of" in done.stderr
