"""Runs one HRL-Rec training job: data -> learner -> checkpoints, TensorBoard, eval.json.

Training reads the logged lists before the validation period (the last --valid_days of the
training split, chronological; the test split is never used for any choice), evaluates the
validation AUC after every epoch, keeps the best epoch's weights and stops after --patience
epochs without gain, then evaluates once on the test split. Checkpoints (tf.train.
CheckpointManager under MODEL_DIR/ckpt) hold both networks, both optimizers, the step, epoch
and best validation AUC; a rerun with the same MODEL_DIR resumes where the last one stopped,
skipping the batches of the interrupted epoch it had already trained on. They also hold the
steps, transitions and seconds trained so far, so eval.json's training figures cover every
session of a resumed run (a rerun of a finished one re-evaluates and keeps them). A checkpoint
written by other model flags stops the run with CheckpointMismatch, naming it.

Under --strategy (hrl_rec/distribute.py) the networks, optimizers and step live in the
strategy's scope. Synchronous strategies split each global batch of --batch_size lists over the
replicas (dropping the last partial batch so the split is even); every multi_worker worker runs
this loop, and only the chief (worker 0) writes the run folder, the others a scratch folder
under MODEL_DIR/workers that they delete at the end. Under parameter_server the chief schedules
the epoch's steps on the workers, each reading its own shard of the batches (1/workers of them,
repeated), and evaluates and checkpoints itself.
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import sys
import time

import keras
import numpy as np
import tensorflow as tf
from sklearn.metrics import roc_auc_score

from data import pipeline
from data.progress import Progress
from data.stats import click_metrics, fair_ceilings
from data.files import FolderLock, write_json
from hrl_rec import distribute
from hrl_rec.config import HRLConfig
from hrl_rec.diagnostics import DIAGNOSTICS, action_metrics
from hrl_rec.divergence import check_losses, check_weights
from hrl_rec.learner import Learner
from hrl_rec.model import HRLRec, target_copy

ARCHITECTURE = ("max_seq_len", "embedding_dim", "hidden_dim", "heads", "field_self_attention",
                "state_encoder_gru", "state_window", "critic_direction", "critic_form",
                "click_interaction", "click_position_bias", "served_bias")


@dataclasses.dataclass
class RunSettings:
    data_dir: str
    model_dir: str
    epochs: int = 3
    max_steps: int = 0           # 0 = no limit besides epochs
    patience: int = 1
    valid_days: float = 1.0
    seed: int = 0
    log_every: int = 20
    checkpoint_every: int = 200
    eval_batch_size: int = 512
    eval_score: str = "click"    # EVAL_SCORES: which AUC chooses the best epoch and is `auc`
    select_by: str = "auc"       # SELECT_BY: the validation figure that picks the best epoch
    strategy: str = "default"
    deterministic: bool = False  # TensorFlow's op determinism: bit-identical reruns, slower


class CheckpointMismatch(ValueError):
    """MODEL_DIR's checkpoint was written by another model than the flags build."""


def build_model(spec: dict, cfg: HRLConfig) -> HRLRec:
    options = {k: getattr(cfg, k) for k in ARCHITECTURE}
    return HRLRec(spec, n_critics=2 if cfg.target_q == "twin" else 1, **options)


EVAL_SCORES = ("click", "cosine")
# Validation figures that can pick the best epoch (higher is better): the eval score's AUC, or
# one of the served score's (hrl_rec.diagnostics).
SELECT_BY = ("auc", "auc_cosine", "auc_cosine_by_slot", "auc_click_by_slot", "rank_auc_high")


