import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys

import numpy as np
import pytest

from data import generate, tfrecord_io, writer
from data.schema import SchemaError, load_spec
from data.sim_config import SimConfig
from tests.conftest import REPO
from tests.data.helpers import make_log

TINY = SimConfig(n_users=240, n_days=4, test_days=1)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    out = tmp_path_factory.mktemp("tiny")
    meta = generate.generate(TINY, str(out), n_shards=2, processes=1, history_context=20)
    return out, meta


def _shard_bytes(directory):
    return {p.name: p.read_bytes() for p in sorted(directory.glob("*.tfrecord"))}


def test_same_seed_same_bytes_whatever_the_processes(tiny, tmp_path):
    out, meta = tiny
    again = generate.generate(TINY, str(tmp_path), n_shards=2, processes=2, history_context=20)
    assert _shard_bytes(out) == _shard_bytes(tmp_path)
    assert again["fingerprint"] == meta["fingerprint"]
    assert (out / "items.npz").read_bytes() == (tmp_path / "items.npz").read_bytes()


def test_same_bytes_on_other_simd_and_blas_kernels(tiny, tmp_path):
    """Another CPU gives the same dataset: numpy confined to its baseline (SSE) kernels and
    OpenBLAS to an old one, as on a machine without AVX2 / AVX-512, in a fresh process."""
    from numpy._core import _multiarray_umath as umath  # which SIMD targets this CPU runs
    targets = [f for f in umath.__cpu_dispatch__ if umath.__cpu_features__.get(f)]
    if not targets:
        pytest.skip("numpy already runs its baseline kernels on this CPU")
    env = {**os.environ, "NPY_DISABLE_CPU_FEATURES": " ".join(targets)}
    if platform.machine() == "x86_64":
        env["OPENBLAS_CORETYPE"] = "Sandybridge"
    code = ("import sys; from data import generate; from tests.data.test_generate import TINY; "
            "generate.generate(TINY, sys.argv[1], n_shards=2, processes=1, history_context=20)")
    subprocess.run([sys.executable, "-c", code, str(tmp_path)], cwd=REPO, env=env, check=True,
                   capture_output=True)
    assert _shard_bytes(tiny[0]) == _shard_bytes(tmp_path)


def test_other_seed_other_bytes(tiny, tmp_path):
    out, _ = tiny
    generate.generate(SimConfig(n_users=240, n_days=4, test_days=1, seed=1), str(tmp_path),
                      n_shards=2, processes=1, history_context=20)
    assert _shard_bytes(out) != _shard_bytes(tmp_path)


def test_metadata_counts_match_shards_and_split_is_chronological(tiny):
    out, meta = tiny
    spec = load_spec(str(out / "metadata.json"))
    train = tfrecord_io.read_split(str(out), "train", spec)
    test = tfrecord_io.read_split(str(out), "test", spec)
    assert meta["splits"]["train"]["impressions"] == len(train)
    assert meta["splits"]["test"]["impressions"] == len(test)
    assert meta["splits"]["train"]["clicks"] == int(train.clicked.sum())
    boundary = meta["chronological_split"]["test_start_timestamp"]
    assert train.timestamp.max() < boundary <= test.timestamp.min()
    for key in ("ctr", "impressions_per_session", "clicks_per_session", "sessions_per_user"):
        assert meta["calibration"][key]["paper"] > 0 and meta["calibration"][key]["generated"] > 0
    assert 0.5 < meta["splits"]["test"]["oracle_auc"] < 1.0
    assert len(meta["splits"]["test"]["ctr_per_slot"]) == 10
    assert meta["config"]["n_users"] == 240


def test_metadata_names_each_file_digest_and_one_fingerprint(tiny):
    out, meta = tiny
    files = {p.name: p for p in out.iterdir() if p.suffix in (".tfrecord", ".npz")}
    assert sorted(meta["sha256"]) == sorted(files)
    for name, digest in meta["sha256"].items():
        assert digest == hashlib.sha256(files[name].read_bytes()).hexdigest()
    listing = "".join(f"{name} {meta['sha256'][name]}\n" for name in sorted(meta["sha256"]))
    assert meta["fingerprint"] == hashlib.sha256(listing.encode()).hexdigest()[:16]
    assert json.loads((out / "metadata.json").read_text())["fingerprint"] == meta["fingerprint"]


def test_digests_catch_a_changed_or_missing_file(tiny, tmp_path):
    out, meta = tiny
    data = tmp_path / "copy"
    shutil.copytree(out, data)
    assert writer.check_digests(str(data), meta) == meta["fingerprint"]
    shard = data / "test-00001-of-00002.tfrecord"
    raw = bytearray(shard.read_bytes())
    raw[100] ^= 1
    shard.write_bytes(bytes(raw))
    with pytest.raises(SchemaError, match="test-00001-of-00002.tfrecord: SHA-256 differs"):
        writer.check_digests(str(data), meta)
    done = subprocess.run([sys.executable, "-m", "data.validate", f"--data_dir={data}"],
                          cwd=REPO, capture_output=True, text=True)
    assert done.returncode != 0 and "test-00001-of-00002.tfrecord: SHA-256 differs" in done.stderr
    (data / "items.npz").unlink()
    with pytest.raises(SchemaError, match="items.npz: missing"):
        writer.check_digests(str(data), meta)


