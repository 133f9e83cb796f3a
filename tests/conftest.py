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
