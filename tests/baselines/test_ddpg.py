"""Table 3's flat DDPG row: the critic target by hand, the losses, the update schedule, save/load,
slates and the trainer."""
import json
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf
from absl import flags

from baselines import ddpg, ddpg_learner
from hrl_rec import diagnostics
from baselines.ddpg_policy import DDPGSlatePolicy
from baselines.ddpg_train import DDPGRunner
from hrl_rec.learner import allowed_candidates
from hrl_rec.model import target_copy
from hrl_rec.policy import request_from_lists
from hrl_rec.runner import RunSettings, run
from tests.conftest import REPO
from tests.hrl_rec.helpers import SPEC_DICT, TINY, list_batch


def _net(**kw):
    return ddpg.FlatDDPG(SPEC_DICT, **{**TINY, "critic_direction": True, **kw})


def _cfg(**kw):
    return ddpg.DDPGConfig(**{**TINY, "batch_size": 4, "candidates_per_channel": 2,
                              "learning_rate": 1e-2, "target_update_period": 1,
                              "critic_steps": 3, "critic_direction": True, **kw})


def _critic_by_hand(critic, s, a):
    """Eq. 8 with the action's direction: ReLU(w_c1 . s + w_c2 . a / ||a|| + b_c)."""
    a = a / np.linalg.norm(a, axis=-1, keepdims=True)
    return np.maximum(s @ critic.w_state.numpy() + a @ critic.w_action.numpy()
                      + critic.bias.numpy(), 0.0)


def test_critic_by_hand_on_tiny_numbers():
    critic = _net().agent.critics[0]
    critic.w_state.assign(tf.fill(critic.w_state.shape, 0.1))
    critic.w_action.assign([1.0, 0.0, 0.0, -1.0])
    critic.bias.assign(0.05)
    s = tf.ones([1, 8])                                    # w_c1 . s = 0.8
    a = tf.constant([[3.0, 0.0, 0.0, 4.0]])                # a / ||a|| = (0.6, 0, 0, 0.8)
    # 0.8 + (0.6 - 0.8) + 0.05 = 0.65; with -a: 0.8 + 0.2 + 0.05 = 1.05
    np.testing.assert_allclose(critic(s, a).numpy(), [0.65], rtol=1e-6)
    np.testing.assert_allclose(critic(s, -a).numpy(), [1.05], rtol=1e-6)


@pytest.mark.parametrize("target_q", ["double", "ddpg"])
def test_targets_follow_eq_12(target_q):
    batch = list_batch(k=2)
    net = _net()
    target = target_copy(net)
    target.agent.actor.dense.kernel.assign(target.agent.actor.dense.kernel * -1.0)  # differ
    learner = ddpg_learner.DDPGLearner(net, target, _cfg(gamma=0.3, target_q=target_q,
                                                         action_noise=0.0))
    fwd, s_target = net.forward(batch), target.states(batch)
    weight, done = learner.transition_masks(batch)
    reward = tf.cast(batch["clicked"][:, 4:], tf.float32)
    y = learner.targets(fwd, s_target, reward, done, tf.constant([0, 0], tf.int64))
    # a'_{t+1}: the online actor on the online next state (double) or the target's on its own
    picker = net if target_q == "double" else target
    s_next = (fwd.s if target_q == "double" else s_target)[:, 1:].numpy()
    a_next = picker.agent.actor(s_next).numpy()
    q_next = _critic_by_hand(target.agent.critics[0], s_target[:, 1:].numpy(), a_next)
    expected = reward.numpy() + 0.3 * (1 - done.numpy()) * q_next
    np.testing.assert_allclose(y.numpy(), expected, rtol=1e-5, atol=1e-6)
    assert done.numpy()[-1, 6] == 1 and done.numpy()[0, 9] == 1 and weight.numpy()[-1, 7] == 0


