"""Trains HRL-Rec: `python -m hrl_rec.train --flagfile=configs/quickstart.flags`.

flags -> dataset (generated from --data_flagfile when --data_dir holds none, then validated)
-> hrl_rec.runner.Runner -> MODEL_DIR/{eval.json, model.keras, best.weights.h5, ckpt/, tb/}.
MODEL_DIR defaults to runs/{experiment}__{seed}__{unix time}; rerunning with the same
--model_dir resumes from its last checkpoint. `tensorboard --logdir runs/` shows loss/*, q/*,
reward/*, grad/*, eval/*, the action histograms and the HParams record of every run.
"""
from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import time

from absl import app, flags, logging

FLAGS = flags.FLAGS


def define_run_flags(experiment: str) -> None:
    """The flags of a training run that every agent's trainer shares (baselines/dqn_train.py)."""
    flags.DEFINE_string("data_dir", "datasets/sim_small", "Dataset folder (generated if missing).")
    flags.DEFINE_string("data_flagfile", "configs/sim_small.flags",
                        "data.generate preset used when --data_dir holds no dataset.")
    flags.DEFINE_string("model_dir", None, "Run folder; default runs/{experiment}__{seed}__{time}."
                        " An existing one is resumed from its last checkpoint.")
    flags.DEFINE_string("experiment", experiment, "Run name prefix (for the default model_dir).")
    flags.DEFINE_integer("epochs", 3, "Maximum passes over the training lists.")
    flags.DEFINE_integer("max_steps", 0, "Stop after this many train steps in total (0: epochs "
                         "only).")
    flags.DEFINE_integer("patience", 1, "Epochs without a validation AUC gain before stopping.")
    flags.DEFINE_float("valid_days", 1.0, "Last days of the training period held out for "
                       "validation (chronological; the test split is never used to choose).")
    flags.DEFINE_integer("seed", 0, "Seed of initialisation, shuffling, candidates and noise.")
    flags.DEFINE_integer("log_every", 20, "Steps between TensorBoard summaries.")
    flags.DEFINE_integer("checkpoint_every", 200, "Steps between checkpoints.")
    flags.DEFINE_integer("eval_batch_size", 512, "Lists per evaluation batch.")
    flags.DEFINE_boolean("validate_data", True, "Check every record against the schema first.")
    flags.DEFINE_boolean("deterministic", False, "Bit-identical reruns: TensorFlow's op "
                         "determinism (tf.config.experimental.enable_op_determinism), slower on "
                         "CPU; without it threaded reductions make reruns of a seed differ "
                         "slightly.")


def define_flags() -> None:
    from data.config_flags import define_flags as define_config_flags
    from hrl_rec.config import HRLConfig
    from hrl_rec import runner
    from hrl_rec.distribute import STRATEGIES
    define_run_flags("hrl_rec")
    flags.DEFINE_enum("eval_score", "click", list(runner.EVAL_SCORES),
                      "The score whose validation AUC picks the best epoch and whose test AUC "
                      "is eval.json's `auc`: click = f(a_t, d_t) of Eq. 16; cosine = "
                      "cos(a^h_t, d_t), the score the HRA serves by (Table 4's w/o L_c, where f "
                      "is never trained). eval.json has both as auc_click and auc_cosine.")
    flags.DEFINE_enum("select_by", "auc", list(runner.SELECT_BY),
                      "The validation figure that picks the best epoch (early stopping and the "
                      "weights evaluated on test): auc = the --eval_score's AUC; the others are "
                      "the served score's (hrl_rec/diagnostics.py), e.g. auc_cosine_by_slot, "
                      "the within-slot AUC of cos(a^h_t, d_t), the score HRL-Rec serves by.")
    flags.DEFINE_enum("strategy", "default", list(STRATEGIES),
                      "tf.distribute strategy (hrl_rec/distribute.py; README 'Training on a "
                      "cluster'): multi_worker and parameter_server read TF_CONFIG.")
    flags.DEFINE_integer("cpu_replicas", 0, "With --strategy=mirrored on a machine without "
                         "GPUs: split the CPU into this many logical devices (replicas).")
    flags.DEFINE_integer("server_inter_op_threads", 0, "parameter_server worker/ps tasks: "
                         "inter-op threads of the server (0: workers + 1, the least that "
                         "cannot deadlock).")
    flags.DEFINE_integer("dataset_wait_s", 3600, "multi_worker: how long a non-chief worker "
                         "waits for the chief to generate a missing dataset.")
    define_config_flags(HRLConfig)