def test_test_records_carry_training_history_as_context(tiny):
    out, _ = tiny
    spec = load_spec(str(out / "metadata.json"))
    path = tfrecord_io.split_files(str(out), "test")[0]
    boundary = 3 * 86400
    for log, target in tfrecord_io.read_shard(path, spec):
        context = target == 0
        assert context.sum() <= 20
        assert (log.timestamp[context] < boundary).all()
        assert (log.timestamp[~context] >= boundary).all()


def test_cli_runs_and_rejects_bad_flags(tmp_path):
    cmd = [sys.executable, "-m", "data.generate", "--n_users=120", "--n_days=3", "--test_days=1",
           "--n_shards=1", f"--output_dir={tmp_path}"]
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1])["impressions"] > 0
    assert "shard-days" in done.stderr  # the progress line
    bad = subprocess.run(cmd + ["--alpha=1,2"], cwd=REPO, capture_output=True, text=True,
                         timeout=300)
    assert bad.returncode != 0 and "--alpha needs 4 values" in bad.stderr
    missing = subprocess.run(cmd[:-1], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert missing.returncode != 0 and "--output_dir is required" in missing.stderr


def test_last_per_user():
    from data.writer import last_per_user
    from tests.data.helpers import make_log
    log = make_log([1, 1, 1, 2, 2], [1, 2, 3, 4, 5], [0] * 5, [1, 2, 3, 4, 5])
    np.testing.assert_array_equal(last_per_user(log, 2), [1, 2, 3, 4])
    assert len(last_per_user(log, 0)) == 0


def test_shards_generated_in_separate_runs_merge_into_the_same_dataset(tiny, tmp_path):
    out, meta = tiny
    assert generate.generate(TINY, str(tmp_path), n_shards=2, processes=1, history_context=20,
                             shards=[1]) is None                  # one machine's part
    assert not (tmp_path / "metadata.json").exists()
    merged = generate.generate(TINY, str(tmp_path), n_shards=2, processes=1,
                               history_context=20, shards=[0])    # the other completes the set
    assert _shard_bytes(out) == _shard_bytes(tmp_path)
    for key in ("splits", "overall", "spec", "chronological_split"):
        assert merged[key] == meta[key], key
    assert json.loads((tmp_path / "metadata.json").read_text())["splits"] == meta["splits"]
    with pytest.raises(ValueError, match=r"shard-00000-of-00002.json: generated with other "
                                         r"settings \(differ: \['seed'\]\)"):
        generate.generate(SimConfig(n_users=240, n_days=4, test_days=1, seed=5), str(tmp_path),
                          n_shards=2, processes=1, history_context=20, shards=[1])
    with pytest.raises(ValueError, match=r"--shards: shard 2 out of range \[0, 2\)"):
        generate.generate(TINY, str(tmp_path), n_shards=2, shards=[2])
    assert generate.parse_shards(["0-2", "5"]) == [0, 1, 2, 5]
    assert generate.parse_shards([]) is None


@pytest.mark.parametrize("disorder", ["none", "shuffle", "reversed_slots"])
def test_user_time_order_equals_the_four_key_sort(disorder):
    """The stable sort by user serves when each user's rows are already in time order (as
    simulated); any disorder, down to the slots of one request, falls back to the lexsort."""
    rng = np.random.default_rng(0)
    n = 400
    user = rng.integers(0, 7, n)
    request = np.arange(n) // 10
    log = make_log(user, request, np.arange(n) % 10, rng.integers(0, 100, n),
                   timestamp=request // 3)  # three requests share each timestamp
    if disorder == "shuffle":
        log = log.take(rng.permutation(n))
    elif disorder == "reversed_slots":
        log = log.take(np.r_[np.arange(10)[::-1], np.arange(10, n)])
    order = writer.user_time_order(log)
    np.testing.assert_array_equal(
        order, np.lexsort((log.slot, log.request_id, log.timestamp, log.user_id)))


def test_auc_by_slot_is_the_mean_of_within_slot_aucs():
    from data.stats import auc_by_slot
    labels = [1, 0, 0, 1, 0, 1, 1]
    scores = [0.9, 0.1, 0.5, 0.2, 0.3, 0.4, 0.6]
    slots = [0, 0, 0, 1, 1, 2, 2]
    # slot 0: 0.9 above both -> 1; slot 1: 0.2 below 0.3 -> 0; slot 2: all clicked, skipped
    assert auc_by_slot(labels, scores, slots) == 0.5
