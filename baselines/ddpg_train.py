"""Trains Table 3's flat DDPG row: `python -m baselines.ddpg_train --flagfile=configs/ddpg.flags`
(baselines/ddpg.py).

The same run as hrl_rec.train and baselines.dqn_train (hrl_rec/runner.py): the logged lists of
the training days before the validation day, the validation AUC after every epoch (of
cos(a_t, d_t), the score the agent serves by), the best epoch's weights, one test evaluation,
checkpoints that resume, TensorBoard (loss/, q/, reward/, eval/) and MODEL_DIR/{eval.json,
model.keras}. One device only (no --strategy).
"""
from __future__ import annotations

from absl import app

from baselines import ddpg, ddpg_learner
from baselines.dqn_train import train
from data.config_flags import define_flags as define_config_flags
from hrl_rec import runner
from hrl_rec.model import target_copy
from hrl_rec.train import define_run_flags


class DDPGRunner(runner.Runner):
    """hrl_rec's run loop with the flat DDPG network and learner in place of HRL-Rec's."""

    def build(self, spec, cfg, seed):
        net = ddpg.build_network(spec, cfg)
        return net, ddpg_learner.DDPGLearner(net, target_copy(net), cfg, seed=seed)

    def evaluate(self, ds):
        return ddpg_learner.evaluate(self.learner, ds)


def main(argv):
    del argv
    train(ddpg.DDPGConfig, ddpg.validate, DDPGRunner, lambda cfg: "flat DDPG")


if __name__ == "__main__":
    define_run_flags("ddpg")
    define_config_flags(ddpg.DDPGConfig)
    app.run(main)