def validate_dataset() -> None:
    """Before any step: every file metadata.json lists is there, and with --validate_data its
    bytes match the recorded SHA-256 and every record of both splits its schema. A bad
    dataset exits naming the file (and the record)."""
    from data import writer
    from data.pipeline import load_metadata, validate_split
    from data.schema import SchemaError
    try:
        meta = load_metadata(FLAGS.data_dir)
        if FLAGS.validate_data:
            writer.check_digests(FLAGS.data_dir, meta)
            for split in ("train", "test"):
                print(f"validated {validate_split(FLAGS.data_dir, split)} {split} impressions",
                      flush=True)
        else:
            for name in sorted(meta.get("sha256", {})):
                path = os.path.join(FLAGS.data_dir, name)
                if not os.path.exists(path):
                    raise SchemaError(f"{path}: missing (metadata.json lists it)")
    except (SchemaError, FileNotFoundError) as e:
        raise SystemExit(f"--data_dir={FLAGS.data_dir}: {e}; regenerate or re-convert the "
                         "dataset") from None


def run_settings(**extra):
    """The run's RunSettings from the shared run flags (define_run_flags) and `extra`."""
    from hrl_rec import runner
    model_dir = FLAGS.model_dir or os.path.join(
        "runs", f"{FLAGS.experiment}__{FLAGS.seed}__{int(time.time())}")
    return runner.RunSettings(
        data_dir=FLAGS.data_dir, model_dir=model_dir, epochs=FLAGS.epochs,
        max_steps=FLAGS.max_steps, patience=FLAGS.patience, valid_days=FLAGS.valid_days,
        seed=FLAGS.seed, log_every=FLAGS.log_every, checkpoint_every=FLAGS.checkpoint_every,
        eval_batch_size=FLAGS.eval_batch_size, deterministic=FLAGS.deterministic, **extra)


def ensure_dataset(data_dir: str, data_flagfile: str) -> None:
    """Generates the dataset in a separate process (its own flags) if it is not there."""
    if os.path.exists(os.path.join(data_dir, "metadata.json")):
        logging.info("using the dataset in %s", data_dir)
        return
    if not os.path.exists(data_flagfile):
        raise app.UsageError(f"--data_flagfile={data_flagfile} not found and --data_dir="
                             f"{data_dir} holds no dataset")
    print(f"no dataset in {data_dir}: generating it from {data_flagfile}", flush=True)
    cmd = [sys.executable, "-m", "data.generate", f"--flagfile={data_flagfile}",
           f"--output_dir={data_dir}"]
    done = subprocess.run(cmd)
    if done.returncode != 0:
        raise SystemExit(f"data generation failed (exit {done.returncode}): {' '.join(cmd)}")


def wait_for_dataset(data_dir: str, seconds: float) -> None:
    """A non-chief worker's wait for the chief to generate the dataset."""
    path, start = os.path.join(data_dir, "metadata.json"), time.monotonic()
    while not os.path.exists(path):
        if time.monotonic() - start > seconds:
            raise SystemExit(f"{path} did not appear within --dataset_wait_s={seconds:g}")
        print(f"waiting for the chief to write {path}", flush=True)
        time.sleep(min(10.0, seconds))


def make_strategy():
    """The --strategy of this process (before any other TensorFlow op), or None for the
    worker and ps tasks of a parameter-server cluster, which only serve."""
    from hrl_rec import distribute
    check_strategy_flags(FLAGS.strategy, FLAGS.cpu_replicas, FLAGS.model_dir)
    try:
        distribute.split_cpu(FLAGS.cpu_replicas)
        kind, _ = distribute.task_of(FLAGS.strategy)
        if FLAGS.strategy == "parameter_server" and kind in ("worker", "ps"):
            distribute.serve(FLAGS.strategy, FLAGS.server_inter_op_threads)
            return None
        strategy = distribute.make_strategy(FLAGS.strategy)
    except ValueError as e:
        raise app.UsageError(str(e)) from None
    check_strategy_flags(FLAGS.strategy, FLAGS.cpu_replicas, FLAGS.model_dir,
                         FLAGS.batch_size, strategy.num_replicas_in_sync)
    return strategy


