"""experiments.grid with a stand-in trainer: each job runs once, finished runs are reused,
failures name the run and its log, and folders of other commands or datasets are refused."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from experiments import grid
from tests.conftest import REPO

FAKE = "tests.experiments.fake_trainer"


@pytest.fixture(autouse=True)
def _in_repo(monkeypatch):
    monkeypatch.chdir(REPO)   # `python -m tests...` resolves from the repository root


def _setting(name, *args):
    return grid.Setting(name, name.upper(), FAKE, tuple(args))


def test_each_job_runs_once_and_finished_runs_are_reused(tmp_path, capsys):
    count = tmp_path / "count"
    settings = [_setting("a", "--auc=0.7", f"--count_file={count}"),
                _setting("b", "--auc=0.8", f"--count_file={count}")]
    results = grid.run_grid(settings, [0, 2], str(tmp_path / "runs"), "test")
    assert results == {("a", 0): {"auc": 0.7, "data_fingerprint": "f00d"},
                       ("b", 0): {"auc": 0.8, "data_fingerprint": "f00d"},
                       ("a", 2): {"auc": 0.702, "data_fingerprint": "f00d"},
                       ("b", 2): {"auc": 0.802, "data_fingerprint": "f00d"}}
    # seed by seed: a grid stopped early holds whole seeds
    assert [line.rsplit("/", 1)[1] for line in count.read_text().split()] == [
        "a__0", "b__0", "a__2", "b__2"]
    job = json.loads((tmp_path / "runs" / "b__2" / "job.json").read_text())
    assert job == {"module": FAKE, "args": ["--auc=0.8", f"--count_file={count}"], "seed": 2}
    assert "fake trainer, seed 2" in (tmp_path / "runs" / "b__2" / "train.log").read_text()
    capsys.readouterr()
    again = grid.run_grid(settings, [0, 2, 3], str(tmp_path / "runs"), "test")
    assert len(count.read_text().split()) == 6          # only seed 3's two jobs ran
    err = capsys.readouterr().err
    assert "test: 6 runs in" in err and "4 finished before (reused)" in err
    assert "test: 2/2 runs (100%)" in err                # progress counts the real runs only
    assert again[("a", 3)]["auc"] == pytest.approx(0.703)


def test_a_failed_run_names_itself_and_its_log(tmp_path):
    with pytest.raises(grid.GridError, match=r"(?s)bad seed 1 failed \(exit 3\).*"
                       r"bad__1/train.log.*boom: a bad flag"):
        grid.run_grid([_setting("ok"), _setting("bad", "--fail")], [1], str(tmp_path), "test")
    assert (tmp_path / "ok__1" / "eval.json").exists()   # what finished before is kept


def test_a_folder_of_another_command_is_refused(tmp_path):
    grid.run_job(_setting("a", "--auc=0.7"), 0, str(tmp_path))
    with pytest.raises(grid.GridError, match=r"a__0 holds a run of another command "
                       r"\(differs: \['--auc=0.7', '--auc=0.9'\]\)"):
        grid.run_job(_setting("a", "--auc=0.9"), 0, str(tmp_path))


def test_runs_on_different_datasets_are_refused(tmp_path):
    settings = [_setting("a", "--fingerprint=one"), _setting("b", "--fingerprint=two")]
    with pytest.raises(grid.GridError, match=r"different datasets \(fingerprints "
                       r"\['one', 'two'\]\)"):
        grid.run_grid(settings, [0], str(tmp_path), "test")


def test_report_only_reads_the_finished_runs_and_starts_none(tmp_path, capsys):
    count = tmp_path / "count"
    a, b = _setting("a", f"--count_file={count}"), _setting("b", f"--count_file={count}")
    grid.run_job(a, 0, str(tmp_path / "runs"))
    results = grid.run_grid([a, b], [0, 1], str(tmp_path / "runs"), "test", run=False)
    assert results == {("a", 0): {"auc": 0.7, "data_fingerprint": "f00d"}}
    assert len(count.read_text().split()) == 1
    assert "1 finished before (reported; the others are not run)" in capsys.readouterr().err
    assert not (tmp_path / "runs" / "b__0").exists()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="prctl(PR_SET_PDEATHSIG)")
def test_a_killed_grid_leaves_no_trainer_running_and_its_rerun_finishes_the_job(tmp_path):
    runs = tmp_path / "runs"
    code = ("from experiments import grid; grid.run_job(grid.Setting('s', 'S', "
            f"{FAKE!r}, ('--auc=0.6',)), 0, {str(runs)!r})")
    parent = subprocess.Popen([sys.executable, "-c", code], cwd=REPO,
                              env={**os.environ, "FAKE_TRAINER_SLEEP": "60"})
    pid_file = runs / "s__0" / "pid"
    deadline = time.monotonic() + 60
    while not pid_file.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.1)
    trainer = int(pid_file.read_text())
    parent.send_signal(signal.SIGKILL)                 # the grid dies mid-run
    parent.wait()
    from benchmarks.faults import running                # a reaped-late zombie is dead
    gone = time.monotonic() + 5
    while running(trainer) and time.monotonic() < gone:
        time.sleep(0.05)
    assert not running(trainer), "the trainer outlived its grid"
    assert not (runs / "s__0" / "eval.json").exists()   # nothing half-finished to collect
    report, ran = grid.run_job(_setting("s", "--auc=0.6"), 0, str(runs))
    assert ran and report["auc"] == pytest.approx(0.6)