def evaluate(learner: Learner, ds, score: str = "click") -> dict:
    """AUC of both of HRL-Rec's scores over every logged impression of `ds`: `auc_click` of
    f(a_t, d_t) (Eq. 16) and `auc_cosine` of cos(a^h_t, d_t) (what the HRA serves by); `auc` is
    the one named by `score`. Also f's logloss, the oracle AUC of the true click
    probabilities when the data has them, and what the actions do (`hrl_rec.diagnostics`:
    within-slot AUCs, action alignment, within-state rank AUC, channel hit rates, ...)."""
    if score not in EVAL_SCORES:
        raise ValueError(f"eval score {score!r}: expected one of {EVAL_SCORES}")
    parts: dict[str, list] = {}
    m = learner.m
    for batch in ds:
        out = learner.predict(batch)
        keep = out.pop("weight").numpy() > 0
        out["true_ctr"] = batch["true_ctr"][:, m:]
        out["item_id"] = batch["item_id"][:, m:]
        for k, v in out.items():
            parts.setdefault(k, []).append(np.asarray(v)[keep])
    out = {k: np.concatenate(v) for k, v in parts.items()}
    y = out["clicked"]
    report = click_metrics(y, out["click"], out["true_ctr"])
    report["auc_click"] = report["auc"]
    report["auc_cosine"] = float(roc_auc_score(y, out["cosine"]))
    report["auc"] = report[f"auc_{score}"]
    report.update(action_metrics(out))
    return {**report, "impressions": int(len(y))}


