"""Trains and evaluates one Table 2 baseline.

    python -m baselines.train --model=deepfm --flagfile=configs/baselines.flags \\
        --data_dir=datasets/sim_small --model_dir=runs/deepfm

Training: Adam on the classical CTR cross-entropy (the paper's Sec. 4.2), one epoch at a time.
The last --valid_days of the training period are held out (chronologically, never the test
split) for early stopping; the best epoch's weights are restored, then evaluated once on the
test split. Writes MODEL_DIR/eval.json (AUC, logloss, RelaImpr vs LR when --lr_auc is given
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


def _batch_update(model, learning_rate: float):
    """An Adam update on the CTR cross-entropy (+ the model's regularisation losses)."""
    optimizer = keras.optimizers.Adam(learning_rate)
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


def make_train_step(model, learning_rate: float):
    """One compiled training step on a batch (for streamed batches)."""
    return tf.function(_batch_update(model, learning_rate), reduce_retracing=True)


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


def train(model, data_dir: str, model_dir: str, *, epochs: int, patience: int,
          valid_days: float, batch_size: int, learning_rate: float, max_seq_len: int,
          seed: int) -> dict:
    meta = pipeline.load_metadata(data_dir)
    test_start = meta["chronological_split"]["test_start_timestamp"]
    valid_start = int(test_start - valid_days * 86400)
    common = dict(max_seq_len=max_seq_len, batch_size=batch_size, seed=seed)
    train_ds = pipeline.impression_dataset(data_dir, "train", max_time=valid_start, **common)
    valid_ds = pipeline.impression_dataset(data_dir, "train", min_time=valid_start,
                                           shuffle=False, **common)
    step = make_train_step(model, learning_rate)

    writer = tf.summary.create_file_writer(os.path.join(model_dir, "tb"))
    train_examples = meta["splits"]["train"]["impressions"] * max(
        0.0, 1 - valid_days * 86400 / max(test_start, 1))
    best = {"auc": -1.0, "epoch": -1}

    def kept() -> str:
        return (f"Nothing was saved (the best epoch so far: {max(best['epoch'], 0)}); train "
                f"again with a lower --learning_rate (now {learning_rate:g}).")

    best_weights = None
    examples = 0
    train_seconds = 0.0
    global_step = 0
    for epoch in range(epochs):
        progress = Progress(train_examples, f"epoch {epoch + 1}/{epochs}", unit="examples")
        start = time.monotonic()
        for batch in train_ds:
            loss = step(_features(batch), batch["label"])
            n = int(batch["label"].shape[0])
            examples += n
            global_step += 1
            check_losses({"loss/train": loss}, global_step, kept)
            progress.update(n, extra=f"loss {float(loss):.4f}")
            if global_step % 50 == 0:
                with writer.as_default():
                    tf.summary.scalar("loss/train", loss, step=global_step)
        train_seconds += time.monotonic() - start
        check_weights(model.weights, global_step, kept)
        valid = evaluate(model, valid_ds)
        with writer.as_default():
            tf.summary.scalar("eval/valid_auc", valid["auc"], step=global_step)
            tf.summary.scalar("eval/valid_logloss", valid["logloss"], step=global_step)
        print(f"epoch {epoch + 1}: valid auc {valid['auc']:.4f} logloss {valid['logloss']:.4f}",
              flush=True)
        if valid["auc"] > best["auc"]:
            best = {"auc": valid["auc"], "logloss": valid["logloss"], "epoch": epoch + 1}
            best_weights = model.get_weights()
        elif epoch + 1 - best["epoch"] >= patience:
            break
    model.set_weights(best_weights)
    return {"valid": best, "steps": global_step, "train_examples": examples,
            "examples_per_s": examples / max(train_seconds, 1e-9),
            "test_ds": pipeline.impression_dataset(data_dir, "test", shuffle=False, **common)}


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
                       max_seq_len=FLAGS.max_seq_len, seed=FLAGS.seed)
    except TrainingDiverged as e:
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
