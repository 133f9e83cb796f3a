"""Shared fixtures. Real data is read from ../shared/data beside the checkout (never committed);
HRL_REC_SHARED_DATA overrides the location."""
import os
import pathlib

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # filters TF's C++ info lines, not oneDNN

import pytest  # noqa: E402

from hrl_rec.distribute import split_cpu  # noqa: E402

# Two logical CPUs for the MirroredStrategy tests; this must happen before any op runs, and
# ops without a device scope still run on the first one.
split_cpu(2)

REPO = pathlib.Path(__file__).resolve().parents[1]
SHARED_DATA = pathlib.Path(os.environ.get("HRL_REC_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> pathlib.Path:
    if not SHARED_DATA.is_dir():
        pytest.fail(f"real data folder {SHARED_DATA} not found (set HRL_REC_SHARED_DATA)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def sim_data(tmp_path_factory) -> pathlib.Path:
    """A tiny IRecSim dataset (150 users, 4 days, the last one the test split)."""
    from data import generate
    from data.sim_config import SimConfig
    path = tmp_path_factory.mktemp("sim") / "data"
    generate.generate(SimConfig(n_users=150, n_days=4, test_days=1), str(path), n_shards=1,
                      processes=1)
    return path
