"""A diverged run stops at the step that diverged, names the loss or weight, and leaves the
checkpoints from before it untouched (hrl_rec/divergence.py, its use in the run loops); an
interrupted one checkpoints its last finished step."""
import numpy as np
import pytest
import tensorflow as tf

from data.stats import click_metrics
from hrl_rec.config import HRLConfig
from hrl_rec.divergence import TrainingDiverged, check_losses, check_weights
from hrl_rec.runner import Runner, RunSettings
from tests.hrl_rec.helpers import TINY


def _kept():
    return "kept: nothing."


def test_check_losses_names_each_non_finite_loss_and_ignores_other_metrics():
    check_losses({"loss/total": tf.constant(1.5), "q/mean": float("nan")}, 7, _kept)
    with pytest.raises(TrainingDiverged,
                       match=r"^training diverged at step 7: loss/critic = inf, loss/total = "
                             r"nan\. kept: nothing\.$"):
        check_losses({"loss/total": tf.constant(np.nan), "loss/critic": np.inf,
                      "loss/actor": 0.25}, 7, _kept)


def test_check_weights_names_the_variables():
    good, bad = tf.Variable([1.0, 2.0], name="good"), tf.Variable([[0.0, -np.inf]], name="bad")
    check_weights([good], 3, _kept)
    with pytest.raises(TrainingDiverged, match=r"by step 3: weights bad:0 are not finite"):
        check_weights([good, bad], 3, _kept)


def test_click_metrics_refuses_non_finite_predictions():
    with pytest.raises(ValueError, match="1 of 3 predictions are not finite"):
        click_metrics(np.array([0, 1, 1]), np.array([0.1, np.nan, 0.7]), np.full(3, -1.0))


def test_a_diverged_or_interrupted_run_checkpoints_only_finite_finished_steps(sim_data, tmp_path,
                                                                            capsys):
    cfg = HRLConfig(**TINY, batch_size=16, candidates_per_channel=2, critic_steps=2)
    runner = Runner(cfg, RunSettings(data_dir=str(sim_data), model_dir=str(tmp_path), epochs=1,
                                     max_steps=6, checkpoint_every=2))
    real_step, faults = runner.learner.train_step, {}

    def faulty_step(batch):
        metrics = real_step(batch)
        step = int(runner.learner.step)
        if faults.get(step) == "loss":
            metrics = {**metrics, "loss/hra_critic": tf.constant(np.nan)}
        elif faults.get(step) == "weight":     # finite losses, then a NaN weight after the update
            weight = runner.model.trainable_weights[0]
            weight.assign(np.full(weight.shape, np.nan, np.float32))
        elif faults.get(step) == "ctrl-c":
            raise KeyboardInterrupt
        return metrics

    runner.learner.train_step = faulty_step
    latest = lambda: tf.train.latest_checkpoint(str(tmp_path / "ckpt"))  # noqa: E731
    faults[3] = "loss"
    with pytest.raises(TrainingDiverged) as e:
        runner.train()
    message = str(e.value)
    assert message.startswith("training diverged at step 3: loss/hra_critic = nan. "
                              "The last checkpoint, ")
    assert "ckpt-2, is from before it" in message
    assert "--learning_rate (now 0.0002) or --clip_norm (now 5)" in message
    assert latest().endswith("ckpt-2")                      # step 3 never reached the disk
    # Resumed from step 2: a NaN weight made by step 4's update is refused at its checkpoint.
    faults.clear()
    faults[4] = "weight"
    with pytest.raises(TrainingDiverged, match=r"by step 4: weights .* are not finite\. The "
                                               r"last checkpoint, .*ckpt-2, is from before it"):
        runner.train()
    assert latest().endswith("ckpt-2")
    # Ctrl-C after step 3 (no periodic checkpoint due) saves step 3, for the rerun to resume.
    faults.clear()
    faults[3] = "ctrl-c"
    with pytest.raises(KeyboardInterrupt):
        runner.train()
    assert latest().endswith("ckpt-3")
    assert "interrupted at step 3; the last checkpoint is" in capsys.readouterr().err


def test_supervised_baselines_stop_at_a_nan_loss(sim_data, tmp_path, monkeypatch):
    from baselines import train as baseline_train
    from baselines.models import CTRModel
    from data.pipeline import load_metadata

    def nan_step(model, learning_rate, optimizer=None):
        return lambda features, labels: tf.constant(np.nan)

    monkeypatch.setattr(baseline_train, "make_train_step", nan_step)
    model = CTRModel("lr", load_metadata(str(sim_data))["spec"])
    with pytest.raises(TrainingDiverged, match=r"^training diverged at step 1: loss/train = "
                                               r"nan\. Nothing was saved .* --learning_rate "
                                               r"\(now 0\.01\)"):
        baseline_train.train(model, str(sim_data), str(tmp_path), epochs=1, patience=1,
                             valid_days=1.0, batch_size=64, learning_rate=0.01,
                             max_seq_len=5, seed=0)


@pytest.mark.parametrize("error, code", [
    (TrainingDiverged("training diverged at step 2: loss/total = nan. kept"),
     "DQN: training diverged at step 2: loss/total = nan. kept"),
    (KeyboardInterrupt(), 130)])
def test_the_clis_exit_with_the_message_or_130(monkeypatch, error, code):
    from hrl_rec import runner, train

    def fail(*args, **kwargs):
        raise error

    monkeypatch.setattr(runner, "run", fail)
    with pytest.raises(SystemExit) as e:
        train.run_or_exit("DQN", "cfg", "settings")
    assert e.value.code == code
