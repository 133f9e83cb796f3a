"""Trains and evaluates one Table 2 baseline.

    python -m baselines.train --model=deepfm --flagfile=configs/baselines.flags \\
        --data_dir=datasets/sim_small --model_dir=runs/deepfm

Training: Adam on the classical CTR cross-entropy (the paper's Sec. 4.2), one epoch at a time.
The last --valid_days of the training period are held out (chronologically, never the test
split) for early stopping; the best epoch's weights are restored, then evaluated once on the
test split. Each epoch is checkpointed (MODEL_DIR/ckpt): the same command resumes a killed or
interrupted run from its last finished epoch. Writes MODEL_DIR/eval.json (AUC, logloss, RelaImpr vs LR when --lr_auc is given
or MODEL_DIR/../lr/eval.json exists, oracle AUC when the data has one, examples/s, wall time,
flags), MODEL_DIR/model.keras and TensorBoard logs under MODEL_DIR/tb.
"""
from __future__ import annotations

import json
import os
import time

import keras
import numpy as np
import tensorflow as tf
from absl import app, flags

from baselines.models import DEFAULTS, MODELS, CTRModel
from data import pipeline
from data.progress import Progress
from data.stats import auc_by_slot, click_metrics, fair_ceilings, headroom_share, rela_impr
from data.files import FolderLock, FolderLocked, write_json
from hrl_rec.divergence import TrainingDiverged, check_losses, check_weights

FLAGS = flags.FLAGS


def define_flags() -> None:
    flags.DEFINE_enum("model", None, MODELS, "Which baseline.")
    flags.DEFINE_string("data_dir", None, "Dataset folder (data.generate / data.convert output).")
    flags.DEFINE_string("model_dir", None, "Where eval.json, the model and TensorBoard logs go.")
    flags.DEFINE_integer("epochs", 10, "Maximum epochs.")
    flags.DEFINE_integer("patience", 2, "Epochs without validation AUC gain before stopping.")
    flags.DEFINE_float("valid_days", 1.0, "Days at the end of the training period held out.")
    flags.DEFINE_integer("batch_size", 1024, "Impressions per batch.")
    flags.DEFINE_float("learning_rate", 1e-3, "Adam learning rate.")
    flags.DEFINE_integer("max_seq_len", 50, "History impressions pooled per example (m).")
    flags.DEFINE_integer("seed", 0, "Seed of initialisation and shuffling.")
    flags.DEFINE_boolean("deterministic", False, "Bit-identical reruns (TensorFlow's op "
                         "determinism; slower on CPU).")
    flags.DEFINE_float("lr_auc", None, "Test AUC of LR on the same split, for RelaImpr.")
    flags.DEFINE_integer("embedding_dim", DEFAULTS["embedding_dim"], "Field embedding size d.")
    flags.DEFINE_list("dnn_units", [str(u) for u in DEFAULTS["dnn_units"]], "DNN tower widths.")
    flags.DEFINE_float("dropout", DEFAULTS["dropout"], "Dropout rate in DNN / AFM.")
    flags.DEFINE_float("l2", DEFAULTS["l2"], "L2 on embeddings.")
    flags.DEFINE_integer("attention_units", DEFAULTS["attention_units"], "AFM attention size t.")
    flags.DEFINE_integer("heads", DEFAULTS["heads"], "AutoInt attention heads.")
    flags.DEFINE_integer("head_size", DEFAULTS["head_size"], "AutoInt size per head.")
    flags.DEFINE_integer("interacting_layers", DEFAULTS["interacting_layers"],
                         "AutoInt interacting layers.")
    flags.DEFINE_boolean("history", DEFAULTS["history"], "Use the pooled m-impression history.")
    flags.DEFINE_list("ignore_fields", [], "Fields left out of the model, for feature "
                      "ablations: user_id, item_id, channel, slot, user_fields.NAME, "
                      "item_fields.NAME, context.NAME (names from the data's spec).")


FEATURES = ("user_id", "item_id", "channel", "slot", "user_fields", "item_fields", "context",
            "tags", "hist_item_id", "hist_mask")


def _features(batch):
    return {k: batch[k] for k in FEATURES}


def predict(model, ds):
    """-> (labels, predictions, true_ctr, slots) over a dataset."""
    step = tf.function(lambda f: model(f, training=False))
    labels, preds, oracle, slots = [], [], [], []
    for batch in ds:
        preds.append(step(_features(batch)).numpy())
        labels.append(batch["label"].numpy())
        oracle.append(batch["true_ctr"].numpy())
        slots.append(batch["slot"].numpy())
    return tuple(np.concatenate(x) for x in (labels, preds, oracle, slots))


