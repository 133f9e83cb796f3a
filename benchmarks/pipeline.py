"""Input pipeline speed on an IRecSim dataset.

    python -m benchmarks.pipeline [--data_dir=DIR] [--batch_size=256] [--max_seq_len=50]

Without --data_dir a 3,000-user dataset is generated in a temporary folder first. Lines:
`pipeline_impressions_per_s` (HRL-Rec list batches: m-history windows for every slot; counts the
list impressions delivered), `pipeline_lists_per_s`, and `pipeline_baseline_impressions_per_s`
(per-impression batches with pooled-history inputs, the baselines' feed).
"""
import os
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags  # noqa: E402

from benchmarks.common import emit  # noqa: E402
from data import generate, pipeline  # noqa: E402
from data.sim_config import SimConfig  # noqa: E402

flags.DEFINE_string("data_dir", None, "Dataset to read; default: generate a small one.")
flags.DEFINE_integer("batch_size", 256, "Lists per batch (the paper: 256).")
flags.DEFINE_integer("max_seq_len", 50, "m, history impressions per state (the paper: 50).")
flags.DEFINE_integer("batches", 150, "Batches timed after 10 warm-up batches.")
FLAGS = flags.FLAGS


def _time(ds, count_key, batches):
    it = iter(ds)
    for _ in range(10):
        next(it)
    n = 0
    start = time.perf_counter()
    for _ in range(batches):
        n += count_key(next(it))
    return n, time.perf_counter() - start


def run(data_dir):
    settings = {"batch_size": FLAGS.batch_size, "max_seq_len": FLAGS.max_seq_len,
                "cores": os.cpu_count(), "data_dir": os.path.basename(data_dir.rstrip("/"))}
    ds = pipeline.list_dataset(data_dir, "train", max_seq_len=FLAGS.max_seq_len,
                               batch_size=FLAGS.batch_size, repeat=True)
    m = FLAGS.max_seq_len
    imps, secs = _time(ds, lambda b: int(b["mask"][:, m:].numpy().sum()), FLAGS.batches)
    emit("pipeline_impressions_per_s", imps / secs, "impressions/s", **settings)
    emit("pipeline_lists_per_s", FLAGS.batches * FLAGS.batch_size / secs, "lists/s", **settings)
    ds = pipeline.impression_dataset(data_dir, "train", max_seq_len=m,
                                     batch_size=FLAGS.batch_size * 4, repeat=True)
    imps, secs = _time(ds, lambda b: int(b["label"].shape[0]), FLAGS.batches)
    emit("pipeline_baseline_impressions_per_s", imps / secs, "impressions/s",
         **{**settings, "batch_size": FLAGS.batch_size * 4})


def main(argv):
    del argv
    if FLAGS.data_dir:
        run(FLAGS.data_dir)
        return
    with tempfile.TemporaryDirectory() as out:
        generate.generate(SimConfig(n_users=3000), out, n_shards=2, processes=2)
        run(out)


if __name__ == "__main__":
    app.run(main)