def check_strategy_flags(strategy: str, cpu_replicas: int, model_dir: str | None,
                         batch_size: int = 0, replicas: int = 1) -> None:
    """Raises app.UsageError naming the flag for inconsistent distribution flags."""
    if cpu_replicas and strategy != "mirrored":
        raise app.UsageError(f"--cpu_replicas={cpu_replicas}: only used with "
                             f"--strategy=mirrored (got --strategy={strategy})")
    if strategy in ("multi_worker", "parameter_server") and not model_dir:
        raise app.UsageError(f"--strategy={strategy}: --model_dir is required (every task of "
                             f"the cluster must name the same shared folder)")
    if batch_size % replicas:
        raise app.UsageError(f"--batch_size={batch_size}: expected a multiple of the "
                             f"{replicas} replicas of --strategy={strategy} (the global batch "
                             f"is split evenly)")


def main(argv):
    del argv
    from data.config_flags import from_flags
    from data.pipeline import load_metadata
    from hrl_rec import config, distribute
    cfg = from_flags(config.HRLConfig)
    strategy = make_strategy()
    if strategy is None:
        return
    if distribute.is_chief(FLAGS.strategy):
        ensure_dataset(FLAGS.data_dir, FLAGS.data_flagfile)
    else:
        wait_for_dataset(FLAGS.data_dir, FLAGS.dataset_wait_s)
    try:
        config.validate(cfg, len(load_metadata(FLAGS.data_dir)["spec"]["channel_names"]))
    except ValueError as e:
        raise app.UsageError(str(e)) from None
    validate_dataset()
    settings = run_settings(eval_score=FLAGS.eval_score, select_by=FLAGS.select_by,
                            strategy=FLAGS.strategy)
    record = {name: FLAGS[name].value for name in RUN_FLAGS + HRL_RUN_FLAGS + [
        f.name for f in dataclasses.fields(config.HRLConfig)]}
    print(f"training HRL-Rec into {settings.model_dir}", flush=True)
    run_or_exit("HRL-Rec", cfg, settings, record, strategy)


def run_or_exit(label: str, *args, **kwargs) -> None:
    """runner.run(*args, **kwargs) for a CLI: a diverged run, a mismatched checkpoint or a
    --model_dir another run holds exits with its message after `label` (no traceback), Ctrl-C with status 130 (the runner has said
    where it stopped)."""
    import tensorflow as tf

    from data.files import FolderLocked
    from hrl_rec import runner
    from hrl_rec.divergence import TrainingDiverged
    model_dir = getattr(args[1] if len(args) > 1 else kwargs.get("settings"), "model_dir", "")
    try:
        runner.run(*args, **kwargs)
    except (TrainingDiverged, runner.CheckpointMismatch, FolderLocked) as e:
        raise SystemExit(f"{label}: {e}") from None
    except KeyboardInterrupt:
        raise SystemExit(130) from None
    except (OSError, tf.errors.ResourceExhaustedError, tf.errors.PermissionDeniedError,
            tf.errors.FailedPreconditionError, tf.errors.UnknownError) as e:
        text = e.message if isinstance(e, tf.errors.OpError) else str(e)
        if not model_dir or (isinstance(e, tf.errors.OpError) and model_dir not in text):
            raise                     # not a write into the run folder: a real bug
        raise SystemExit(write_failure(label, model_dir, text)) from None


def write_failure(label: str, model_dir: str, error: str) -> str:
    """The message for a run that could not write into its folder (a full disk, a read-only
    or foreign folder): what failed, and that the last checkpoint is intact."""
    import tensorflow as tf
    reason = error.strip().splitlines()[-1] if error.strip() else "write failed"
    reason = reason.split("}}")[-1].strip()       # drop TensorFlow's op prefix
    latest = tf.train.latest_checkpoint(os.path.join(model_dir, "ckpt"))
    kept = (f"the last checkpoint, {latest}, is intact: make room or make the folder "
            "writable and rerun the same command to resume from it" if latest else
            "no checkpoint was written")
    return f"{label}: cannot write into --model_dir={model_dir}: {reason}; {kept}"


RUN_FLAGS = ["data_dir", "data_flagfile", "model_dir", "experiment", "epochs", "max_steps",
             "patience", "valid_days", "seed", "log_every", "checkpoint_every",
             "eval_batch_size", "validate_data", "deterministic"]
HRL_RUN_FLAGS = ["eval_score", "select_by", "strategy", "cpu_replicas"]

if __name__ == "__main__":
    define_flags()
    app.run(main)
