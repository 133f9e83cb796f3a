"""Daily model and data updates while a model serves IRecSim (Fig. 4's "daily model and data
updates", Sec. 4.6).

The paper retrains its online models every day on the newest logs. Here, at the end of every
served day d, `DailyUpdate.update(d)` trains the serving model further on the lists it served
in the last `window_days` days (d - window_days, d], starting from its current weights:
  1. the arm's log of every day so far (replayed and served) is split at the window's start
     (data.writer.split_log), so each window record carries the user's m earlier impressions as
     history context, exactly as a dataset's test split does;
  2. that split is written as a one-shard `train` split of a scratch dataset (WORK_DIR/window,
     rewritten each day, with the served dataset's metadata.json and items.npz);
  3. `epochs` passes of the model's own learner (hrl_rec.learner.Learner, baselines.
     dqn_learner.DQNLearner or baselines.ddpg_learner.DDPGLearner, the trainer's settings read
     from the run's eval.json) run over its shuffled list batches (data.pipeline.list_dataset,
     offline candidates as in training).
The serving policy reads the same Keras variables, so the next day is served by the updated
model. The target networks start as copies of the served model and the optimizers' moments
start at zero when the online period starts (the run's checkpoint holds the training-end state,
not the best epoch's that was exported); both then carry over from day to day.
"""
from __future__ import annotations

import dataclasses
import json
import os
import shutil
import time

import numpy as np

from data import pipeline, writer
from data.config_flags import from_record
from data.files import write_json
from data.schema import FeatureSpec, ImpressionLog
from data.sim_world import DAY


def learner_for(model, model_dir: str, seed: int = 0):
    """The learner the run in `model_dir` trained `model` with: HRL-Rec's, a DQN's or the flat
    DDPG's, with the run's settings (eval.json's `flags`) -> (learner, its config)."""
    from baselines.ddpg import DDPGConfig, FlatDDPG
    from baselines.ddpg_learner import DDPGLearner
    from baselines.dqn import DQNConfig, QNetwork
    from baselines.dqn_learner import DQNLearner
    from hrl_rec.config import HRLConfig
    from hrl_rec.learner import Learner
    from hrl_rec.model import target_copy
    path = os.path.join(model_dir, "eval.json")
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path} not found: daily updates need the run's settings")
    with open(path) as f:
        recorded = json.load(f).get("flags", {})
    config_class, learner_class = {QNetwork: (DQNConfig, DQNLearner),
                                   FlatDDPG: (DDPGConfig, DDPGLearner)}.get(
                                       type(model), (HRLConfig, Learner))
    names = [f.name for f in dataclasses.fields(config_class)]
    missing = [n for n in names if n not in recorded]
    if missing:
        raise ValueError(f"{path}: `flags` lacks {missing}; retrain with this version")
    cfg = from_record(config_class, recorded)
    return learner_class(model, target_copy(model), cfg, seed=seed), cfg


class DailyUpdate:
    """Collects an arm's daily logs (`add_day`) and trains its model on the newest ones
    (`update`). `work_dir` is scratch space, rewritten every day."""

    def __init__(self, model, model_dir: str, data_dir: str, work_dir: str, epochs: int = 1,
                 window_days: int = 1, seed: int = 0):
        if epochs < 1 or window_days < 1:
            raise ValueError(f"epochs {epochs} and window_days {window_days}: expected >= 1")
        self.learner, self.cfg = learner_for(model, model_dir, seed)
        self.m = model.max_seq_len
        self.epochs, self.window_days, self.seed = epochs, window_days, seed
        metadata = pipeline.load_metadata(data_dir)
        self.spec = FeatureSpec.from_json(metadata["spec"])
        self.window_dir = os.path.join(work_dir, "window")
        os.makedirs(self.window_dir, exist_ok=True)
        window_meta = {k: metadata[k] for k in ("spec", "source") if k in metadata}
        write_json(os.path.join(self.window_dir, "metadata.json"),
                   {**window_meta, "history_context": self.m})
        shutil.copyfile(os.path.join(data_dir, "items.npz"),
                        os.path.join(self.window_dir, "items.npz"))
        self.logs: list[ImpressionLog] = []

    def add_day(self, log: ImpressionLog) -> None:
        if len(log):
            self.logs.append(log)

    def window(self, day: int) -> tuple[ImpressionLog, np.ndarray]:
        """The records of days (day - window_days, day] with their history context; target 1
        on the window's impressions, 0 on the context."""
        log = ImpressionLog.concat(self.logs)
        start = (day - self.window_days + 1) * DAY
        _, (window, target) = writer.split_log(log, start, self.m)
        # split_log gives every user's context; only the window's users are trained on
        active = np.isin(window.user_id, window.user_id[target == 1])
        keep = active & (window.timestamp < (day + 1) * DAY)
        return window.take(np.flatnonzero(keep)), target[keep]

    def update(self, day: int) -> dict:
        """Trains on the window ending with `day` -> steps, transitions, seconds, the mean of
        each loss, and weight_change = ||theta_after - theta_before|| / ||theta_before|| over
        the online network's trainable weights (how far one day moves the model)."""
        window, target = self.window(day)
        if not target.any():
            return {"day": day, "steps": 0, "transitions": 0, "seconds": 0.0}
        writer.write_split(self.window_dir, "train", window, target, self.spec, 0, 1)
        start = time.monotonic()
        before = [w.numpy() for w in self.learner.model.trainable_weights]
        steps, transitions, losses = 0, 0.0, {}
        for epoch in range(self.epochs):
            ds = pipeline.list_dataset(
                self.window_dir, "train", max_seq_len=self.m, batch_size=self.cfg.batch_size,
                shuffle=True, seed=self.seed * 1000 + day * 10 + epoch,
                candidates_per_channel=self.cfg.candidates_per_channel)
            for batch in ds:
                metrics = self.learner.train_step(batch)
                steps += 1
                transitions += float(metrics.pop("data/transitions"))
                for k, v in metrics.items():
                    if k.startswith("loss/"):
                        losses[k] = losses.get(k, 0.0) + float(v)
        after = [w.numpy() for w in self.learner.model.trainable_weights]
        moved = np.sqrt(sum(np.sum((a - b) ** 2) for a, b in zip(after, before)))
        norm = np.sqrt(sum(np.sum(b ** 2) for b in before))
        return {"day": day, "steps": steps, "transitions": int(transitions),
                "seconds": time.monotonic() - start,
                "weight_change": float(moved / max(norm, 1e-12)),
                **{k: v / max(steps, 1) for k, v in sorted(losses.items())}}