def evaluate(model, ds) -> dict:
    """click_metrics, plus `auc_by_slot`: the mean within-slot AUC (data.stats.auc_by_slot),
    comparable with HRL-Rec's auc_click_by_slot and auc_cosine_by_slot."""
    y, p, oracle, slots = predict(model, ds)
    return {**click_metrics(y, p, oracle), "auc_by_slot": auc_by_slot(y, p, slots),
            "examples": int(len(y))}


def _batch_update(model, learning_rate: float, optimizer=None):
    """An Adam update on the CTR cross-entropy (+ the model's regularisation losses)."""
    optimizer = optimizer or keras.optimizers.Adam(learning_rate)
    loss_fn = keras.losses.BinaryCrossentropy()

    def update(features, labels):
        with tf.GradientTape() as tape:
            p = model(features, training=True)
            loss = loss_fn(tf.cast(labels, tf.float32), p) + tf.add_n(
                [tf.constant(0.0)] + model.losses)
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        return loss

    return update


def make_train_step(model, learning_rate: float, optimizer=None):
    """One compiled training step on a batch (for streamed batches)."""
    return tf.function(_batch_update(model, learning_rate, optimizer), reduce_retracing=True)


def make_epoch_fn(model, learning_rate: float, batch_size: int):
    """One compiled function per epoch over in-memory tensors: the batches are gathered in graph
    (no Python per batch). `epoch(features, labels, order)` -> mean training loss."""
    update = _batch_update(model, learning_rate)

    @tf.function
    def epoch(features, labels, order):
        n = tf.shape(order)[0]
        steps = (n + batch_size - 1) // batch_size
        total = tf.constant(0.0)
        for i in tf.range(steps):
            idx = order[i * batch_size:tf.minimum((i + 1) * batch_size, n)]
            total += update({k: tf.gather(v, idx) for k, v in features.items()},
                            tf.gather(labels, idx))
        return total / tf.cast(steps, tf.float32)

    return epoch


# Flags that may change between a run and its resumption (the rest must match).
RESUMABLE_FLAGS = ("epochs", "patience", "lr_auc", "model_dir", "data_dir", "deterministic")


class EpochCheckpoint:
    """MODEL_DIR/ckpt: every model and optimizer variable and the loop's counters, written after
    each epoch's validation (tf.train.CheckpointManager: a checkpoint is whole or absent), and
    best.weights.h5, the best epoch's weights. A killed run resumes from its last finished
    epoch; each epoch reads the training data in an order seeded by seed + epoch, so with
    --deterministic the resumed run ends with the uninterrupted run's weights."""

    def __init__(self, model, optimizer, model_dir: str, flags_record: dict):
        self.model, self.model_dir = model, model_dir
        self.counters = {
            "epoch": tf.Variable(0, dtype=tf.int64), "global_step": tf.Variable(0, tf.int64),
            "examples": tf.Variable(0, dtype=tf.int64),
            "train_seconds": tf.Variable(0.0, dtype=tf.float64),
            "best_auc": tf.Variable(-1.0, dtype=tf.float64),
            "best_logloss": tf.Variable(0.0, dtype=tf.float64),
            "best_epoch": tf.Variable(-1, dtype=tf.int64),
            "stopped": tf.Variable(False)}
        self.checkpoint = tf.train.Checkpoint(
            variables=list(model.variables), optimizer=list(optimizer.variables),
            **self.counters)
        self.manager = tf.train.CheckpointManager(self.checkpoint,
                                                  os.path.join(model_dir, "ckpt"), 2)
        self.best_path = os.path.join(model_dir, "best.weights.h5")
        self.flags_path = os.path.join(model_dir, "ckpt", "flags.json")
        self.flags_record = {k: v for k, v in flags_record.items()
                             if k not in RESUMABLE_FLAGS}

    def restore(self) -> bool:
        latest = self.manager.latest_checkpoint
        if not latest:
            return False
        if os.path.exists(self.flags_path):
            with open(self.flags_path) as f:
                saved = json.load(f)
            changed = sorted(k for k in set(saved) | set(self.flags_record)
                             if saved.get(k) != self.flags_record.get(k))
            if changed:
                raise ValueError(
                    f"--model_dir={self.model_dir} holds a checkpoint of other flags ("
                    + ", ".join(f"--{k}={saved.get(k)} there, {self.flags_record.get(k)} now"
                                for k in changed)
                    + "): resume with its flags, or train into a new --model_dir")
        try:
            self.checkpoint.restore(latest).assert_existing_objects_matched()
        except (AssertionError, ValueError) as e:
            raise ValueError(f"{latest} does not match this model: "
                             f"{str(e).splitlines()[0]}. Train into a new --model_dir") from None
        print(f"resumed from {latest} after epoch {int(self.counters['epoch'])}", flush=True)
        return True

    def save(self) -> None:
        os.makedirs(os.path.dirname(self.flags_path), exist_ok=True)
        write_json(self.flags_path, self.flags_record)
        self.manager.save(checkpoint_number=int(self.counters["epoch"]))

    def save_best(self) -> None:
        tmp = self.best_path + ".tmp.weights.h5"
        self.model.save_weights(tmp)
        os.replace(tmp, self.best_path)


