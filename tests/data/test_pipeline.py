"""The input pipeline's windows, checked against a hand-built log of one user:
list A = items 0-9 (request 1), list B = items 10-19 (request 2), list C = items 20-23
(request 3, 4 slots); item k is clicked when k % 3 == 0; m = 12."""
import numpy as np
import pytest

from data import pipeline
from data.schema import ImpressionLog
from tests.data.helpers import make_log, write_dataset

M = 12


def hand_log(user=1, first_item=0):
    items = np.arange(first_item, first_item + 24)
    requests = np.r_[np.full(10, 1), np.full(10, 2), np.full(4, 3)] + first_item
    slots = np.r_[np.arange(10), np.arange(10), np.arange(4)]
    return make_log(np.full(24, user), requests, slots, items, clicked=(items % 3 == 0))


@pytest.fixture()
def data_dir(tmp_path):
    write_dataset(tmp_path, hand_log())
    return tmp_path


def lists_of(ds):
    out = {}
    for batch in ds:
        for i, rid in enumerate(batch["request_id"].numpy()):
            out[int(rid)] = {k: v.numpy()[i] for k, v in batch.items()}
    return out


def test_history_windows_of_each_list(data_dir):
    lists = lists_of(pipeline.list_dataset(str(data_dir), "train", max_seq_len=M, batch_size=2,
                                           shuffle=False))
    assert sorted(lists) == [1, 2, 3]
    a, b, c = lists[1], lists[2], lists[3]
    assert a["mask"].tolist() == [0] * M + [1] * 10
    assert a["item_id"][M:].tolist() == list(range(10))
    assert b["mask"].tolist() == [0, 0] + [1] * 10 + [1] * 10
    assert b["item_id"][2:M].tolist() == list(range(10))
    assert b["item_id"][M:].tolist() == list(range(10, 20))
    assert c["item_id"][:M].tolist() == list(range(8, 20))
    assert c["item_id"][M:M + 4].tolist() == [20, 21, 22, 23]
    assert c["mask"][M:].tolist() == [1] * 4 + [0] * 6
    assert c["item_id"][M + 4:].tolist() == [0] * 6  # padding is zero
    # feedback: 1 + clicked on history, 0 (unknown) on the current list and on padding
    want = [0, 0] + [1 + (k % 3 == 0) for k in range(10)] + [0] * 10
    assert b["feedback"].tolist() == want
    assert b["clicked"][M:].tolist() == [int(k % 3 == 0) for k in range(10, 20)]
    assert b["channel"][M:].tolist() == [k % 4 for k in range(10, 20)]
    assert b["tags"][M, 0] == 10 % 19 + 1 and b["item_fields"][M, 0] == 10 % 5
    assert b["user_id"] == 1 and b["user_fields"].tolist() == [1, 1]
    assert b["dwell"][M:].tolist() == [30.0 * (k % 3 == 0) for k in range(10, 20)]


def test_context_rows_serve_history_but_are_never_targets(tmp_path):
    log = hand_log()
    target = (log.request_id >= 3).astype(np.int64)  # only list C belongs to the split
    write_dataset(tmp_path, log, test_log=log, test_target=target)
    lists = lists_of(pipeline.list_dataset(str(tmp_path), "test", max_seq_len=M, batch_size=4))
    assert sorted(lists) == [3]
    assert lists[3]["item_id"][:M].tolist() == list(range(8, 20))


def test_time_filter_keeps_lists_starting_in_range(data_dir):
    ds = pipeline.list_dataset(str(data_dir), "train", max_seq_len=M, min_time=100, max_time=150,
                               shuffle=False)
    assert sorted(lists_of(ds)) == [2]  # list timestamps are 60, 120, 180


def test_candidates_per_channel(data_dir):
    ds = pipeline.list_dataset(str(data_dir), "train", max_seq_len=M, candidates_per_channel=7,
                               shuffle=False, seed=3)
    first, again = lists_of(ds), lists_of(ds)
    cands = first[2]["cand_item_id"]
    assert cands.shape == (4, 7)
    assert ((cands % 4) == np.arange(4)[:, None]).all()  # row c holds channel-c items
    np.testing.assert_array_equal(first[2]["cand_tags"][..., 0], cands % 19 + 1)
    np.testing.assert_array_equal(cands, again[2]["cand_item_id"])  # per-request deterministic


def test_impressions_with_history(data_dir):
    ds = pipeline.impression_dataset(str(data_dir), "train", max_seq_len=M, batch_size=100,
                                     shuffle=False)
    batch = next(iter(ds))
    assert len(batch["label"]) == 24
    items = batch["item_id"].numpy()
    row = int(np.flatnonzero(items == 13)[0])  # list B, slot 3
    assert batch["slot"].numpy()[row] == 3
    assert batch["label"].numpy()[row] == 0 and batch["label"].numpy()[items == 12][0] == 1
    hist = batch["hist_item_id"].numpy()[row]
    assert hist.tolist() == list(range(1, 10)) + [10, 11, 12]  # window[3 : 3 + m]
    assert batch["hist_feedback"].numpy()[row].tolist() == (
        [1 + (k % 3 == 0) for k in range(1, 10)] + [0, 0, 0])
    assert batch["hist_mask"].numpy()[row].tolist() == [1] * M


def test_shuffled_training_covers_every_list(data_dir):
    ds = pipeline.list_dataset(str(data_dir), "train", max_seq_len=M, batch_size=1, seed=1)
    assert sorted(lists_of(ds)) == [1, 2, 3]


def test_multi_user_shards(tmp_path):
    log = ImpressionLog.concat([hand_log(1, 0), hand_log(3, 40)])
    write_dataset(tmp_path, log)
    lists = lists_of(pipeline.list_dataset(str(tmp_path), "train", max_seq_len=M, shuffle=False))
    assert len(lists) == 6
    assert lists[42]["item_id"][2:M].tolist() == list(range(40, 50))  # never another user's


def test_errors(tmp_path, data_dir):
    with pytest.raises(FileNotFoundError, match="metadata.json not found"):
        pipeline.list_dataset(str(tmp_path / "nothing"), "train")
    short = tmp_path / "short_context"
    short.mkdir()
    write_dataset(short, hand_log(), test_log=hand_log(), test_target=np.ones(24, np.int64),
                  history_context=20)
    with pytest.raises(ValueError, match="max_seq_len=50 exceeds the 20 history impressions"):
        pipeline.list_dataset(str(short), "test", max_seq_len=50)
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        pipeline.list_dataset(str(data_dir), "train", batch_size=0)
    with pytest.raises(FileNotFoundError, match="no valid-\\*.tfrecord shards"):
        pipeline.list_dataset(str(data_dir), "valid", max_seq_len=M)


def test_validate_split(data_dir):
    assert pipeline.validate_split(str(data_dir), "train") == 24


def test_shuffled_reads_keep_their_order_only_under_op_determinism(monkeypatch):
    from tensorflow.python.framework import config as tf_config
    from data import pipeline
    assert pipeline.ordered(shuffle=False)
    monkeypatch.setattr(tf_config, "is_op_determinism_enabled", lambda: False)
    assert not pipeline.ordered(shuffle=True)
    monkeypatch.setattr(tf_config, "is_op_determinism_enabled", lambda: True)
    assert pipeline.ordered(shuffle=True)
