"""A shard that is truncated, bit-flipped or deleted after it was written is found before any
training step, by an error naming the file."""
import os
import shutil
import subprocess
import sys

import pytest

from data import tfrecord_io, writer
from data.pipeline import load_metadata
from data.schema import SchemaError
from tests.conftest import REPO
from tests.hrl_rec.test_train import TINY_FLAGS


@pytest.fixture
def copy(sim_data, tmp_path):
    out = tmp_path / "data"
    shutil.copytree(sim_data, out)
    return out


def _shard(folder):
    return sorted(p for p in os.listdir(folder) if p.startswith("train-"))[0]


@pytest.mark.parametrize("how", ["truncated", "bitflip"])
def test_a_changed_shard_fails_its_digest_naming_it(copy, how):
    path = copy / _shard(copy)
    raw = bytearray(path.read_bytes())
    if how == "truncated":
        raw = raw[:len(raw) // 2]
    else:
        raw[len(raw) // 3] ^= 0x10
    path.write_bytes(bytes(raw))
    with pytest.raises(SchemaError, match=rf"{path.name}: SHA-256 differs"):
        writer.check_digests(str(copy), load_metadata(str(copy)))
    if how == "truncated":    # and the records themselves cannot be read
        with pytest.raises(SchemaError, match=rf"{path.name}: corrupt TFRecord"):
            list(tfrecord_io.read_shard(str(path), tfrecord_io.schema.load_spec(
                str(copy / "metadata.json"))))


def test_a_deleted_shard_stops_readers_and_training_naming_it(copy, tmp_path):
    name = _shard(copy)
    os.remove(copy / name)
    with pytest.raises(FileNotFoundError, match=rf"{name}: missing \(metadata.json says"):
        tfrecord_io.split_files(str(copy), "train")
    done = subprocess.run([sys.executable, "-m", "hrl_rec.train", f"--data_dir={copy}",
                           f"--model_dir={tmp_path / 'run'}", *TINY_FLAGS], cwd=REPO,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode != 0 and "Traceback" not in done.stderr
    assert f"{name}: missing (metadata.json lists it); regenerate" in done.stderr
    assert not (tmp_path / "run").exists()