def test_one_step_gives_the_losses_by_their_equations():
    batch = list_batch(k=2)
    net = _net()
    cfg = _cfg(action_noise=0.0, beta=0.5, agent_loss_weight=2.0, similarity_loss_weight=3.0,
               critic_steps=1)
    learner = ddpg_learner.DDPGLearner(net, target_copy(net), cfg)
    fwd = net.forward(batch)                               # before the step changes the weights
    weight, done = (x.numpy() for x in learner.transition_masks(batch))
    reward = batch["clicked"][:, 4:].numpy()
    critic = net.agent.critics[0]
    s = fwd.s[:, :-1].numpy()
    a, logged, cand = fwd.a.numpy(), fwd.logged.numpy(), fwd.candidates.numpy()
    y = reward + 0.3 * (1 - done) * _critic_by_hand(
        critic, fwd.s[:, 1:].numpy(), net.agent.actor(fwd.s[:, 1:]).numpy())
    mean = lambda x: (x * weight).sum() / weight.sum()   # noqa: E731
    critic_loss = mean((y - _critic_by_hand(critic, s, logged)) ** 2)
    actor_loss = -mean(_critic_by_hand(critic, s, a))
    # Eq. 17: the most similar candidate of ANY channel that slot t may still pick
    allowed = allowed_candidates(batch, 4)[0].numpy()
    unit = lambda x: x / np.linalg.norm(x, axis=-1, keepdims=True)   # noqa: E731
    cos = np.einsum("bsk,bnk->bsn", unit(a), unit(cand))
    similarity = -mean(np.where(allowed, cos, -2.0).max(-1))
    out = learner.train_step(batch)
    np.testing.assert_allclose(float(out["loss/critic"]), critic_loss, rtol=1e-4)
    np.testing.assert_allclose(float(out["loss/actor"]), actor_loss, rtol=1e-4)
    np.testing.assert_allclose(float(out["loss/similarity"]), similarity, rtol=1e-4)
    np.testing.assert_allclose(float(out["loss/total"]), 2.0 * (critic_loss + 0.5 * actor_loss)
                               + 3.0 * similarity, rtol=1e-4)
    # the channel constraint is gone: some slot's nearest candidate is of another channel
    channel = np.concatenate([batch["channel"][:, 4:].numpy(),
                              np.repeat(np.arange(4), 2)[None].repeat(3, 0)], 1)
    nearest = np.where(allowed, cos, -2.0).argmax(-1)
    picked = np.take_along_axis(channel, nearest, 1)
    assert (picked != batch["channel"][:, 4:].numpy())[weight > 0].any()


def test_the_critic_updates_more_often_than_the_actor_and_the_target_follows():
    batch = list_batch(k=2)
    net = _net()
    target = target_copy(net)
    learner = ddpg_learner.DDPGLearner(net, target, _cfg(tau=0.5, critic_steps=4))
    actor_before = net.agent.actor.dense.kernel.numpy()
    first = learner.train_step(batch)
    assert int(learner.critic_optimizer.iterations) == 4
    assert int(learner.actor_optimizer.iterations) == 1 and int(learner.step) == 1
    assert not np.allclose(net.agent.actor.dense.kernel.numpy(), actor_before)
    assert any(not np.allclose(t.numpy(), v.numpy()) for t, v in zip(target.weights,
                                                                     net.weights))
    for _ in range(30):
        last = learner.train_step(batch)
    assert float(last["loss/critic"]) < 0.5 * float(first["loss/critic"])
    assert float(last["q/policy"]) > float(first["q/policy"])      # the actor climbs Q
    assert float(first["data/transitions"]) == 3 * 10 - 3


def test_action_alignment_by_hand():
    # unit actions (1, 0) and (0, 1): mean direction (1, 1) / sqrt 2, each at cos 1 / sqrt 2
    actions = np.array([[2.0, 0.0], [0.0, 0.5]])
    assert diagnostics.action_alignment(actions) == pytest.approx(2 ** -0.5)
    assert diagnostics.action_alignment(np.array([[1.0, 1.0], [3.0, 3.0]])) == pytest.approx(1)


def test_save_load_round_trip_gives_the_same_scores(tmp_path):
    batch = list_batch()
    for window in ("sliding", "prefix"):
        net = _net(state_window=window, critic_form="bilinear")
        net.save(tmp_path / f"{window}.keras")
        loaded = keras.models.load_model(tmp_path / f"{window}.keras")
        assert isinstance(loaded, ddpg.FlatDDPG) and loaded.options == net.options
        np.testing.assert_allclose(loaded(batch).numpy(), net(batch).numpy(), rtol=1e-6)
        fwd = net.forward(batch)
        np.testing.assert_allclose(net(batch).numpy(), np.sum(
            fwd.a.numpy() / np.linalg.norm(fwd.a.numpy(), axis=-1, keepdims=True)
            * fwd.logged.numpy() / np.linalg.norm(fwd.logged.numpy(), axis=-1, keepdims=True),
            -1), rtol=1e-5, atol=1e-6)


