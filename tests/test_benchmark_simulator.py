"""benchmarks.simulator's own flags: the bound_* stand-ins, --repeats and the TensorFlow start
it leaves out of the timing (speed is not tested)."""
import json
import subprocess
import sys

from tests.conftest import REPO

CMD = [sys.executable, "-m", "benchmarks.simulator", "--n_users=300", "--n_days=2"]


def _lines(args):
    done = subprocess.run(CMD + args, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return {r["name"]: r for r in map(json.loads, done.stdout.strip().splitlines())}


def test_free_stages_print_bound_lines_and_repeats_list_each_run():
    lines = _lines(["--free_stages=matching,ranking", "--repeats=2"])
    assert set(lines) == {"bound_simulate_impressions_per_s", "bound_generate_impressions_per_s",
                          "bound_env_steps_per_s", "bound_env_impressions_per_s"}
    generate = lines["bound_generate_impressions_per_s"]
    assert generate["free_stages"] == "matching,ranking" and len(generate["runs"]) == 2
    assert generate["tensorflow_start_s_excluded"] > 0  # paid before timing, reported apart
    low, high = sorted(generate["runs"])
    assert low - 1 <= generate["value"] <= high + 1  # the median of two: their mean


def test_bad_benchmark_flags_are_named():
    for flag, message in (("--free_stages=ranking", "--free_stages=ranking: expected matching"),
                          ("--repeats=0", "--repeats=0: 0 is not a positive integer")):
        done = subprocess.run(CMD + [flag], cwd=REPO, capture_output=True, text=True, timeout=300)
        assert done.returncode != 0 and message in done.stderr, done.stderr
