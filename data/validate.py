"""Checks every file of a dataset against metadata.json's SHA-256 and every record against its
schema, and prints the counts and the dataset's fingerprint.

    python -m data.validate --data_dir=DIR [--splits=train,test]

Errors name the shard, record and impression, e.g.
`slot 12 out of range [0, 10) in train-00003-of-00004.tfrecord record 517 impression 4`.
"""
from __future__ import annotations

import json

from absl import app, flags

from data import writer
from data.pipeline import load_metadata, validate_split
from data.schema import SchemaError


def main(argv):
    del argv
    if not flags.FLAGS.data_dir:
        raise app.UsageError("--data_dir is required")
    data_dir = flags.FLAGS.data_dir
    try:
        fingerprint = writer.check_digests(data_dir, load_metadata(data_dir))
        counts = {s: validate_split(data_dir, s) for s in flags.FLAGS.splits}
    except (SchemaError, FileNotFoundError) as e:
        raise SystemExit(f"data.validate: {e}") from None
    print(json.dumps({"valid": True, "impressions": counts, "fingerprint": fingerprint}))


if __name__ == "__main__":
    flags.DEFINE_string("data_dir", None, "Dataset (output of data.generate or data.convert).")
    flags.DEFINE_list("splits", ["train", "test"], "Splits to check.")
    app.run(main)
