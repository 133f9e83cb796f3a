"""Fixtures shared by the HRL-Rec tests."""
import pytest


@pytest.fixture(scope="session")
def sim_data(tmp_path_factory):
    """A tiny IRecSim dataset (150 users, 4 days, the last one the test split)."""
    from data import generate
    from data.sim_config import SimConfig
    path = tmp_path_factory.mktemp("sim") / "data"
    generate.generate(SimConfig(n_users=150, n_days=4, test_days=1), str(path), n_shards=1,
                      processes=1)
    return path