class Runner:
    """One training job on one dataset: build, restore, train epochs with validation and early
    stopping, checkpoint, evaluate on test, write eval.json and TensorBoard.

    To train another agent with the same loop (baselines/dqn_train.py, ddpg_train.py),
    subclass it and override `build(spec, cfg, seed) -> (model, learner)` and
    `evaluate(ds) -> dict of figures` (with "auc"). The learner must have `train_step(batch)
    -> metrics`, `step` (a tf.Variable), `target`, `m` and `checkpointed() -> dict`, and may
    have `set_epoch(epoch)`, called at every epoch start, resumes included (a schedule).
    Override `train_data`, `valid_data` or `test_data` to read other data.
    """

    def __init__(self, cfg: HRLConfig, run: RunSettings, flags_record: dict | None = None,
                 strategy: tf.distribute.Strategy | None = None):
        self.cfg, self.run_settings = cfg, run
        self.flags_record = flags_record or dataclasses.asdict(cfg)
        self.meta = pipeline.load_metadata(run.data_dir)
        self.strategy = strategy or tf.distribute.get_strategy()
        self.chief = distribute.is_chief(run.strategy)
        kind, index = distribute.task_of(run.strategy)
        self.out_dir = run.model_dir if self.chief else os.path.join(
            run.model_dir, "workers", f"{kind}-{index}")
        keras.utils.set_random_seed(run.seed)
        if run.deterministic:       # process-wide; set before any op of the run executes
            tf.config.experimental.enable_op_determinism()
        with self.strategy.scope():
            self.model, self.learner = self.build(self.meta["spec"], cfg, run.seed)
        self.epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
        self.epoch_start_step = tf.Variable(0, dtype=tf.int64, trainable=False)
        self.best_auc = tf.Variable(-1.0, dtype=tf.float64, trainable=False)  # of --select_by
        self.best_epoch = tf.Variable(0, dtype=tf.int64, trainable=False)
        # (steps, transitions, seconds) trained over every session of this run, so that a
        # resumed or rerun run reports its whole training, not only its last session's.
        self.trained = tf.Variable([0.0, 0.0, 0.0], dtype=tf.float64, trainable=False,
                                   name="trained_totals")
        self._pending, self._clock = [0, 0.0], time.monotonic()
        # Every weight by position as well: a Keras 3 layer's sublayers held in a Python list
        # (the critics, the profile/context/item field tables) are not in the object graph
        # tf.train.Checkpoint walks. The online model's reach it through its optimizers'
        # variable lists; the target network's did not, so a resumed run silently restarted
        # them from their initial values (found by benchmarks.faults: resumes after the first
        # target update differed from an uninterrupted run).
        networks = {"model_weights": list(self.model.weights)}
        if getattr(self.learner, "target", None) is not None:
            networks["target_weights"] = list(self.learner.target.weights)
        self.checkpoint = tf.train.Checkpoint(
            **self.learner.checkpointed(), **networks, epoch=self.epoch,
            epoch_start_step=self.epoch_start_step, best_auc=self.best_auc,
            best_epoch=self.best_epoch, trained=self.trained)
        self.manager = tf.train.CheckpointManager(self.checkpoint,
                                                  os.path.join(self.out_dir, "ckpt"), 3)
        self.best_path = os.path.join(self.out_dir, "best.weights.h5")
        self.writer = tf.summary.create_file_writer(os.path.join(self.out_dir, "tb"))
        self.coordinator = None
        if run.strategy == "parameter_server":
            self.coordinator = tf.distribute.coordinator.ClusterCoordinator(self.strategy)
        self._worker_batches = None

    def build(self, spec: dict, cfg, seed: int):
        """-> (model, learner). Another agent (baselines/dqn_train.py) overrides this and
        `evaluate`; its learner has train_step, step, target, m and checkpointed()."""
        model = build_model(spec, cfg)
        return model, Learner(model, target_copy(model), cfg, seed=seed)

    def evaluate(self, ds) -> dict:
        return evaluate(self.learner, ds, self.run_settings.eval_score)

    @property
    def step(self) -> int:
        return int(self.learner.step.numpy())

    # -- data --------------------------------------------------------------------------------
    def _valid_start(self) -> int:
        test_start = self.meta["chronological_split"]["test_start_timestamp"]
        return int(test_start - self.run_settings.valid_days * 86400)

    def _lists(self, split: str, train: bool, **kw):
        cfg = self.cfg
        return pipeline.list_dataset(
            self.run_settings.data_dir, split, max_seq_len=cfg.max_seq_len,
            batch_size=cfg.batch_size if train else self.run_settings.eval_batch_size,
            shuffle=train, candidates_per_channel=cfg.candidates_per_channel if train else 0,
            **kw)

    def train_data(self, epoch: int, **kw):
        return self._lists("train", True, seed=self.run_settings.seed + epoch,
                           max_time=self._valid_start(), **kw)

    def _replicated_batches(self, epoch: int, skip: int):
        """The epoch's batches from `skip` on, split over the strategy's replicas."""
        if self.run_settings.strategy == "default":
            return self.train_data(epoch).skip(skip)
        ds = self.train_data(epoch, drop_remainder=True).skip(skip)
        options = tf.data.Options()  # every worker reads the batches and keeps its part
        options.experimental_distribute.auto_shard_policy = \
            tf.data.experimental.AutoShardPolicy.DATA
        return self.strategy.experimental_distribute_dataset(ds.with_options(options))

    def _worker_iterator(self):
        """Parameter servers: each worker's own shard of the training batches, repeated."""
        if self._worker_batches is None:
            workers = distribute.worker_count(self.run_settings.strategy)

            def batches():
                index = tf.distribute.coordinator.experimental_get_current_worker_index()
                return self.train_data(0, repeat=True).shard(workers, index)

            self._worker_batches = iter(self.coordinator.create_per_worker_dataset(batches))
        return self._worker_batches

    def valid_data(self):
        return self._lists("train", False, min_time=self._valid_start())

    def test_data(self):
        return self._lists("test", False)

    # -- loop --------------------------------------------------------------------------------
    def restore(self) -> bool:
        """Restores the chief's latest checkpoint (every worker resumes from the same one)."""
        latest = tf.train.latest_checkpoint(os.path.join(self.run_settings.model_dir, "ckpt"))
        if latest:
            try:
                self.checkpoint.restore(latest).assert_existing_objects_matched()
            except (AssertionError, ValueError) as e:   # a missing object, another shape
                raise CheckpointMismatch(
                    f"{latest} does not match this run: it was written by other model flags "
                    f"or an older version of hrl_rec ({str(e).splitlines()[0]}). Train into a "
                    "new --model_dir, or resume with the flags of the run's eval.json/TensorBoard "
                    "hparams") from None
            chosen_by = self._best_record().get("select_by", "auc")
            if int(self.best_epoch) and chosen_by != self.run_settings.select_by:
                raise CheckpointMismatch(
                    f"{self.best_path} was chosen by --select_by={chosen_by}, this run selects "
                    f"by --select_by={self.run_settings.select_by}: resume with "
                    f"--select_by={chosen_by}, or train into a new --model_dir")
            print(f"resumed from {latest} at step {self.step}, epoch {int(self.epoch) + 1}",
                  flush=True)
            return True
        return False

    def _best_record(self) -> dict:
        """best.weights.h5.json: the best epoch, the figure that chose it and f's validation
        AUC there ({} for runs from before --select_by, which chose by the AUC)."""
        path = self.best_path + ".json"
        if not os.path.exists(path):
            return {}
        with open(path) as f:
            return json.load(f)

    def _train_lists(self) -> int:
        """Lists in the training period (for the progress line)."""
        split = self.meta["splits"]["train"]
        test_start = self.meta["chronological_split"]["test_start_timestamp"]
        first = self.meta["chronological_split"].get("train_days", [0])[0] * 86400
        share = (self._valid_start() - first) / max(test_start - first, 1)
        return int(split["lists"] * min(max(share, 0.0), 1.0))

    def _log(self, metrics: dict, step: int) -> None:
        with self.writer.as_default(step=step):
            for name, value in metrics.items():
                if name.startswith("hist/"):
                    tf.summary.histogram(name.replace("hist/", "actions/"), value)
                else:
                    tf.summary.scalar(name, value)

    def _log_hparams(self) -> None:
        from tensorboard.plugins.hparams import api as hp
        record = {k: (",".join(map(str, v)) if isinstance(v, (list, tuple)) else v)
                  for k, v in self.flags_record.items() if v is not None}
        with self.writer.as_default():
            hp.hparams(record, trial_id=os.path.basename(os.path.abspath(
                self.run_settings.model_dir)))

    def train(self) -> dict:
        """Trains until --epochs, --max_steps or early stopping -> the training figures. Ctrl-C
        saves a checkpoint at the last finished step before it stops (synchronous training;
        parameter-server steps may be in flight, and their periodic checkpoints stand)."""
        self.restore()
        if self.chief:
            self._log_hparams()
        try:
            self._train_epochs()
        except KeyboardInterrupt:
            if self.coordinator is None:
                self._save_checkpoint()
            print(f"\ninterrupted at step {self.step}; the last checkpoint is "
                  f"{self.manager.latest_checkpoint}: the same command resumes from it",
                  file=sys.stderr, flush=True)
            raise
        steps, transitions, seconds = self.trained.numpy().tolist()   # as the checkpoint has them
        return {"transitions": int(transitions), "train_seconds": seconds,
                "transitions_per_s": transitions / max(seconds, 1e-9),
                "steps_per_s": steps / max(seconds, 1e-9)}

    def _train_epochs(self) -> None:
        run = self.run_settings
        per_epoch = max(self._train_lists() // self.cfg.batch_size, 1)
        stop = self._max_steps_reached(self.step)
        self._clock = time.monotonic()
        while int(self.epoch) < run.epochs and not stop:
            epoch = int(self.epoch)
            if hasattr(self.learner, "set_epoch"):   # a per-epoch schedule (optional hook)
                self.learner.set_epoch(epoch)
            done_in_epoch = self.step - int(self.epoch_start_step)
            total = per_epoch if run.max_steps <= 0 else min(per_epoch, run.max_steps)
            progress = Progress(total, f"epoch {epoch + 1}/{run.epochs}", unit="steps")
            progress.update(done_in_epoch)
            epoch_steps = max(total - done_in_epoch, 0)
            if self.coordinator is None:
                stop = self._train_sync(epoch, done_in_epoch, progress)
            else:
                stop = self._train_async(epoch_steps, progress)
            if stop:
                self._save_checkpoint()
                break
            self._flush_training_stats(pause=True)   # validation time is not training time
            stop = self._end_epoch(epoch)
            self._clock = time.monotonic()

    def _flush_training_stats(self, pause: bool = False) -> None:
        """Adds the steps, transitions and seconds since the last flush to the checkpointed
        totals; pause stops the clock until train() restarts it."""
        now = time.monotonic()
        seconds = 0.0 if self._clock is None else now - self._clock
        steps, transitions = self._pending
        self.trained.assign_add([steps, transitions, seconds])
        self._pending, self._clock = [0, 0.0], None if pause else now

    def _max_steps_reached(self, step: int) -> bool:
        return bool(self.run_settings.max_steps) and step >= self.run_settings.max_steps

    def _train_sync(self, epoch: int, skip: int, progress: Progress):
        """One epoch of synchronous steps -> whether max_steps stopped it."""
        for batch in self._replicated_batches(epoch, skip):
            if self._max_steps_reached(self.step):
                return True
            metrics = self.learner.train_step(batch)
            self._pending[0] += 1
            self._pending[1] += float(metrics.pop("data/transitions"))
            self._after_step(self.step, metrics, progress)
        return False

    def _train_async(self, n_steps: int, progress: Progress):
        """One epoch of steps scheduled on parameter-server workers (asynchronous)."""
        iterator, results = self._worker_iterator(), []
        first = self.step
        for i in range(n_steps):
            step = first + i + 1
            if self._max_steps_reached(step - 1):
                break
            results.append(self.coordinator.schedule(self.learner.step_on, args=(iterator,)))
            log = step % self.run_settings.log_every == 0 or step == 1
            self._after_step(step, results[-1].fetch() if log else None, progress)
        self.coordinator.join()
        self._pending[0] += len(results)
        self._pending[1] += sum(float(r.fetch()["data/transitions"]) for r in results)
        return self._max_steps_reached(self.step)

    def _after_step(self, step: int, metrics: dict | None, progress: Progress) -> None:
        """Summaries, the progress line and periodic checkpoints (metrics: None = not logged)."""
        if metrics is not None:
            check_losses(metrics, step, self._kept)
        if metrics is not None and (step % self.run_settings.log_every == 0 or step == 1):
            metrics = {k: v for k, v in metrics.items() if k != "data/transitions"}
            self._log(metrics, step)
            extra = f"loss {float(metrics['loss/total']):.4f}"
            if "loss/click" in metrics:
                extra += f" click {float(metrics['loss/click']):.4f}"
            progress.update(1, extra=extra)
        else:
            progress.update(1)
        if step % self.run_settings.checkpoint_every == 0:
            if self.coordinator is not None:
                self.coordinator.join()
            self._save_checkpoint()

    def _save_checkpoint(self) -> None:
        check_weights(self.model.weights + self.learner.target.weights, self.step, self._kept)
        self._flush_training_stats()
        self.manager.save(checkpoint_number=self.step)

    def _kept(self) -> str:
        """What a diverged run leaves from before the divergence, and what to change."""
        latest = self.manager.latest_checkpoint
        saved = (f"The last checkpoint, {latest}, is from before it" if latest
                 else "No checkpoint was saved")
        best = (f"; the best weights (epoch {int(self.best_epoch)}) are in {self.best_path}"
                if int(self.best_epoch) else "")
        return (f"{saved}{best}. Train again into a new --model_dir with a lower "
                f"--learning_rate (now {self.cfg.learning_rate:g}) or --clip_norm (now "
                f"{self.cfg.clip_norm:g}).")

    def _end_epoch(self, epoch: int) -> bool:
        """Validation AUC, best weights, early stopping; -> whether to stop."""
        check_weights(self.model.weights, self.step, self._kept)
        valid = self.evaluate(self.valid_data())
        valid["auc"] = distribute.agree(self.strategy, valid["auc"])
        step = self.step
        with self.writer.as_default(step=step):
            tf.summary.scalar("eval/valid_auc", valid["auc"])
            if "logloss" in valid:
                tf.summary.scalar("eval/valid_logloss", valid["logloss"])
            for key in DIAGNOSTICS:
                if key in valid:
                    tf.summary.scalar(f"eval/valid_{key}", valid[key])
        scores = ", ".join(f"{k.removeprefix('auc_')} {valid[k]:.4f}" for k in (
            "auc_click", "auc_cosine") + DIAGNOSTICS if k in valid)
        print(f"epoch {epoch + 1}: valid auc {valid['auc']:.4f}"
              + (f" ({scores})" if scores else "")
              + (f" logloss {valid['logloss']:.4f}" if "logloss" in valid else ""), flush=True)
        key = self.run_settings.select_by
        if key not in valid:
            raise ValueError(f"--select_by={key}: the validation figures have no {key} "
                             f"(they have {sorted(k for k in valid if k in SELECT_BY)})")
        chosen = distribute.agree(self.strategy, valid[key]) if key != "auc" else valid["auc"]
        if chosen > float(self.best_auc):
            self.best_auc.assign(chosen)
            self.best_epoch.assign(epoch + 1)
            tmp = self.best_path + ".tmp.weights.h5"
            self.model.save_weights(tmp)
            os.replace(tmp, self.best_path)
            write_json(self.best_path + ".json", {
                "epoch": epoch + 1, "select_by": key, "value": chosen, "valid_auc": valid["auc"]})
        self.epoch.assign(epoch + 1)
        self.epoch_start_step.assign(step)
        self._save_checkpoint()
        return epoch + 1 - int(self.best_epoch) >= self.run_settings.patience

    def finish(self, train_stats: dict, wall_seconds: float) -> dict:
        """Best weights -> test evaluation -> eval.json and model.keras (the chief); other
        workers delete their scratch folder and return their training figures."""
        if not self.chief:
            self.writer.close()
            shutil.rmtree(self.out_dir, ignore_errors=True)
            with contextlib.suppress(OSError):   # the last worker out removes workers/
                os.rmdir(os.path.dirname(self.out_dir))
            return {**train_stats, "steps": self.step}
        if os.path.exists(self.best_path):
            self.model.load_weights(self.best_path)
        test = self.evaluate(self.test_data())
        step = self.step
        with self.writer.as_default(step=step):
            for key in ("auc", "logloss", "auc_click", "auc_cosine") + DIAGNOSTICS:
                if key in test:
                    tf.summary.scalar(f"eval/{key}", test[key])
        self.writer.flush()
        best = self._best_record()
        valid_auc = best.get("valid_auc", float(self.best_auc))
        selected = ({f"valid_{best['select_by']}": best["value"]}
                    if best.get("select_by", "auc") != "auc" else {})
        report = {**test, "valid_auc": valid_auc, **selected, "best_epoch": int(self.best_epoch),
                  "steps": step, **train_stats, "strategy": self.run_settings.strategy,
                  "replicas": self.strategy.num_replicas_in_sync,
                  "wall_seconds": wall_seconds, "flags": self.flags_record,
                  "data_fingerprint": self.meta.get("fingerprint"),  # which dataset, exactly
                  **fair_ceilings(self.meta)}
        tmp = os.path.join(self.run_settings.model_dir, "model.tmp.keras")
        self.model.save(tmp)
        os.replace(tmp, os.path.join(self.run_settings.model_dir, "model.keras"))
        write_json(os.path.join(self.run_settings.model_dir, "eval.json"), report)
        return report


def run(cfg: HRLConfig, settings: RunSettings, flags_record: dict | None = None,
        strategy: tf.distribute.Strategy | None = None, runner_class=None) -> dict:
    """Trains and evaluates one run in settings.model_dir, holding its lock (data.files.
    FolderLock: a second run on the same folder raises FolderLocked naming the first's pid;
    the other tasks of a cluster share the chief's folder and take no lock)."""
    start = time.monotonic()
    os.makedirs(settings.model_dir, exist_ok=True)
    lock = (FolderLock(settings.model_dir, "--model_dir") if distribute.is_chief(
        settings.strategy) else contextlib.nullcontext())
    with lock:
        runner = (runner_class or Runner)(cfg, settings, flags_record, strategy)
        stats = runner.train()
        report = runner.finish(stats, time.monotonic() - start)
    keys = ("auc", "auc_click", "auc_cosine", "auc_cosine_by_slot", "rank_auc_high",
            "action_alignment_high", "logloss", "oracle_auc", "oracle_auc_noise_free",
            "learnable_ceiling_auc", "valid_auc", "valid_learnable_ceiling_auc", "steps",
            "transitions_per_s")
    print(json.dumps({k: report[k] for k in keys if k in report}), flush=True)
    return report
