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
from tests.conftest import REPO
from tests.hrl_rec.test_train import TINY_FLAGS


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


@pytest.mark.parametrize("cli", ["hrl_rec.train"])   # baselines.train takes the same lock
def test_a_second_training_run_on_a_held_model_dir_stops_before_writing(cli, sim_data,
                                                                        tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        model_dir = tmp_path / "run"
        _plant(model_dir, holder.pid)
        args = ([f"--data_dir={sim_data}", *TINY_FLAGS] if cli == "hrl_rec.train" else
                ["--model=lr", f"--data_dir={sim_data}", "--epochs=1"])
        done = subprocess.run([sys.executable, "-m", cli, f"--model_dir={model_dir}", *args],
                              cwd=REPO, capture_output=True, text=True, timeout=300)
        assert done.returncode != 0
        assert f"--model_dir={model_dir} is in use by pid {holder.pid}" in done.stderr, \
            done.stderr[-2000:]
        assert "Traceback" not in done.stderr
        assert sorted(os.listdir(model_dir)) == [LOCK_NAME]
    finally:
        holder.kill()
        holder.wait()
