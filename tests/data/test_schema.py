import os

import numpy as np
import pytest

from data import schema, tfrecord_io
from tests.data.helpers import SPEC, make_log


def ten_slot_log():
    return make_log([1] * 10, [7] * 10, range(10), range(10), clicked=[1] + [0] * 9)


def test_valid_log_passes():
    schema.validate(ten_slot_log(), SPEC)


@pytest.mark.parametrize("column, index, value, message", [
    ("slot", 4, 12, r"slot 12 out of range \[0, 10\) in train-00003.tfrecord record 4"),
    ("channel", 2, 4, r"channel 4 out of range \[0, 4\) in train-00003.tfrecord record 2"),
    ("item_id", 0, 100, r"item_id 100 out of range \[0, 100\)"),
    ("user_id", 0, -1, r"user_id -1 out of range \[0, 5\)"),
    ("clicked", 3, 2, r"clicked 2 out of range \[0, 2\)"),
    ("propensity", 5, 0.0, r"propensity 0.0 not in \(0, 1\] in train-00003.tfrecord record 5"),
    ("propensity", 5, 1.5, r"propensity 1.5 not in \(0, 1\]"),
    ("true_ctr", 1, 1.2, r"true_ctr 1.2.* not in \[0, 1\] or -1"),
    ("dwell", 6, np.nan, r"dwell is nan \(not finite\) in train-00003.tfrecord record 6"),
    ("dwell", 6, 5.0, r"dwell 5.0 > 0 on an unclicked impression"),
])
def test_bad_values_name_field_source_and_row(column, index, value, message):
    log = ten_slot_log()
    getattr(log, column)[index] = value
    with pytest.raises(schema.SchemaError, match=message):
        schema.validate(log, SPEC, source="train-00003.tfrecord")


def test_bad_field_value_names_field():
    log = ten_slot_log()
    log.user_fields[3, 1] = 2
    with pytest.raises(schema.SchemaError, match=r"user_fields.gender 2 out of range \[0, 2\)"):
        schema.validate(log, SPEC)
    log = ten_slot_log()
    log.context[8, 0] = 24
    with pytest.raises(schema.SchemaError, match=r"context.hour 24 out of range \[0, 24\).*record 8"):
        schema.validate(log, SPEC)


def test_wrong_shape_is_reported():
    log = ten_slot_log()
    log.tags = log.tags[:, :2]
    with pytest.raises(schema.SchemaError, match=r"tags has shape \(10, 2\), expected \(10, 3\)"):
        schema.validate(log, SPEC)


def test_row_offset_and_label():
    log = ten_slot_log()
    log.slot[1] = 10
    with pytest.raises(schema.SchemaError, match="x.csv line 3"):
        schema.validate(log, SPEC, source="x.csv", row_offset=2, row_label="line")


def test_spec_round_trip_and_errors():
    assert schema.FeatureSpec.from_json(SPEC.to_json()) == SPEC
    with pytest.raises(schema.SchemaError, match="unknown spec keys"):
        schema.FeatureSpec.from_json({**SPEC.to_json(), "bogus": 1})
    with pytest.raises(schema.SchemaError, match="differ in length"):
        schema.FeatureSpec(**{**SPEC.to_json(), "user_field_sizes": (6,)})


def test_load_spec_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="data.generate"):
        schema.load_spec(str(tmp_path / "metadata.json"))


def test_shard_round_trip(tmp_path):
    log = make_log([1] * 10 + [3] * 10, [7] * 10 + [9] * 10, list(range(10)) * 2, range(20),
                   clicked=[1, 0] * 10)
    target = np.r_[np.zeros(10), np.ones(10)].astype(np.int64)
    path = str(tmp_path / "train-00000-of-00001.tfrecord")
    assert tfrecord_io.write_shard(path, log, target, SPEC) == 2
    records = list(tfrecord_io.read_shard(path, SPEC))
    assert len(records) == 2
    back = schema.ImpressionLog.concat([r[0] for r in records])
    for c in schema.COLUMNS:
        np.testing.assert_array_equal(getattr(back, c), getattr(log, c), err_msg=c)
    np.testing.assert_array_equal(np.concatenate([r[1] for r in records]), target)
    assert not os.path.exists(path + ".tmp")