def train(model, data_dir: str, model_dir: str, *, epochs: int, patience: int,
          valid_days: float, batch_size: int, learning_rate: float, max_seq_len: int,
          seed: int, flags_record: dict | None = None) -> dict:
    """Trains with early stopping, checkpointing each epoch into model_dir (resumed when
    model_dir holds a checkpoint) -> the validation record, counters and the test dataset;
    the model holds the best epoch's weights."""
    meta = pipeline.load_metadata(data_dir)
    test_start = meta["chronological_split"]["test_start_timestamp"]
    valid_start = int(test_start - valid_days * 86400)
    common = dict(max_seq_len=max_seq_len, batch_size=batch_size)

    def train_ds(epoch: int):
        return pipeline.impression_dataset(data_dir, "train", max_time=valid_start,
                                           seed=seed + epoch, **common)

    valid_ds = pipeline.impression_dataset(data_dir, "train", min_time=valid_start,
                                           shuffle=False, seed=seed, **common)
    first = next(iter(valid_ds.take(1)), None) or next(iter(train_ds(0).take(1)))
    model(_features(first), training=False)                     # build, to restore into
    optimizer = keras.optimizers.Adam(learning_rate)
    optimizer.build(model.trainable_variables)
    step = make_train_step(model, learning_rate, optimizer)
    state = EpochCheckpoint(model, optimizer, model_dir, flags_record or {})
    c = state.counters
    state.restore()

    writer = tf.summary.create_file_writer(os.path.join(model_dir, "tb"))
    train_examples = meta["splits"]["train"]["impressions"] * max(
        0.0, 1 - valid_days * 86400 / max(test_start, 1))

    def kept() -> str:
        saved = (f"The checkpoint of epoch {int(c['epoch'])} in {model_dir}/ckpt is intact"
                 if int(c["epoch"]) else "Nothing was saved")
        return (f"{saved} (the best epoch so far: {max(int(c['best_epoch']), 0)}); "
                f"train again with a lower --learning_rate (now {learning_rate:g}).")

    while int(c["epoch"]) < epochs and not bool(c["stopped"]):
        epoch = int(c["epoch"])
        progress = Progress(train_examples, f"epoch {epoch + 1}/{epochs}", unit="examples")
        start = time.monotonic()
        global_step, examples = int(c["global_step"]), int(c["examples"])
        for batch in train_ds(epoch):
            loss = step(_features(batch), batch["label"])
            n = int(batch["label"].shape[0])
            examples += n
            global_step += 1
            check_losses({"loss/train": loss}, global_step, kept)
            progress.update(n, extra=f"loss {float(loss):.4f}")
            if global_step % 50 == 0:
                with writer.as_default():
                    tf.summary.scalar("loss/train", loss, step=global_step)
        c["train_seconds"].assign_add(time.monotonic() - start)
        c["global_step"].assign(global_step)
        c["examples"].assign(examples)
        check_weights(model.weights, global_step, kept)
        valid = evaluate(model, valid_ds)
        with writer.as_default():
            tf.summary.scalar("eval/valid_auc", valid["auc"], step=global_step)
            tf.summary.scalar("eval/valid_logloss", valid["logloss"], step=global_step)
        print(f"epoch {epoch + 1}: valid auc {valid['auc']:.4f} logloss {valid['logloss']:.4f}",
              flush=True)
        if valid["auc"] > float(c["best_auc"]):
            c["best_auc"].assign(valid["auc"])
            c["best_logloss"].assign(valid["logloss"])
            c["best_epoch"].assign(epoch + 1)
            state.save_best()
        elif epoch + 1 - int(c["best_epoch"]) >= patience:
            c["stopped"].assign(True)
        c["epoch"].assign(epoch + 1)
        state.save()
    if int(c["best_epoch"]) > 0:
        model.load_weights(state.best_path)
    best = {"auc": float(c["best_auc"]), "logloss": float(c["best_logloss"]),
            "epoch": int(c["best_epoch"])}
    return {"valid": best, "steps": int(c["global_step"]), "train_examples": int(c["examples"]),
            "examples_per_s": int(c["examples"]) / max(float(c["train_seconds"]), 1e-9),
            "test_ds": pipeline.impression_dataset(data_dir, "test", shuffle=False, seed=seed,
                                                   **common)}


