"""experiments.online: arms replay the dataset and then serve; histories equal the pipeline's;
the metrics by hand; the world is checked against the dataset."""
import json
import shutil
import types

import numpy as np
import pytest

from data.pipeline import list_dataset
from experiments import online
from hrl_rec.model import HRLRec
from tests.hrl_rec.helpers import TINY


@pytest.fixture(scope="module")
def sim(sim_data):
    cfg, world, metadata = online.load_world(str(sim_data))
    return cfg, world, metadata


def test_logging_arm_from_day_0_replays_the_dataset(sim):
    cfg, world, metadata = sim
    report = online.run_arm(cfg, world, metadata["shards"], online.logging_arm(cfg.epsilon),
                            start_day=0)
    splits = metadata["splits"]
    assert report["impressions"] == splits["train"]["impressions"] + splits["test"]["impressions"]
    assert report["clicks"] == splits["train"]["clicks"] + splits["test"]["clicks"]
    assert report["days"] == [0, 1, 2, 3] and report["users"] == 150
    assert report["ctr"] == pytest.approx(report["clicks"] / report["impressions"])
    assert report["acn"] == pytest.approx(report["clicks"] / 150)


def test_end_day_serves_only_the_days_before_it_and_the_rest_replays(sim):
    cfg, world, metadata = sim
    served = []

    def act(req, policy, rng, history):
        served.append(req.day)
        return None                                    # the logging policy's slates

    whole = online.run_arm(cfg, world, metadata["shards"], online.logging_arm(cfg.epsilon),
                           start_day=0)
    first = online.run_arm(cfg, world, metadata["shards"], act, start_day=1, end_day=3)
    assert sorted(set(served)) == [1, 2] and first["days"] == [1, 2]
    by_day = online.run_arm(cfg, world, metadata["shards"], online.logging_arm(cfg.epsilon),
                            start_day=3)
    assert first["impressions"] + by_day["impressions"] < whole["impressions"]
    with pytest.raises(ValueError, match="end_day 1 out of range"):
        online.run_arm(cfg, world, 1, act, start_day=1, end_day=1)


def test_online_histories_equal_the_pipelines_windows(sim, sim_data):
    """The window an arm reads at a test request is the one data.pipeline builds for the same
    request from the written log (the arm here is the dataset's own policy)."""
    cfg, world, metadata = sim
    seen = {}
    logging = online.logging_arm(cfg.epsilon)

    def act(req, policy, rng, history):
        window = history.window(req.rows)
        for i, rid in enumerate(req.request_id):
            seen[int(rid)] = {k: v[i] for k, v in window.items()}
        return logging(req, policy, rng, history)

    online.run_arm(cfg, world, metadata["shards"], act, m=6)
    m, checked = 6, 0
    for batch in list_dataset(str(sim_data), "test", max_seq_len=m, batch_size=64):
        for i, rid in enumerate(batch["request_id"].numpy()):
            if int(rid) not in seen:     # a session of the last training day past midnight
                continue
            for k in online.WINDOW_PARTS:
                np.testing.assert_array_equal(seen[int(rid)][f"hist_{k}"],
                                              batch[k].numpy()[i, :m], err_msg=f"{rid} {k}")
            checked += 1
    assert checked > 0.9 * metadata["splits"]["test"]["lists"]


def test_user_history_by_hand():
    h = online.UserHistory(n_rows=2, m=3, n_item_fields=1, n_context=1, n_tags=1)

    def shown(items, clicked):
        items = np.array(items)
        return {"item_id": items, "channel": items % 4, "slot": np.tile([0, 1], (len(items), 1)),
                "item_fields": items[..., None], "tags": items[..., None] + 10,
                "context": np.ones_like(items)[..., None], "clicked": np.array(clicked)}

    h.push(np.array([1]), shown([[5, 6]], [[0, 1]]))
    w = h.window(np.array([1, 0]))
    np.testing.assert_array_equal(w["hist_item_id"], [[0, 5, 6], [0, 0, 0]])
    np.testing.assert_array_equal(w["hist_mask"], [[0, 1, 1], [0, 0, 0]])
    np.testing.assert_array_equal(w["hist_feedback"], [[0, 1, 2], [0, 0, 0]])
    h.push(np.array([1, 0]), shown([[7, 8], [9, 3]], [[1, 0], [0, 0]]))
    w = h.window(np.array([1, 0]))
    np.testing.assert_array_equal(w["hist_item_id"], [[6, 7, 8], [0, 9, 3]])
    np.testing.assert_array_equal(w["hist_feedback"], [[2, 2, 1], [0, 1, 1]])
    np.testing.assert_array_equal(w["hist_slot"], [[1, 0, 1], [0, 0, 1]])
    np.testing.assert_array_equal(w["hist_tags"][0, :, 0], [16, 17, 18])


class _Requests(types.SimpleNamespace):
    def __len__(self):
        return len(self.user_id)


