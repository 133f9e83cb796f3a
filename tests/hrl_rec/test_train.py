"""hrl_rec.train / hrl_rec.runner end to end on a tiny simulator dataset: eval.json, TensorBoard,
checkpoints that resume, the saved model, and flag errors."""
import json
import os
import re
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf
from absl import flags

from data import config_flags

from hrl_rec.config import HRLConfig, validate
from hrl_rec.runner import CheckpointMismatch, Runner, RunSettings, evaluate
from tests.conftest import REPO
from tests.hrl_rec.helpers import TINY, list_batch, tiny_model

TINY_FLAGS = [f"--{k}={v}" for k, v in TINY.items()] + [
    "--batch_size=32", "--candidates_per_channel=2", "--validate_data=false"]


def _run(args, timeout=600):
    return subprocess.run([sys.executable, "-m", "hrl_rec.train", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=timeout)


@pytest.mark.slow
def test_train_cli_end_to_end(sim_data, tmp_path):
    model_dir = tmp_path / "run"
    done = _run([f"--data_dir={sim_data}", f"--model_dir={model_dir}", "--epochs=2",
                 "--patience=2", "--state_window=prefix", "--log_every=2", "--deterministic",
                 "--served_rank_weight=10", "--select_by=auc_cosine_by_slot",
                 "--served_batch_negatives=2", "--served_distill_weight=1", *TINY_FLAGS])
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads((model_dir / "eval.json").read_text())
    # --select_by: the epoch with the best validation within-slot AUC of the served cosine
    epochs = [line for line in done.stdout.splitlines() if line.startswith("epoch ")]
    by_slot = [float(re.search(r"cosine_by_slot ([0-9.]+)", e).group(1)) for e in epochs]
    aucs = [float(re.search(r"valid auc ([0-9.]+)", e).group(1)) for e in epochs]
    best = int(np.argmax(by_slot))
    assert len(epochs) == 2 and report["best_epoch"] == best + 1
    assert round(report["valid_auc_cosine_by_slot"], 4) == by_slot[best]
    assert round(report["valid_auc"], 4) == aucs[best]            # f's AUC of that epoch
    assert report["flags"]["select_by"] == "auc_cosine_by_slot"
    resumed = _run([f"--data_dir={sim_data}", f"--model_dir={model_dir}", "--epochs=3",
                    "--state_window=prefix", "--served_rank_weight=10", *TINY_FLAGS])
    assert resumed.returncode != 0 and "resume with --select_by=auc_cosine_by_slot" in \
        resumed.stderr, resumed.stderr[-2000:]
    assert report["auc"] == report["auc_click"] and 0 < report["auc_cosine"] < 1
    for key in ("auc", "logloss", "steps", "transitions_per_s", "oracle_auc", "valid_auc",
                "flags"):
        assert key in report, key
    assert 0 < report["auc"] < 1 and report["steps"] > 0 and report["transitions_per_s"] > 0
    assert report["flags"]["state_window"] == "prefix" and report["flags"]["gamma"] == 0.3
    assert report["flags"]["deterministic"] is True
    meta = json.loads((sim_data / "metadata.json").read_text())
    assert report["data_fingerprint"] == meta["fingerprint"]
    assert report["learnable_ceiling_auc"] == meta["splits"]["test"]["learnable_ceiling_auc"]
    assert (report["valid_learnable_ceiling_auc"]
            == meta["splits"]["train"]["learnable_ceiling_auc"])
    assert "epoch 1/2" in done.stderr                  # the progress line
    assert list((model_dir / "tb").iterdir()) and (model_dir / "ckpt" / "checkpoint").exists()
    model = keras.models.load_model(model_dir / "model.keras")
    assert model.options["state_window"] == "prefix"


_ONE_RUN = """
import sys
import numpy as np
from hrl_rec.config import HRLConfig
from hrl_rec.runner import Runner, RunSettings
from tests.hrl_rec.helpers import TINY
data, out, deterministic = sys.argv[1], sys.argv[2], sys.argv[3] == "1"
runner = Runner(HRLConfig(**TINY, batch_size=32, candidates_per_channel=2),
                RunSettings(data_dir=data, model_dir=out, max_steps=2, deterministic=deterministic))
runner.train()
np.savez(out + "/weights.npz", *[w.numpy() for w in runner.model.weights])
"""


def test_deterministic_reruns_are_bit_identical(sim_data, tmp_path):
    # Two concurrent processes (op determinism is process-wide). Without it their weights
    # differ after 2 steps (threaded reductions; ENV_NONDETERMINISTIC=1 shows it).
    flag = "0" if os.environ.get("ENV_NONDETERMINISTIC") else "1"
    procs = [subprocess.Popen([sys.executable, "-c", _ONE_RUN, str(sim_data),
                               str(tmp_path / str(i)), flag], cwd=REPO,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
             for i in range(2)]
    for p in procs:
        assert p.wait(timeout=600) == 0, p.stderr.read()[-3000:]
    first, second = (np.load(tmp_path / str(i) / "weights.npz") for i in range(2))
    assert len(first.files) > 10
    for name in first.files:
        np.testing.assert_array_equal(first[name], second[name])


def test_flag_errors_name_the_flag(sim_data, tmp_path):
    # One run of the CLI: a bad value stops it with the message, before any training.
    done = _run([f"--data_dir={sim_data}", f"--model_dir={tmp_path / 'x'}", "--target_q=triple"])
    assert done.returncode != 0 and "--target_q=triple: expected one of" in done.stderr, \
        done.stderr[-2000:]
    assert not (tmp_path / "x").exists()
    # The same checks in this process, on the flags the CLI defines from HRLConfig.
    for flag, message in (("--target_q=triple", "--target_q=triple: expected one of"),
                          ("--reward_click=1,1", r"--reward_click=\(1.0, 1.0\): expected 1 value "
                                                 r"\(for every channel\) or 4 values"),
                          ("--reward_time=a,b", "--reward_time=a,b: expected comma-separated")):
        values = flags.FlagValues()
        config_flags.define_flags(HRLConfig, values)
        values(["prog", flag])
        with pytest.raises((ValueError, flags.ValidationError), match=message):
            validate(config_flags.from_flags(HRLConfig, values), 4)


def _settings(sim_data, model_dir, **kw):
    return RunSettings(data_dir=str(sim_data), model_dir=str(model_dir), epochs=1, **kw)


def test_checkpoint_round_trip_resumes_same_step_and_weights(sim_data, tmp_path):
    # target updates every step, so the target network differs from its initial copy: a
    # checkpoint that missed any of its weights (the critics and field tables held in Python
    # lists once were) restores it wrong
    cfg = HRLConfig(**TINY, batch_size=16, candidates_per_channel=2, critic_steps=2,
                    target_update_period=1, tau=0.5)
    first = Runner(cfg, _settings(sim_data, tmp_path, max_steps=3))
    first_stats = first.train()
    assert int(first.learner.step) == 3
    second = Runner(cfg, _settings(sim_data, tmp_path, max_steps=5))
    assert second.restore()
    assert int(second.learner.step) == 3
    assert int(second.learner.critic_optimizer.iterations) == 6
    for a, b in zip(first.model.weights + first.learner.target.weights,
                    second.model.weights + second.learner.target.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    for a, b in zip(first.learner.actor_optimizer.variables,
                    second.learner.actor_optimizer.variables):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    stats = second.train()                               # continues from step 3, not from 0
    assert int(second.learner.step) == 5
    assert int(second.learner.actor_optimizer.iterations) == 5
    # The training figures cover both sessions, and a rerun of the finished run keeps them.
    assert second.trained.numpy()[0] == 5
    assert stats["transitions"] > first_stats["transitions"]
    assert stats["train_seconds"] > first_stats["train_seconds"]
    again = Runner(cfg, _settings(sim_data, tmp_path, max_steps=5)).train()
    assert again["transitions"] == stats["transitions"]
    assert again["train_seconds"] == stats["train_seconds"]
    other = HRLConfig(**{**TINY, "hidden_dim": TINY["hidden_dim"] * 2}, batch_size=16)
    with pytest.raises(CheckpointMismatch, match=r"ckpt-5 does not match this run: it was "
                                                 r"written by other model flags"):
        Runner(other, _settings(sim_data, tmp_path, max_steps=6)).restore()


def test_model_save_load_round_trip(tmp_path):
    model = tiny_model(state_window="prefix", n_critics=2, click_interaction=True,
                       click_position_bias=True, served_bias="slot")
    model.click.b_slot.assign(-0.1 * np.arange(10))
    model.click.w_ad.assign(np.full(model.click.w_ad.shape, 0.2))
    batch = list_batch()
    path = tmp_path / "m.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    np.testing.assert_allclose(loaded(batch).numpy(), model(batch).numpy(), rtol=1e-6)
    assert len(loaded.hra.critics) == 2
    assert loaded.click.position_slots == 10 and loaded.click.interaction
    assert loaded.served_high.bias == "slot" and loaded.served_high.slots == 10


class _FixedScores:
    """A learner whose predictions are given: one list of 4 slots after m = 1 history step."""
    m = 1

    def predict(self, batch):
        del batch
        c = tf.constant
        return {"click": c([[0.2, 0.4, 0.6, 0.8]]), "cosine": c([[0.9, 0.1, 0.2, 0.3]]),
                "weight": c([[1.0, 1.0, 1.0, 1.0]]), "clicked": c([[1, 0, 1, 0]]),
                "slot": c([[0, 0, 1, 1]]), "q_item": c([[0.1, 0.2, 0.3, 0.0]]),
                "rank_wins": c([[1.5, 0.0, 1.0, 0.0]]), "rank_pairs": c([[2.0, 0.0, 2.0, 0.0]]),
                "lra_channel": c([[0, 1, 2, 3]]), "prior_channel": c([[1, 1, 1, 1]]),
                "channel": c([[0, 0, 3, 3]]),
                "a_low": c([[[1.0, 0.0], [2.0, 0.0], [1.0, 0.0], [3.0, 0.0]]]),
                "a_high": c([[[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, -1.0]]]),
                "logged": c([[[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [1.0, 0.0]]])}


def test_evaluate_reports_both_scores_and_ranks_by_the_chosen_one():
    batch = {"clicked": tf.constant([[0, 1, 0, 1, 0]]),
             "true_ctr": tf.constant([[0.0, 0.9, 0.1, 0.8, 0.2]]),
             "item_id": tf.constant([[0, 5, 6, 7, 8]])}
    click = evaluate(_FixedScores(), [batch])
    # clicked slots 0 and 2. f: 0.2 and 0.6 against 0.4 and 0.8 -> 1 of 4 pairs in order.
    # cosine: 0.9 and 0.2 against 0.1 and 0.3 -> 3 of 4 pairs.
    assert click["auc_click"] == click["auc"] == 0.25 and click["auc_cosine"] == 0.75
    assert click["oracle_auc"] == 1.0 and click["impressions"] == 4
    cosine = evaluate(_FixedScores(), [batch], "cosine")
    assert cosine["auc"] == 0.75 and cosine["logloss"] == click["logloss"]
    # within slot 0: f 0.2 < 0.4 (AUC 0), cosine 0.9 > 0.1 (1); slot 1: 0.6 < 0.8, 0.2 < 0.3
    assert click["auc_click_by_slot"] == 0.0 and click["auc_cosine_by_slot"] == 0.5
    # Q: 0.1, 0.3 against 0.2, 0.0 -> 3 of 4 pairs; rank wins 2.5 of 4 pairs
    assert click["auc_q_item"] == 0.75 and click["rank_auc_high"] == 0.625
    # clicked slots' channels 0, 3: the LRA's 0, 2 (one hit), the prior 1, 1 (none)
    assert click["channel_hit_rate"] == 0.5 and click["channel_hit_rate_prior"] == 0.0
    # a^l points one way in every state; a^h's four directions cancel
    assert click["action_alignment_low"] == pytest.approx(1.0)
    assert click["action_alignment_high"] == pytest.approx(0.0, abs=1e-6)
    # channel 0: items 5, 6 at (1, 0), (0, 1): cosine 0; channel 3: (1, 1), (1, 0): 0.7071
    assert click["item_cosine_within_channel"] == pytest.approx(2 ** -0.5 / 2, rel=1e-6)
    with pytest.raises(ValueError, match="eval score 'dot': expected one of"):
        evaluate(_FixedScores(), [batch], "dot")


@pytest.mark.slow   # 17 s of graph tracing; the learner's rate rule is tested in test_learner
def test_runner_sets_the_epochs_decayed_rate_before_its_first_step(sim_data, tmp_path):
    # The runner sets the rate from its epoch counter (what a resumed run restores): a run
    # standing at its second epoch trains at learning_rate * decay.
    cfg = HRLConfig(**TINY, batch_size=16, candidates_per_channel=2, learning_rate=1e-3,
                    learning_rate_decay=0.5)
    runner = Runner(cfg, _settings(sim_data, tmp_path, max_steps=1))
    runner.run_settings.epochs = 2
    runner.epoch.assign(1)
    runner.train()
    assert int(runner.learner.step) == 1
    for optimizer in (runner.learner.critic_optimizer, runner.learner.actor_optimizer):
        assert float(optimizer.learning_rate) == pytest.approx(5e-4)
