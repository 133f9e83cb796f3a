"""hrl_rec.distribute and the learner under tf.distribute: two MirroredStrategy replicas on the
two logical CPUs of conftest.py compute the single-device steps of the global batch."""
import json
import os
import re
import socket
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from absl import app

from hrl_rec import distribute, train
from hrl_rec.learner import Learner
from hrl_rec.model import target_copy
from tests.conftest import REPO
from tests.hrl_rec.helpers import TINY, list_batch, tiny_config, tiny_model


def _learner(strategy, cfg, weights):
    with strategy.scope():
        model = tiny_model()
        model.set_weights(weights)
        return Learner(model, target_copy(model), cfg, seed=3)


def _batches(n=3, b=4):
    parts = [list_batch(b=b, seed=i) for i in range(n)]
    stacked = {k: tf.concat([p[k] for p in parts], 0) for k in parts[0]}
    return tf.data.Dataset.from_tensor_slices(stacked).batch(b)


def _trajectory(learner, batches, eager=False):
    out = []
    for batch in batches:
        metrics = (learner._train_step if eager else learner.train_step)(batch)
        out.append({k: v.numpy() for k, v in metrics.items() if not k.startswith("hist/")})
    return out


def test_two_mirrored_replicas_follow_the_single_device_trajectory():
    # Noise on, clipping active (small clip_norm), target updates every other step.
    cfg = tiny_config(critic_steps=2, action_noise=0.1, clip_norm=0.05, target_update_period=2)
    weights = tiny_model().get_weights()
    single = _learner(tf.distribute.get_strategy(), cfg, weights)
    expected = _trajectory(single, _batches(), eager=True)    # the reference needs no tracing
    mirrored = distribute.make_strategy("mirrored")
    assert mirrored.num_replicas_in_sync == 2
    replicated = _learner(mirrored, cfg, weights)
    got = _trajectory(replicated, mirrored.experimental_distribute_dataset(_batches()))
    for step, (e, g) in enumerate(zip(expected, got)):
        for name in e:
            np.testing.assert_allclose(g[name], e[name], rtol=2e-4, atol=1e-5,
                                       err_msg=f"step {step} {name}")
    assert expected[0]["grad/actor_norm"] > cfg.clip_norm          # clipping was exercised
    assert replicated.step.numpy() == 3 and replicated.critic_optimizer.iterations.numpy() == 6
    for a, b in zip(single.model.weights + single.target.weights,
                    replicated.model.weights + replicated.target.weights):
        np.testing.assert_allclose(b.numpy(), a.numpy(), rtol=1e-4, atol=1e-5, err_msg=a.path)


def test_replica_normal_and_share_on_one_device():
    seed = tf.constant([1, 2], tf.int64)
    np.testing.assert_array_equal(distribute.replica_normal(tf.constant([3, 2]), seed),
                                  tf.random.stateless_normal([3, 2], seed))
    assert float(distribute.transition_share(tf.constant([[1.0, 0.0]]))) == 1.0


def test_strategy_errors_name_the_flag_and_what_is_missing(monkeypatch):
    with pytest.raises(ValueError, match=r"--strategy=ring: expected one of \('default'"):
        distribute.make_strategy("ring")
    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(ValueError, match="--strategy=multi_worker: expected the TF_CONFIG"):
        distribute.make_strategy("multi_worker")
    monkeypatch.setenv("TF_CONFIG", "{not json")
    with pytest.raises(ValueError, match="TF_CONFIG='{not json' is not"):
        distribute.task_of("parameter_server")
    monkeypatch.setenv("TF_CONFIG", '{"cluster": {"worker": ["a:1"]}, '
                                    '"task": {"type": "worker", "index": 0}}')
    with pytest.raises(ValueError, match=r"cluster has no \['chief', 'ps'\] job"):
        distribute.tf_config("parameter_server")
    monkeypatch.setenv("TF_CONFIG", '{"cluster": {"worker": ["a:1"]}, '
                                    '"task": {"type": "worker", "index": 1}}')
    with pytest.raises(ValueError, match="task worker:1 is not in the cluster"):
        distribute.tf_config("multi_worker")


