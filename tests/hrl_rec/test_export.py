"""The exported SavedModel gives, in a fresh process, the slates of the in-process policy."""
import subprocess
import sys

import numpy as np

from hrl_rec.export import OUTPUTS, SlateServer, export, request_signature
from hrl_rec.policy import SlatePolicy, request_from_lists
from tests.conftest import REPO
from tests.hrl_rec.helpers import list_batch, tiny_model

LOAD_AND_SERVE = """
import sys, numpy as np, tensorflow as tf
served = tf.saved_model.load(sys.argv[1]).signatures["serving_default"]
request = dict(np.load(sys.argv[2]))
out = served(**{k: tf.constant(v, tf.int64) for k, v in request.items()})
np.savez(sys.argv[3], **{k: v.numpy() for k, v in out.items()})
"""


def test_export_serves_the_same_slates_in_a_fresh_process(tmp_path):
    model = tiny_model(state_window="prefix")
    request = request_from_lists(list_batch(b=3, k=3, seed=5), 4)
    expected = SlatePolicy(model, 10)(request)
    export(model, str(tmp_path / "export"))
    np.savez(tmp_path / "request.npz", **{k: v.numpy() for k, v in request.items()})
    done = subprocess.run([sys.executable, "-c", LOAD_AND_SERVE, str(tmp_path / "export"),
                           str(tmp_path / "request.npz"), str(tmp_path / "out.npz")],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    served = np.load(tmp_path / "out.npz")
    assert set(served.files) == set(OUTPUTS)
    for key in ("item_id", "channel"):
        np.testing.assert_array_equal(served[key], expected[key].numpy())
    for key in ("score", "ctr", "propensity"):
        np.testing.assert_allclose(served[key], expected[key].numpy(), rtol=1e-5, atol=1e-6)
    # one request alone (batch of 1) is served too
    one = {k: v[:1] for k, v in request.items()}
    single = SlatePolicy(model, 10)(one)
    np.testing.assert_array_equal(single["item_id"].numpy(), expected["item_id"].numpy()[:1])



def test_xla_compiled_server_gives_the_same_slates():
    model = tiny_model(state_window="prefix")
    request = request_from_lists(list_batch(b=3, k=3, seed=5), 4)
    expected = SlatePolicy(model, 10)(request)
    names = [s.name for s in request_signature(model.spec, model.max_seq_len)]
    served = SlateServer(model, jit_compile=True).serve(*[request[n] for n in names])
    for key in ("item_id", "channel"):
        np.testing.assert_array_equal(served[key].numpy(), expected[key].numpy())
    for key in ("score", "ctr", "propensity"):
        np.testing.assert_allclose(served[key].numpy(), expected[key].numpy(), rtol=1e-5,
                                   atol=1e-6)
