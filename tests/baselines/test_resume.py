"""baselines.train checkpoints every epoch: the same command resumes a killed run from its
last finished epoch, refuses a checkpoint of other flags, and (--deterministic) ends with the
uninterrupted run's weights."""
import json
import subprocess
import sys

import numpy as np
import pytest

from baselines import train as baseline_train
from baselines.models import CTRModel
from data.pipeline import load_metadata
from tests.conftest import REPO

FLAGS = {"model": "lr", "learning_rate": 0.01, "batch_size": 256, "epochs": 1, "seed": 0}


def _train(sim_data, model_dir, epochs=1, **flags):
    model = CTRModel("lr", load_metadata(str(sim_data))["spec"])
    record = {**FLAGS, **flags, "epochs": epochs}
    result = baseline_train.train(model, str(sim_data), str(model_dir), epochs=epochs,
                                  patience=2, valid_days=1.0, batch_size=256,
                                  learning_rate=record["learning_rate"], max_seq_len=5, seed=0,
                                  flags_record=record)
    return model, result


def test_a_rerun_resumes_after_the_last_epoch_and_other_flags_are_refused(sim_data, tmp_path,
                                                                           capsys):
    model, first = _train(sim_data, tmp_path)
    assert (tmp_path / "ckpt" / "checkpoint").exists() and (tmp_path / "best.weights.h5").exists()
    again, second = _train(sim_data, tmp_path)             # a new model, as a new process has
    assert "resumed from" in capsys.readouterr().out
    assert second["steps"] == first["steps"] and second["valid"] == first["valid"]
    for a, b in zip(model.get_weights(), again.get_weights()):
        np.testing.assert_array_equal(a, b)                # the best epoch's weights, restored
    with pytest.raises(ValueError, match=r"holds a checkpoint of other flags \(--learning_rate="
                                         r"0.01 there, 0.02 now\)"):
        _train(sim_data, tmp_path, learning_rate=0.02)


@pytest.mark.slow   # three CLI runs under op determinism
def test_a_resumed_deterministic_run_ends_with_the_uninterrupted_runs_weights(sim_data,
                                                                                tmp_path):
    def run(model_dir, epochs):
        cmd = [sys.executable, "-m", "baselines.train", "--model=fm", f"--data_dir={sim_data}",
               f"--model_dir={model_dir}", f"--epochs={epochs}", "--patience=5",
               "--batch_size=256", "--learning_rate=0.01", "--max_seq_len=5", "--deterministic"]
        done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-3000:]
        return done.stdout

    run(tmp_path / "whole", 2)
    run(tmp_path / "parts", 1)
    assert "resumed from" in run(tmp_path / "parts", 2)
    from benchmarks.faults import same_weights
    assert same_weights(str(tmp_path / "whole" / "best.weights.h5"),
                        str(tmp_path / "parts" / "best.weights.h5"))
    whole, parts = (json.loads((tmp_path / d / "eval.json").read_text()) for d in ("whole",
                                                                                   "parts"))
    assert whole["auc"] == parts["auc"] and whole["steps"] == parts["steps"]