# -- the CLI on a cluster of local processes --------------------------------------------------
CLI_FLAGS = [f"--{k}={v}" for k, v in TINY.items()] + [
    "--batch_size=32", "--candidates_per_channel=2", "--validate_data=false", "--epochs=1",
    "--max_steps=4", "--critic_steps=2"]


def _free_ports(n):
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("localhost", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return [f"localhost:{p}" for p in ports]


def _launch(args, tf_config=None, **kw):
    env = dict(os.environ)
    env.pop("TF_CONFIG", None)
    if tf_config is not None:
        env["TF_CONFIG"] = json.dumps(tf_config)
    return subprocess.Popen([sys.executable, "-m", "hrl_rec.train", *args], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kw)


def _finish(proc, timeout=400):
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
        pytest.fail(f"timed out: {proc.args}\n{out[-3000:]}")
    assert proc.returncode == 0, out[-3000:]
    return out


@pytest.mark.cluster
def test_two_multi_worker_workers_match_one_device(sim_data, tmp_path):
    """Two MultiWorkerMirrored workers (TF_CONFIG, localhost) train the same model as one
    device with the same global batch: same steps, same test AUC and logloss. (Exact equality
    is not expected: Adam turns the rounding differences of a gradient summed in two halves
    into full-size steps where a gradient is ~0; the in-process test above checks the math.)"""
    common = [f"--data_dir={sim_data}", *CLI_FLAGS]
    workers = _free_ports(2)
    procs = [_launch([*common, f"--model_dir={tmp_path / 'mw'}", "--strategy=multi_worker"],
                     {"cluster": {"worker": workers}, "task": {"type": "worker", "index": i}})
             for i in (1, 0)] + [_launch([*common, f"--model_dir={tmp_path / 'one'}"])]
    for proc in procs:
        _finish(proc)
    mw = json.loads((tmp_path / "mw" / "eval.json").read_text())
    one = json.loads((tmp_path / "one" / "eval.json").read_text())
    assert mw["strategy"] == "multi_worker" and mw["replicas"] == 2 and mw["steps"] == 4
    assert one["steps"] == 4
    assert abs(mw["auc"] - one["auc"]) < 2e-3 and abs(mw["logloss"] - one["logloss"]) < 1e-3
    assert not (tmp_path / "mw" / "workers").exists()      # the non-chief scratch is removed


@pytest.mark.cluster
def test_parameter_server_cluster_trains_asynchronously(sim_data, tmp_path):
    chief, w0, w1, ps = _free_ports(4)
    cluster = {"chief": [chief], "worker": [w0, w1], "ps": [ps]}
    args = [f"--data_dir={sim_data}", f"--model_dir={tmp_path / 'ps'}",
            "--strategy=parameter_server", *CLI_FLAGS]
    servers = [_launch(args, {"cluster": cluster, "task": {"type": kind, "index": i}})
               for kind, i in (("worker", 0), ("worker", 1), ("ps", 0))]
    try:
        out = _finish(_launch(args, {"cluster": cluster, "task": {"type": "chief", "index": 0}}))
    finally:
        for server in servers:
            server.kill()
            server.communicate()
    report = json.loads((tmp_path / "ps" / "eval.json").read_text())
    assert report["strategy"] == "parameter_server" and report["steps"] == 4
    assert 0 < report["auc"] < 1 and report["transitions"] > 0
    assert "epoch 1/1" in out


def test_cli_strategy_errors_name_the_flag(sim_data, tmp_path):
    proc = _launch([f"--data_dir={sim_data}", "--strategy=multi_worker",
                    f"--model_dir={tmp_path}"])
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode != 0 and "--strategy=multi_worker: expected the TF_CONFIG" in out
    for args, message in (
            (("mirrored", 0, "m", 33, 2), "--batch_size=33: expected a multiple of the 2 "
                                          "replicas of --strategy=mirrored"),
            (("default", 2, "m"), "--cpu_replicas=2: only used with --strategy=mirrored"),
            (("parameter_server", 0, None), "--strategy=parameter_server: --model_dir is "
                                            "required")):
        with pytest.raises(app.UsageError, match=re.escape(message)):
            train.check_strategy_flags(*args)