def main(argv):
    del argv
    for name in ("model", "data_dir", "model_dir"):
        if not FLAGS[name].value:
            raise app.UsageError(f"--{name} is required")
    meta = pipeline.load_metadata(FLAGS.data_dir)
    hparams = {k: FLAGS[k].value for k in DEFAULTS}
    hparams["dnn_units"] = tuple(int(u) for u in FLAGS.dnn_units)
    hparams["ignore_fields"] = tuple(FLAGS.ignore_fields)
    keras.utils.set_random_seed(FLAGS.seed)
    if FLAGS.deterministic:
        tf.config.experimental.enable_op_determinism()
    model = CTRModel(FLAGS.model, meta["spec"], **hparams)
    lock = FolderLock(FLAGS.model_dir, "--model_dir")
    try:
        os.makedirs(FLAGS.model_dir, exist_ok=True)
        lock.acquire()
    except FolderLocked as e:
        raise SystemExit(f"{FLAGS.model}: {e}") from None
    except OSError as e:
        raise SystemExit(f"{FLAGS.model}: cannot write into --model_dir={FLAGS.model_dir}: "
                         f"{e}") from None
    try:
        _train_and_report(model, meta)
    except (OSError, tf.errors.ResourceExhaustedError, tf.errors.PermissionDeniedError) as e:
        text = e.message if isinstance(e, tf.errors.OpError) else str(e)
        raise SystemExit(f"{FLAGS.model}: cannot write into --model_dir={FLAGS.model_dir}: "
                         f"{text.strip().splitlines()[-1] if text.strip() else e}") from None
    finally:
        lock.release()


def _train_and_report(model, meta) -> None:
    start = time.monotonic()
    try:
        result = train(model, FLAGS.data_dir, FLAGS.model_dir, epochs=FLAGS.epochs,
                       patience=FLAGS.patience, valid_days=FLAGS.valid_days,
                       batch_size=FLAGS.batch_size, learning_rate=FLAGS.learning_rate,
                       max_seq_len=FLAGS.max_seq_len, seed=FLAGS.seed,
                       flags_record={k: FLAGS[k].value for k in FLAGS if k in _OWN_FLAGS})
    except (TrainingDiverged, ValueError) as e:
        raise SystemExit(f"{FLAGS.model}: {e}") from None
    test = evaluate(model, result.pop("test_ds"))
    lr_auc = FLAGS.lr_auc
    lr_eval = os.path.join(os.path.dirname(os.path.abspath(FLAGS.model_dir)), "lr", "eval.json")
    if lr_auc is None and FLAGS.model != "lr" and os.path.exists(lr_eval):
        with open(lr_eval) as f:
            lr_auc = json.load(f)["auc"]
    report = {"model": FLAGS.model, **test, **result, "wall_seconds": time.monotonic() - start,
              "rela_impr_vs_lr": rela_impr(test["auc"], lr_auc) if lr_auc else None,
              **fair_ceilings(meta),
              "headroom_share": headroom_share(test["auc"], lr_auc,
                                               fair_ceilings(meta)["learnable_ceiling_auc"]),
              "flags": {k: FLAGS[k].value for k in FLAGS if k in _OWN_FLAGS},
              "data_fingerprint": meta.get("fingerprint")}  # which dataset, exactly
    tmp = os.path.join(FLAGS.model_dir, "model.tmp.keras")
    model.save(tmp)
    os.replace(tmp, os.path.join(FLAGS.model_dir, "model.keras"))
    write_json(os.path.join(FLAGS.model_dir, "eval.json"), report)
    print(json.dumps({k: report[k] for k in ("model", "auc", "logloss", "oracle_auc",
                                             "oracle_auc_noise_free", "learnable_ceiling_auc",
                                             "rela_impr_vs_lr", "headroom_share",
                                             "examples_per_s")
                      if k in report}), flush=True)


_OWN_FLAGS = {"model", "data_dir", "model_dir", "epochs", "patience", "valid_days", "batch_size",
              "learning_rate", "max_seq_len", "seed", "lr_auc", "deterministic", *DEFAULTS}

if __name__ == "__main__":
    define_flags()
    app.run(main)
