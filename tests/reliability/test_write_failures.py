"""A run that cannot write into its folder (a full disk, a read-only or foreign folder) exits
with the path and the state of its last checkpoint, never a traceback; an error elsewhere is
not hidden. (benchmarks.faults runs the real faults on a tmpfs.)"""
import errno
import types

import pytest
import tensorflow as tf

from hrl_rec import runner, train


def _run_raising(monkeypatch, error):
    def boom(*args, **kwargs):
        raise error
    monkeypatch.setattr(runner, "run", boom)


def test_a_full_or_read_only_folder_exits_naming_it_and_its_last_checkpoint(monkeypatch,
                                                                             tmp_path):
    model_dir = str(tmp_path / "run")
    settings = types.SimpleNamespace(model_dir=model_dir)
    _run_raising(monkeypatch, OSError(errno.EROFS, "Read-only file system",
                                      f"{model_dir}/.lock"))
    with pytest.raises(SystemExit) as e:
        train.run_or_exit("HRL-Rec", None, settings)
    assert str(e.value) == (f"HRL-Rec: cannot write into --model_dir={model_dir}: [Errno 30] "
                            f"Read-only file system: '{model_dir}/.lock'; no checkpoint was "
                            "written")
    ckpt = tf.train.Checkpoint(v=tf.Variable(1.0))
    saved = tf.train.CheckpointManager(ckpt, f"{model_dir}/ckpt", 3).save(checkpoint_number=8)
    _run_raising(monkeypatch, tf.errors.ResourceExhaustedError(
        None, None, f"{{{{function_node SaveV2}}}} {model_dir}/ckpt/ckpt-12_temp/part; No "
                    "space left on device [Op:SaveV2]"))
    with pytest.raises(SystemExit) as e:
        train.run_or_exit("HRL-Rec", None, settings)
    assert "No space left on device [Op:SaveV2]" in str(e.value)
    assert f"the last checkpoint, {saved}, is intact" in str(e.value)


def test_an_error_outside_the_run_folder_is_not_turned_into_a_message(monkeypatch, tmp_path):
    settings = types.SimpleNamespace(model_dir=str(tmp_path / "run"))
    _run_raising(monkeypatch, tf.errors.ResourceExhaustedError(None, None, "OOM in MatMul"))
    with pytest.raises(tf.errors.ResourceExhaustedError):
        train.run_or_exit("HRL-Rec", None, settings)
