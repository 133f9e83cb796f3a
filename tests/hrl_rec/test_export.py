"""The exported SavedModel gives the slates of the in-process policy."""
import subprocess
import sys

import numpy as np

from hrl_rec.export import OUTPUTS, SlateServer, request_signature
from hrl_rec.policy import SlatePolicy, request_from_lists
from tests.conftest import REPO
from tests.hrl_rec.helpers import list_batch, tiny_model

def test_the_cli_exports_a_saved_model_that_serves_the_same_slates(tmp_path):
    """hrl_rec.export in its own process, from a saved model.keras; the SavedModel loaded here
    from disk serves the slates of the in-process policy (items by f, --item_score=click)."""
    import tensorflow as tf
    model = tiny_model(state_window="prefix")
    (tmp_path / "run").mkdir()
    model.save(tmp_path / "run" / "model.keras")
    request = request_from_lists(list_batch(b=3, k=3, seed=5), 4)
    expected = SlatePolicy(model, 10, item_score="click").slate(request)   # eager: no tracing
    cosine = SlatePolicy(model, 10).slate(request)
    assert not np.array_equal(expected["index"].numpy(), cosine["index"].numpy())
    done = subprocess.run([sys.executable, "-m", "hrl_rec.export",
                           f"--model_dir={tmp_path / 'run'}", f"--export_dir={tmp_path / 'x'}",
                           "--item_score=click"], cwd=REPO, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"exported to {tmp_path / 'x'}" in done.stdout and not (tmp_path / "x.tmp").exists()
    served = tf.saved_model.load(str(tmp_path / "x")).signatures["serving_default"](**request)
    assert set(served) == set(OUTPUTS)
    for key in ("item_id", "channel"):
        np.testing.assert_array_equal(served[key].numpy(), expected[key].numpy())
    for key in ("score", "ctr", "propensity"):
        np.testing.assert_allclose(served[key].numpy(), expected[key].numpy(), rtol=1e-5,
                                   atol=1e-6)
    # the cached-state signatures through the in-process state store: the history observed
    # as behaviours, then a request with candidates only, gives the same slates
    from hrl_rec.serving import CachedStateServer
    server = CachedStateServer(tf.saved_model.load(str(tmp_path / "x")))
    events = {f"event_{k[5:]}": v.numpy() for k, v in request.items() if k.startswith("hist_")}
    events["event_id"] = np.tile(np.arange(4), (3, 1)) + 1000
    users, fields = request["user_id"].numpy(), request["user_fields"].numpy()
    server.observe(users, fields, events)
    server.observe(users, fields, events)          # redelivered: ignored
    assert len(server.store) == 3
    candidates = {k: v.numpy() for k, v in request.items() if k.startswith("cand_")}
    cached = server.recommend(users, fields, candidates)
    np.testing.assert_array_equal(cached["item_id"].numpy(), expected["item_id"].numpy())
    np.testing.assert_allclose(cached["ctr"].numpy(), expected["ctr"].numpy(), atol=1e-5)
    # one request alone (batch of 1) is served too
    one = {k: v[:1] for k, v in request.items()}
    single = SlatePolicy(model, 10).slate(one)
    np.testing.assert_array_equal(single["item_id"].numpy(), cosine["item_id"].numpy()[:1])


def test_xla_compiled_server_gives_the_same_slates():
    model = tiny_model(state_window="prefix")
    request = request_from_lists(list_batch(b=3, k=3, seed=5), 4)
    expected = SlatePolicy(model, 10).slate(request)               # eager: no tracing
    names = [s.name for s in request_signature(model.spec, model.max_seq_len)]
    served = SlateServer(model, jit_compile=True).serve(*[request[n] for n in names])
    for key in ("item_id", "channel"):
        np.testing.assert_array_equal(served[key].numpy(), expected[key].numpy())
    for key in ("score", "ctr", "propensity"):
        np.testing.assert_allclose(served[key].numpy(), expected[key].numpy(), rtol=1e-5,
                                   atol=1e-6)


def test_the_state_store_evicts_the_least_recently_used_user():
    from hrl_rec.serving import StateStore

    def initial(user_id, user_fields):
        return {"h": np.zeros((len(user_id), 2), np.float32) - 1}

    store = StateStore(capacity=2)
    store.put([1, 2], {"h": np.array([[1, 1], [2, 2]], np.float32)})
    got = store.get([2, 7], [[0], [0]], initial)        # 7 is unknown: its initial state
    np.testing.assert_array_equal(got["h"], [[2, 2], [-1, -1]])
    store.put([3], {"h": np.array([[3, 3]], np.float32)})   # evicts 1, used least recently
    assert 1 not in store and 2 in store and 3 in store and store.evictions == 1