def test_write_refuses_invalid_log_and_leaves_nothing(tmp_path):
    log = ten_slot_log()
    log.slot[3] = 11
    path = str(tmp_path / "train-00000-of-00001.tfrecord")
    with pytest.raises(schema.SchemaError, match="slot 11 out of range .* impression 3"):
        tfrecord_io.write_shard(path, log, np.ones(10, np.int64), SPEC)
    assert os.listdir(tmp_path) == []


def test_read_reports_record_and_impression(tmp_path):
    good = make_log([1] * 10, [7] * 10, range(10), range(10))
    bad = make_log([2] * 10, [8] * 10, range(10), range(10))
    path = str(tmp_path / "train-00003.tfrecord")
    tfrecord_io.write_shard(path, schema.ImpressionLog.concat([good, bad]),
                            np.ones(20, np.int64), SPEC)
    spec_small = schema.FeatureSpec(**{**SPEC.to_json(), "list_size": 9})
    with pytest.raises(schema.SchemaError,
                       match=r"slot 9 out of range \[0, 9\) in train-00003.tfrecord record 0 "
                             r"impression 9"):
        list(tfrecord_io.read_shard(path, spec_small))


def test_corrupt_and_missing_shards(tmp_path):
    path = tmp_path / "train-00000-of-00001.tfrecord"
    tfrecord_io.write_shard(str(path), ten_slot_log(), np.ones(10, np.int64), SPEC)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(schema.SchemaError, match="corrupt TFRecord"):
        list(tfrecord_io.read_shard(str(path), SPEC))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        list(tfrecord_io.read_shard(str(tmp_path / "nope.tfrecord"), SPEC))
    with pytest.raises(FileNotFoundError, match="no test-\\*.tfrecord shards"):
        tfrecord_io.split_files(str(tmp_path), "test")


def test_hand_encoded_examples_equal_protobuf_serialisation():
    import tensorflow as tf
    log = make_log([3] * 10, [7] * 10, range(10), range(10), clicked=[1] + [0] * 9)
    log.user_fields[:] = [5, 300]  # a multi-byte varint
    target = np.ones(10, np.int64)
    raw = tfrecord_io.encode_user(log, target)
    parsed = tf.train.Example.FromString(raw)
    assert parsed.SerializeToString(deterministic=True) == raw
    f = parsed.features.feature
    assert list(f["user_fields"].int64_list.value) == [5, 300]
    assert np.frombuffer(f["item_id"].bytes_list.value[0], "<i4").tolist() == list(range(10))
    assert sorted(f) == sorted(list(tfrecord_io.COLUMN_DTYPES) + ["user_id", "user_fields"])


def test_shard_records_of_many_sizes_equal_protobuf_serialisation(tmp_path):
    """Cached entry heads: users of 10, 20 and 3,000 impressions (a column of 36,000 bytes,
    past the varint table), two users sharing a profile, one with a multi-byte field value."""
    import tensorflow as tf
    sizes = {0: 10, 1: 3000, 2: 20, 4: 10}
    user = np.repeat(list(sizes), list(sizes.values()))
    request = np.concatenate([np.arange(n) // 10 for n in sizes.values()])
    slot = np.concatenate([np.arange(n) % 10 for n in sizes.values()])
    log = make_log(user, request, slot, np.arange(len(user)) % 100)
    log.user_fields[user == 4] = [300, 1]
    target = np.ones(len(user), np.int64)
    path = str(tmp_path / "train-00000-of-00001.tfrecord")
    spec = SPEC.__class__(**{**SPEC.__dict__, "user_field_sizes": (301, 2)})
    assert tfrecord_io.write_shard(path, log, target, spec) == 4
    raws = list(tf.data.TFRecordDataset(path).as_numpy_iterator())
    for raw, (u, n) in zip(raws, sizes.items()):
        parsed = tf.train.Example.FromString(raw)
        assert parsed.SerializeToString(deterministic=True) == raw
        assert list(parsed.features.feature["user_id"].int64_list.value) == [u]
        assert len(parsed.features.feature["slot"].bytes_list.value[0]) == 4 * n
    assert list(tf.train.Example.FromString(raws[3]).features.feature[
        "user_fields"].int64_list.value) == [300, 1]


def test_take_accepts_indices_and_masks():
    log = make_log([1] * 10, [7] * 10, range(10), range(10))
    mask = log.slot % 3 == 0
    for picked in (log.take(mask), log.take(np.flatnonzero(mask))):
        np.testing.assert_array_equal(picked.slot, [0, 3, 6, 9])
        np.testing.assert_array_equal(picked.tags[:, 0], log.tags[mask, 0])
