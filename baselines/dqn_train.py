"""Trains a DQN row of Table 3: `python -m baselines.dqn_train --flagfile=configs/dqn.flags
--variant=dd_dqn` (dqn_lr, dqn_gru or dd_dqn; baselines/dqn.py).

The same run as hrl_rec.train (hrl_rec/runner.py): the logged lists of the training days before
the validation day, the validation AUC after every epoch (of Q(s_t, d_t) as a click score), the
best epoch's weights, one test evaluation, checkpoints that resume, TensorBoard (loss/, q/,
reward/, eval/) and MODEL_DIR/{eval.json, model.keras}. One device only (no --strategy).
"""
from __future__ import annotations

import dataclasses

from absl import app, flags

from baselines import dqn, dqn_learner
from data.config_flags import define_flags as define_config_flags
from data.config_flags import from_flags
from hrl_rec import runner
from hrl_rec.model import target_copy
from hrl_rec.train import (RUN_FLAGS, define_run_flags, ensure_dataset, run_or_exit,
                           run_settings, validate_dataset)

FLAGS = flags.FLAGS


class DQNRunner(runner.Runner):
    """hrl_rec's run loop with a DQN network and learner in place of HRL-Rec's."""

    def build(self, spec, cfg, seed):
        net = dqn.build_network(spec, cfg)
        return net, dqn_learner.DQNLearner(net, target_copy(net), cfg, seed=seed)

    def evaluate(self, ds):
        return dqn_learner.evaluate(self.learner, ds)


def train(config_class, validate, runner_class, describe) -> None:
    """A Table 3 baseline's run from the flags: `config_class` read from them and checked by
    `validate` (a ValueError names the flag), the dataset made if missing, then hrl_rec's run
    loop with `runner_class`; `describe(cfg)` is what the first log line calls the model."""
    try:
        cfg = from_flags(config_class)
        validate(cfg)
    except (ValueError, flags.ValidationError) as e:
        raise app.UsageError(str(e)) from None
    ensure_dataset(FLAGS.data_dir, FLAGS.data_flagfile)
    validate_dataset()
    settings = run_settings()
    record = {name: FLAGS[name].value for name in RUN_FLAGS + [
        f.name for f in dataclasses.fields(config_class)]}
    print(f"training {describe(cfg)} into {settings.model_dir}", flush=True)
    run_or_exit(describe(cfg), cfg, settings, record, runner_class=runner_class)


def main(argv):
    del argv
    train(dqn.DQNConfig, dqn.validate, DQNRunner, lambda cfg: cfg.variant)


if __name__ == "__main__":
    define_run_flags("dqn")
    define_config_flags(dqn.DQNConfig)
    app.run(main)
