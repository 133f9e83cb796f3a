"""experiments.reproduce: steps run once, resume after a failure or a stop, and report progress."""
import io
import json
import os
import subprocess
import sys

import pytest
from absl import app

from experiments import reproduce

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _step(name, out, minutes=1.0, **kw):
    extra = tuple(f"--{k}={v}" if v is not True else f"--{k}" for k, v in kw.items())
    return reproduce.Step(name, f"the {name}", "tests.experiments.fake_step",
                          (f"--out={out}", *extra), (out,), minutes)


@pytest.fixture
def here(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PYTHONPATH", REPO)
    return tmp_path


def _runs(path):
    return len(open(str(path) + ".count").read().splitlines())


def test_finished_steps_are_stamped_and_skipped_on_the_next_run(here):
    plan = (_step("a", "res/a.md"), _step("b", "res/b.md"))
    log = io.StringIO()
    assert reproduce.run_plan(plan, "state", stream=log) == []
    stamp = json.load(open("state/a.json"))
    assert stamp["command"] == plan[0].text() and stamp["seconds"] >= 0
    assert "[1/2] a (the a)" in log.getvalue() and "ETA" in log.getvalue()
    again = io.StringIO()
    assert reproduce.run_plan(plan, "state", stream=again) == []
    assert "a: done before" in again.getvalue() and "[1/" not in again.getvalue()
    assert _runs("res/a.md") == _runs("res/b.md") == 1
    # a changed command is not the stamped one: it runs again
    changed = (_step("a", "res/a.md", fail_while="nothing"),)
    assert reproduce.run_plan(changed, "state", stream=io.StringIO()) == []
    assert _runs("res/a.md") == 2
    # and a deleted output makes its step run again
    os.remove("res/b.md")
    assert reproduce.run_plan(plan, "state", stream=io.StringIO()) == []
    assert _runs("res/b.md") == 2 and _runs("res/a.md") == 3


def test_a_failed_step_stops_the_plan_names_its_log_and_resumes_there(here):
    open("broken", "w").close()
    plan = (_step("a", "res/a.md"), _step("b", "res/b.md", fail_while="broken"),
            _step("c", "res/c.md"))
    log = io.StringIO()
    assert reproduce.run_plan(plan, "state", stream=log) == ["b"]
    assert "FAILED b: `" in log.getvalue() and "exited 3" in log.getvalue()
    assert "state/b.log" in log.getvalue() and not os.path.exists("res/c.md.count")
    assert "progress on stderr" in open("state/b.log").read()
    # --keep_going runs c after b fails
    assert reproduce.run_plan(plan, "state", keep_going=True, stream=io.StringIO()) == ["b"]
    assert os.path.exists("res/c.md")
    os.remove("broken")
    assert reproduce.run_plan(plan, "state", stream=io.StringIO()) == []
    assert (_runs("res/a.md"), _runs("res/b.md"), _runs("res/c.md")) == (1, 3, 1)


def test_a_step_that_exits_0_without_its_file_is_a_failure(here):
    plan = (_step("a", "res/a.md", skip_output=True),)
    log = io.StringIO()
    assert reproduce.run_plan(plan, "state", stream=log) == ["a"]
    assert "did not write ['res/a.md']" in log.getvalue()
    assert not os.path.exists("state/a.json")


def test_stdout_goes_whole_to_its_file_and_missing_inputs_are_named(here):
    step = reproduce.Step("j", "json lines", "tests.experiments.fake_step",
                          ("--out=res/j.md",), ("res/j.jsonl",), 1, stdout_to="res/j.jsonl")
    assert reproduce.run_plan((step,), "state", stream=io.StringIO()) == []
    assert open("res/j.jsonl").read() == '{"name": "x", "value": 1}\n'
    needy = reproduce.Step("m", "real data", "tests.experiments.fake_step", ("--out=m",),
                           ("m",), 1, needs=("../no/such/data",))
    log = io.StringIO()
    assert reproduce.run_plan((needy,), "state", stream=log) == ["m"]
    assert "needs ['../no/such/data']" in log.getvalue()


def test_the_eta_scales_the_estimates_by_the_steps_run_so_far(here):
    # step a is estimated at 100 min and takes seconds: b's estimate shrinks with it
    plan = (_step("a", "res/a.md", minutes=100), _step("b", "res/b.md", minutes=100))
    log = io.StringIO()
    reproduce.run_plan(plan, "state", stream=log)
    first, second = [line for line in log.getvalue().splitlines() if "estimated" in line]
    assert "ETA 200.0 min" in first
    assert "estimated 0 min" in second


def test_only_names_unknown_steps_and_the_plans_are_well_formed():
    with pytest.raises(app.UsageError, match=r"--only: \['tabel2'\] are not steps"):
        reproduce.select(reproduce.PLAN, ["tabel2"])
    assert [s.name for s in reproduce.select(reproduce.PLAN, ["fig3", "table3"])] == [
        "table3", "fig3"]
    for plan in (reproduce.PLAN, reproduce.QUICK_PLAN):
        names = [s.name for s in plan]
        assert len(set(names)) == len(names)
        for s in plan:
            assert s.outputs and s.minutes > 0
            for arg in s.args:
                if arg.startswith("--flagfile="):
                    assert os.path.exists(os.path.join(REPO, arg.split("=", 1)[1])), arg
    assert sum(s.minutes for s in reproduce.QUICK_PLAN) < 30


def test_the_cli_dry_run_lists_every_step_and_runs_nothing(tmp_path):
    out = subprocess.run([sys.executable, "-m", "experiments.reproduce", "--quick", "--dry_run",
                          f"--state_dir={tmp_path}"], cwd=REPO, capture_output=True, text=True,
                         check=True).stdout
    assert [line.split()[0] for line in out.splitlines()[:-1]] == [
        s.name for s in reproduce.QUICK_PLAN]
    assert out.splitlines()[-1].startswith("left: about")
    assert not os.listdir(tmp_path)