def test_slates_are_the_most_similar_item_of_any_channel():
    # the quickstart's prefix window; hrl_rec's policy tests cover both windows of `_states`
    net = _net(state_window="prefix")
    request = request_from_lists(list_batch(b=3, k=3, seed=5), 4)
    request["cand_mask"] = tf.tensor_scatter_nd_update(request["cand_mask"], [[0, 2]], [0])
    out = DDPGSlatePolicy(net, 10).slate(request)       # eager: the same code, no tracing
    # Reference: each slot's state from the agent over the window holding the items placed so
    # far, the action, and the available candidate of highest cosine.
    items = net.items({k: request[f"cand_{k}"] for k in ("item_id", "channel", "item_fields",
                                                         "tags", "context")}).numpy()
    unit = items / np.linalg.norm(items, axis=-1, keepdims=True)
    hist = {k: request[f"hist_{k}"].numpy() for k in ("item_id", "channel", "slot",
                                                      "item_fields", "tags", "context",
                                                      "feedback", "mask")}
    b, m = 3, 4
    w = {k: np.concatenate([v, np.zeros_like(np.repeat(v[:, :1], 10, 1))], 1)
         for k, v in hist.items()}
    available = request["cand_mask"].numpy().astype(bool)
    for t in range(10):
        tw = {k: tf.constant(v) for k, v in w.items()}
        tw["user_id"], tw["user_fields"] = request["user_id"], request["user_fields"]
        a = net.agent.actor(net.agent(tw)[:, t]).numpy()
        cos = np.einsum("bk,bnk->bn", a / np.linalg.norm(a, axis=-1, keepdims=True), unit)
        pick = np.where(available, cos, -np.inf).argmax(1)
        np.testing.assert_array_equal(out["index"][:, t].numpy(), pick)
        np.testing.assert_allclose(out["score"][:, t].numpy(), cos[np.arange(b), pick],
                                   rtol=1e-5, atol=1e-6)
        ids = request["cand_item_id"].numpy()[np.arange(b), pick]
        available &= ids[:, None] != request["cand_item_id"].numpy()
        for k in ("item_id", "channel", "item_fields", "tags", "context"):
            w[k][:, m + t] = request[f"cand_{k}"].numpy()[np.arange(b), pick]
        w["slot"][:, m + t], w["mask"][:, m + t] = t, 1
    assert (out["propensity"].numpy() == 1).all() and 2 not in out["index"].numpy()[0]
    assert all(len(set(row)) == 10 for row in out["item_id"].numpy())
    explored = DDPGSlatePolicy(net, 10, epsilon=0.5, seed=3)(request)      # compiled
    left = request["cand_mask"].numpy().sum(1)[:, None] - np.arange(10)[None]
    greedy_share = explored["propensity"].numpy() - 0.5 / left
    assert np.allclose(greedy_share[~explored["explored"].numpy()], 0.5)


def test_the_runner_trains_evaluates_and_saves_a_flat_ddpg(sim_data, tmp_path):
    report = run(_cfg(batch_size=64), RunSettings(
        data_dir=str(sim_data), model_dir=str(tmp_path), epochs=1, eval_batch_size=64),
        runner_class=DDPGRunner)
    assert 0 < report["auc"] < 1 and 0 < report["auc_q"] < 1 and 0 < report["valid_auc"] < 1
    assert -1 <= report["action_alignment"] <= 1
    assert report["best_epoch"] == 1 and "oracle_auc" in report
    saved = json.loads((tmp_path / "eval.json").read_text())
    assert saved["auc"] == report["auc"]
    loaded = keras.models.load_model(tmp_path / "model.keras")
    assert isinstance(loaded, ddpg.FlatDDPG) and loaded.options["critic_direction"]
    assert (tmp_path / "ckpt" / "checkpoint").exists() and list((tmp_path / "tb").iterdir())


def test_config_errors_name_the_flag_and_the_flagfile_mirrors_the_quickstart():
    for kw, message in ((dict(target_q="twin"), r"--target_q=twin: expected one of"),
                        (dict(critic_steps=0), r"--critic_steps=0: expected >= 1"),
                        (dict(beta=-1.0), r"--beta=-1.0: expected >= 0")):
        with pytest.raises(ValueError, match=message):
            ddpg.validate(ddpg.DDPGConfig(**kw))

    def values(path):
        argv = flags.FlagValues().read_flags_from_files([f"--flagfile={path}"], force_gnu=True)
        return dict(a[2:].split("=", 1) for a in argv)
    ours = values(REPO / "configs/ddpg.flags")
    quickstart = values(REPO / "configs/quickstart.flags")
    assert ours.pop("agent_loss_weight") == quickstart["hra_loss_weight"]
    shared = (set(ours) & set(quickstart)) - {"experiment"}
    assert set(ours) - shared == {"experiment"}        # every other setting is the quickstart's
    assert len(shared) >= 15 and {k: ours[k] for k in shared} == {k: quickstart[k]
                                                                  for k in shared}
    # the defaults the flagfile leaves are HRLConfig's (the quickstart leaves them too)
    from hrl_rec.config import HRLConfig
    for name in ("gamma", "target_q", "critic_steps", "action_noise", "tau",
                 "target_update_period", "clip_norm", "candidates_per_channel"):
        assert getattr(ddpg.DDPGConfig(), name) == getattr(HRLConfig(), name), name


def test_cli_names_a_bad_flag():
    done = subprocess.run([sys.executable, "-m", "baselines.ddpg_train", "--target_q=twin"],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode != 0 and "--target_q=twin: expected one of" in done.stderr
