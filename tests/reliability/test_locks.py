"""data.files.FolderLock: one writer per run folder. A second run on a --model_dir that a live
run holds stops before it writes anything, naming the first's pid; a lock left by a killed run
is taken over."""
import io
import json
import os
import subprocess
import sys

import pytest

from data.files import LOCK_NAME, FolderLock, FolderLocked


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def _plant(folder, pid, host=None):
    import socket
    folder.mkdir(parents=True, exist_ok=True)
    (folder / LOCK_NAME).write_text(json.dumps({"pid": pid, "host": host or socket.gethostname(),
                                                "started": 0, "command": "python -m first"}))


def test_a_held_folder_refuses_a_second_holder_naming_the_pid_and_frees_on_exit(tmp_path):
    with FolderLock(str(tmp_path), "--model_dir") as lock:
        assert json.loads((tmp_path / LOCK_NAME).read_text())["pid"] == os.getpid()
        with pytest.raises(FolderLocked, match=rf"--model_dir={tmp_path} is in use by pid "
                                               rf"{os.getpid()}"):
            FolderLock(str(tmp_path), "--model_dir").acquire()
        assert lock.owned
    assert not (tmp_path / LOCK_NAME).exists()
    FolderLock(str(tmp_path)).acquire()       # free again


def test_a_killed_runs_lock_is_taken_over_and_another_hosts_is_refused(tmp_path):
    pid = _dead_pid()
    _plant(tmp_path, pid)
    said = io.StringIO()
    with FolderLock(str(tmp_path), "--model_dir", stream=said):
        assert json.loads((tmp_path / LOCK_NAME).read_text())["pid"] == os.getpid()
    assert f"taking over the lock of pid {pid}, which is gone (python -m first)" in said.getvalue()
    _plant(tmp_path, 1, host="elsewhere")
    with pytest.raises(FolderLocked, match=r"in use by pid 1 on host elsewhere .* remove "):
        FolderLock(str(tmp_path)).acquire()
    # releasing a lock this process does not own leaves it in place
    lock = FolderLock(str(tmp_path))
    lock.owned = True
    lock.release()
    assert (tmp_path / LOCK_NAME).exists()


def test_a_second_training_run_on_a_held_model_dir_stops_before_writing(tmp_path):
    """hrl_rec.train, the DQN and DDPG trainers: runner.run takes the lock first, and
    run_or_exit turns a held folder into the message (baselines.train: the same FolderLock)."""
    from hrl_rec import runner, train
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        model_dir = tmp_path / "run"
        _plant(model_dir, holder.pid)
        settings = runner.RunSettings(data_dir=str(tmp_path / "no_data"),
                                      model_dir=str(model_dir))
        with pytest.raises(SystemExit) as e:
            train.run_or_exit("HRL-Rec", None, settings)
        assert str(e.value).startswith(f"HRL-Rec: --model_dir={model_dir} is in use by pid "
                                       f"{holder.pid} (python -m first)")
        assert sorted(os.listdir(model_dir)) == [LOCK_NAME]
    finally:
        holder.kill()
        holder.wait()
