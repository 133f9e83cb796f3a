"""Hand-built logs for data tests."""
import numpy as np

from data import writer
from data.schema import FeatureSpec, ImpressionLog

SPEC = FeatureSpec(
    channel_names=("news", "article", "long_video", "short_video"), list_size=10, max_tags=3,
    n_users=5, n_items=100, n_tags=20, user_field_names=("age", "gender"),
    user_field_sizes=(6, 2), item_field_names=("quality_bucket",), item_field_sizes=(5,),
    context_field_names=("hour", "weekday"), context_field_sizes=(24, 7))


def make_log(user_id, request_id, slot, item_id, clicked=None, timestamp=None) -> ImpressionLog:
    """A valid log: channel = item % 4, tags = (item % 19 + 1, 0, 0), dwell 30 s per click."""
    item_id = np.asarray(item_id, np.int64)
    n = len(item_id)
    clicked = np.zeros(n, np.int64) if clicked is None else np.asarray(clicked, np.int64)
    request_id = np.asarray(request_id, np.int64)
    timestamp = request_id * 60 if timestamp is None else np.asarray(timestamp, np.int64)
    tags = np.zeros((n, 3), np.int64)
    tags[:, 0] = item_id % 19 + 1
    user_id = np.asarray(user_id, np.int64)
    return ImpressionLog(
        user_id=user_id, request_id=request_id, timestamp=timestamp,
        slot=np.asarray(slot, np.int64), channel=item_id % 4, item_id=item_id, clicked=clicked,
        novel_tags=np.zeros(n, np.int64), dwell=(30.0 * clicked).astype(np.float32),
        propensity=np.full(n, 0.5, np.float32), true_ctr=np.full(n, 0.1, np.float32),
        item_fields=(item_id % 5)[:, None], tags=tags,
        context=np.stack([timestamp // 3600 % 24, np.zeros(n, np.int64)], 1),
        user_fields=np.stack([user_id % 6, user_id % 2], 1))


def write_dataset(directory, log, target=None, test_log=None, test_target=None,
                  history_context=100) -> None:
    """Writes a one-shard dataset (train, and test if given) with metadata and item table."""
    target = np.ones(len(log), np.int64) if target is None else target
    writer.write_split(str(directory), "train", log, target, SPEC, 0, 1)
    if test_log is not None:
        writer.write_split(str(directory), "test", test_log, test_target, SPEC, 0, 1)
    writer.write_json(str(directory / "metadata.json"),
                      {"spec": SPEC.to_json(), "history_context": history_context})
    items = np.arange(SPEC.n_items)
    tags = np.zeros((SPEC.n_items, 3), np.int64)
    tags[:, 0] = items % 19 + 1
    writer.save_item_table(str(directory), items % 4, (items % 5)[:, None], tags)