def test_metrics_by_hand():
    world = types.SimpleNamespace(items=types.SimpleNamespace(channel=np.array([0, 1, 2, 3, 3])))
    metrics = online.OnlineMetrics(n_users=4, n_tags=5, n_channels=4, n_days=2)
    req = _Requests(user_id=np.array([2, 0]), page=np.array([0, 3]), day=1,
                    context=np.array([[9, 1, 0], [21, 1, 2]]))  # hour, weekday, network
    fb = types.SimpleNamespace(
        clicked=np.array([[1, 1, 0], [0, 0, 1]]), dwell=np.array([[10., 20., 0], [0, 0, 5.]]),
        tags=np.array([[[1, 2], [2, 3], [4, 0]], [[1, 0], [1, 0], [5, 1]]]))
    metrics.add(world, req, np.array([[3, 4, 0], [1, 2, 3]]), fb)
    r = metrics.report([1])
    # clicks 3 of 6; user 2 watched tags {1, 2, 3}, user 0 {5, 1}: 5 tags over 4 users.
    assert (r["impressions"], r["clicks"], r["requests"], r["sessions"]) == (6, 3, 2, 1)
    assert (r["ctr"], r["acn"], r["awt"], r["active_users"]) == (0.5, 0.75, 1.25, 2)
    assert r["dwell_per_capita"] == 35.0 / 4
    # impressions by channel: items 3, 4, 0 | 1, 2, 3 -> channels 3, 3, 0 | 1, 2, 3
    assert r["channel_share"] == [1 / 6, 1 / 6, 1 / 6, 3 / 6]
    assert r["channel_ctr"] == [0.0, 0.0, 0.0, 1.0]        # all 3 clicks on channel 3
    assert r["channel_share_per_day"] == [[1 / 6, 1 / 6, 1 / 6, 3 / 6]]
    hourly = np.asarray(r["channel_impressions_per_hour"])
    assert hourly.shape == (1, 24, 4) and hourly.sum() == 6
    assert hourly[0, 9].tolist() == [1, 0, 0, 2] and hourly[0, 21].tolist() == [0, 1, 1, 1]


def test_a_model_arm_serves_the_candidates_under_the_channel_constraint(sim):
    cfg, world, metadata = sim
    model = HRLRec(metadata["spec"], **TINY)
    served = []
    arm = online.model_arm(model, world)

    def act(req, policy, rng, history):
        slates, props = arm(req, policy, rng, history)
        served.append((req.candidates, slates, props))
        return slates, props

    # env.step checks that every shown item is one of the request's candidates, once
    report = online.run_arm(cfg, world, metadata["shards"], act, m=TINY["max_seq_len"])
    assert report["impressions"] == 10 * report["requests"] > 0
    assert sum(report["channel_share"]) == pytest.approx(1.0)
    candidates, slates, props = served[0]
    assert (props == 1.0).all()
    assert all(len(set(row)) == 10 for row in slates)


@pytest.mark.parametrize("kind", ["QNetwork", "FlatDDPG"])
def test_a_flat_agents_arm_serves_items_of_every_channel(sim, kind):
    from baselines.ddpg import FlatDDPG
    from baselines.dqn import QNetwork
    cfg, world, metadata = sim
    net = (QNetwork(metadata["spec"], encoder="gru", dueling=True, **TINY) if kind == "QNetwork"
           else FlatDDPG(metadata["spec"], critic_direction=True, **TINY))
    with pytest.raises(ValueError, match=rf"item_score='click': a {kind} serves by its own"):
        online.model_arm(net, world, item_score="click")
    report = online.run_arm(cfg, world, metadata["shards"], online.model_arm(net, world),
                            m=TINY["max_seq_len"])
    assert report["impressions"] == 10 * report["requests"] > 0
    assert sum(report["channel_share"]) == pytest.approx(1.0)


def test_the_world_is_checked_against_the_dataset(sim_data, tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nope/metadata.json not found"):
        online.load_world(str(tmp_path / "nope"))
    copy = tmp_path / "copy"
    shutil.copytree(sim_data, copy)
    with np.load(copy / "items.npz") as z:
        items = dict(z)
    items["tags"][3, 0] += 1
    np.savez(copy / "items.npz", **items)
    with pytest.raises(ValueError, match=r"copy/items.npz differs from the world"):
        online.load_world(str(copy))
    meta = json.loads((copy / "metadata.json").read_text())
    (copy / "metadata.json").write_text(json.dumps({**meta, "source": "mind"}))
    with pytest.raises(ValueError, match=r"source 'mind'; online experiments need"):
        online.load_world(str(copy))


def test_load_model_names_a_missing_file_and_a_model_of_another_kind(tmp_path):
    import keras
    with pytest.raises(FileNotFoundError, match=r"nope/model.keras not found: train the model"):
        online.load_model(str(tmp_path / "nope"))
    other = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    other.save(tmp_path / "model.keras")
    with pytest.raises(ValueError, match=r"model.keras holds a Sequential, not an HRL-Rec, DQN or flat"):
        online.load_model(str(tmp_path))
