"""Trains HRL-Rec: `python -m hrl_rec.train --flagfile=configs/quickstart.flags`.

Flags -> data -> run. The data step generates the dataset named by --data_flagfile into
--data_dir when --data_dir holds none yet, validates its shards and reads the training split
once through the input pipeline (the batches the agents consume).

Not yet here: the HRL-Rec model and its training loop (the channel selector and item
recommender, issue #4). Until they land this entry point stops after the data step and says so.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time

from absl import app, flags, logging

flags.DEFINE_string("data_dir", "datasets/sim_small", "Dataset folder (generated if missing).")
flags.DEFINE_string("data_flagfile", "configs/sim_small.flags",
                    "data.generate preset used when --data_dir holds no dataset.")
flags.DEFINE_integer("max_seq_len", 50, "m: impressions in each state (Sec. 4.3: 50).")
flags.DEFINE_integer("batch_size", 256, "Lists per batch (Sec. 4.3: 256).")
flags.DEFINE_boolean("validate_data", True, "Check every record against the schema first.")
FLAGS = flags.FLAGS


def ensure_dataset(data_dir: str, data_flagfile: str) -> None:
    """Generates the dataset in a separate process (its own flags) if it is not there."""
    if os.path.exists(os.path.join(data_dir, "metadata.json")):
        logging.info("using the dataset in %s", data_dir)
        return
    if not os.path.exists(data_flagfile):
        raise app.UsageError(f"--data_flagfile={data_flagfile} not found and --data_dir="
                             f"{data_dir} holds no dataset")
    logging.info("no dataset in %s: generating it from %s", data_dir, data_flagfile)
    cmd = [sys.executable, "-m", "data.generate", f"--flagfile={data_flagfile}",
           f"--output_dir={data_dir}"]
    done = subprocess.run(cmd)
    if done.returncode != 0:
        raise SystemExit(f"data generation failed (exit {done.returncode}): {' '.join(cmd)}")


def read_through(data_dir: str) -> dict:
    """One pass over the training split's list batches, with a progress line."""
    from data import pipeline
    from data.progress import Progress
    meta = pipeline.load_metadata(data_dir)
    lists = meta["splits"]["train"]["lists"]
    ds = pipeline.list_dataset(data_dir, "train", max_seq_len=FLAGS.max_seq_len,
                               batch_size=FLAGS.batch_size)
    progress = Progress(lists, "input pipeline", unit="lists")
    seen = 0
    for batch in ds:
        n = int(batch["mask"].shape[0])
        seen += n
        progress.update(n)
    return {"lists": seen, "expected": lists}


def main(argv):
    del argv
    start = time.monotonic()
    ensure_dataset(FLAGS.data_dir, FLAGS.data_flagfile)
    if FLAGS.validate_data:
        from data.pipeline import validate_split
        for split in ("train", "test"):
            logging.info("validated %d %s impressions", validate_split(FLAGS.data_dir, split),
                         split)
    counts = read_through(FLAGS.data_dir)
    if counts["lists"] != counts["expected"]:
        raise SystemExit(f"the pipeline read {counts['lists']} lists, metadata.json says "
                         f"{counts['expected']}")
    print(f"data step done in {time.monotonic() - start:.0f}s: {counts['lists']} training lists "
          f"in {FLAGS.data_dir}.\nThe HRL-Rec model is not implemented yet (issue #4): nothing "
          f"was trained.", flush=True)


if __name__ == "__main__":
    app.run(main)
