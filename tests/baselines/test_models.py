"""Every Table 2 model: fixed weights against an independent numpy reference on a 2-example
batch, a save/load round trip, and learning a planted feature cross."""
import os

import keras
import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from baselines.models import MODELS, CTRModel

SPEC = {"channel_names": ["a", "b"], "list_size": 2, "max_tags": 2, "n_users": 2, "n_items": 3,
        "n_tags": 3, "user_field_names": ["age"], "user_field_sizes": [3],
        "item_field_names": ["q"], "item_field_sizes": [2], "context_field_names": [],
        "context_field_sizes": []}
HP = dict(embedding_dim=2, dnn_units=(3,), attention_units=2, heads=1, head_size=2,
          interacting_layers=1)
BATCH = {"user_id": np.array([0, 1]), "item_id": np.array([2, 0]), "channel": np.array([1, 0]),
         "slot": np.array([0, 1]), "user_fields": np.array([[2], [0]]),
         "item_fields": np.array([[1], [0]]), "context": np.zeros((2, 0), np.int64),
         "tags": np.array([[1, 2], [2, 0]]), "hist_item_id": np.array([[0, 1, 2], [1, 0, 0]]),
         "hist_mask": np.array([[1, 1, 0], [1, 0, 0]])}


def fixed_model(name):
    model = CTRModel(name, SPEC, **HP)
    model(BATCH)
    model.set_weights([np.sin(np.arange(w.size) * 0.7 + i).reshape(w.shape) * 0.5
                       for i, w in enumerate(model.get_weights())])
    return model


def np_fields(model):
    """The input layer in numpy: (e [B, F, d], w [B, F])."""
    inp = model.inputs_layer
    fields = [("user_id", "user_id", -1), ("item_id", "item_id", -1), ("channel", "channel", -1),
              ("slot", "slot", -1), ("user_fields.age", "user_fields", 0),
              ("item_fields.q", "item_fields", 0)]
    lin = inp.linear.embeddings.numpy()
    emb = inp.embedding.embeddings.numpy() if inp.embeddings else None
    e, w = [], []
    for name, key, col in fields:
        x = (BATCH[key] if col < 0 else BATCH[key][:, col]) + inp.block(name)
        if inp.embeddings:
            e.append(emb[x])
        w.append(lin[x, 0])

    def mean(table, ids, mask):
        return (table[ids] * mask[..., None]).sum(1) / mask.sum(1, keepdims=True)

    tag_mask = (BATCH["tags"] > 0).astype(float)
    hm = BATCH["hist_mask"].astype(float)
    w.append(mean(lin, BATCH["tags"] + inp.block("tags"), tag_mask)[:, 0])
    w.append(mean(lin, BATCH["hist_item_id"] + inp.block("history"), hm)[:, 0])
    if not inp.embeddings:
        return None, np.stack(w, 1)
    e.append(mean(emb, BATCH["tags"] + inp.block("tags"), tag_mask))
    e.append(mean(emb, BATCH["hist_item_id"] + inp.block("item_id"), hm))
    return np.stack(e, 1), np.stack(w, 1)


def np_dense(layer, x, relu):
    y = x @ layer.kernel.numpy() + (layer.bias.numpy() if layer.use_bias else 0.0)
    return np.maximum(y, 0) if relu else y


def softmax(x, axis):
    z = np.exp(x - x.max(axis, keepdims=True))
    return z / z.sum(axis, keepdims=True)


def reference_logit(model, name):
    e, w = np_fields(model)
    b = model.bias.numpy()
    lr = b + w.sum(1)
    if name == "lr":
        return lr
    f = e.shape[1]
    pairs = [(i, j) for i in range(f) for j in range(i + 1, f)]
    fm = sum((e[:, i] * e[:, j]).sum(1) for i, j in pairs)
    if name == "fm":
        return lr + fm
    if name in ("nfm", "widedeep", "deepfm"):
        x = (0.5 * (e.sum(1) ** 2 - (e ** 2).sum(1)) if name == "nfm" else e.reshape(len(e), -1))
        deep = np_dense(model.dnn_out, np_dense(model.dnn.dense[0], x, True), False)[:, 0]
        return lr + deep + (fm if name == "deepfm" else 0.0)
    if name == "afm":
        p = np.stack([e[:, i] * e[:, j] for i, j in pairs], 1)
        a = softmax(np_dense(model.afm.h, np_dense(model.afm.attention, p, True), False), 1)
        return lr + np_dense(model.afm.p, (a * p).sum(1), False)[:, 0]
    if name == "autoint":
        layer = model.interacting[0]
        q, k, v = (e @ getattr(layer, n).numpy() for n in ("w_q", "w_k", "w_v"))
        att = softmax(q @ k.transpose(0, 2, 1), -1)
        x = np.maximum(att @ v + e @ layer.w_res.numpy(), 0)
        return lr + np_dense(model.autoint_out, x.reshape(len(x), -1), False)[:, 0]
    raise AssertionError(name)


@pytest.mark.parametrize("name", MODELS)
def test_fixed_weights_match_reference(name):
    model = fixed_model(name)
    want = 1 / (1 + np.exp(-reference_logit(model, name)))
    np.testing.assert_allclose(model(BATCH), want, rtol=1e-5, atol=1e-6)


def test_lr_hand_computed():
    model = CTRModel("lr", SPEC, **HP)
    model(BATCH)
    inp = model.inputs_layer
    blocks = ["user_id", "item_id", "channel", "slot", "user_fields.age", "item_fields.q",
              "tags", "history"]
    weights = np.zeros(inp.linear.embeddings.shape)
    for i, name in enumerate(blocks):  # every value of block i weighs (i + 1) / 10
        weights[inp.block(name):] = (i + 1) / 10
    inp.linear.embeddings.assign(weights)
    model.bias.assign(-3.0)
    # -3 + (.1 + .2 + .3 + .4 + .5 + .6) + .7 + .8 = 0.6
    np.testing.assert_allclose(model(BATCH), [1 / (1 + np.exp(-0.6))] * 2, rtol=1e-6)


@pytest.mark.parametrize("name", MODELS)
def test_save_load_round_trip(name, tmp_path):
    model = fixed_model(name)
    path = os.path.join(tmp_path, f"{name}.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    np.testing.assert_allclose(loaded(BATCH), model(BATCH), rtol=1e-6)
    assert loaded.get_config() == model.get_config()


def test_ignore_fields_leaves_a_field_out():
    model = CTRModel("deepfm", SPEC, ignore_fields=("slot",), **HP)
    model(BATCH)
    inp = model.inputs_layer
    assert [f[0] for f in inp.fields] == ["user_id", "item_id", "channel", "user_fields.age",
                                          "item_fields.q"]
    assert inp.n_fields == CTRModel("deepfm", SPEC, **HP).inputs_layer.n_fields - 1
    other = dict(BATCH, slot=1 - BATCH["slot"])  # the slot no longer changes the output
    np.testing.assert_allclose(model(other), model(BATCH), rtol=1e-6)
    assert CTRModel.from_config(model.get_config()).hparams["ignore_fields"] == ("slot",)
    with pytest.raises(ValueError, match=r"ignore_fields \['hour'\] are not fields"):
        CTRModel("lr", SPEC, ignore_fields=("hour",))
    with pytest.raises(ValueError, match="history shares item_id"):
        CTRModel("lr", SPEC, ignore_fields=("item_id",))


def test_unknown_model_and_hparams():
    with pytest.raises(ValueError, match="unknown model 'xgb'"):
        CTRModel("xgb", SPEC)
    with pytest.raises(ValueError, match=r"unknown hyper-parameters \['depth'\]"):
        CTRModel("fm", SPEC, depth=3)


def planted(n, seed):
    """Clicks depend on one cross: user field == 1 AND item field == 1."""
    rng = np.random.default_rng(seed)
    spec = {**SPEC, "user_field_sizes": [4], "item_field_sizes": [4], "n_items": 20,
            "n_users": 50}
    uf, itf = rng.integers(0, 4, n), rng.integers(0, 4, n)
    cross = (uf == 1) & (itf == 1)
    # A 0.5% base rate elsewhere keeps the Bayes-optimal AUC near 0.97.
    y = (rng.uniform(size=n) < np.where(cross, 0.9, 0.005)).astype(np.float32)
    feats = {"user_id": rng.integers(0, 50, n), "item_id": rng.integers(0, 20, n),
             "channel": rng.integers(0, 2, n), "slot": rng.integers(0, 2, n),
             "user_fields": uf[:, None], "item_fields": itf[:, None],
             "context": np.zeros((n, 0), np.int64), "tags": rng.integers(0, 3, (n, 2)),
             "hist_item_id": rng.integers(0, 20, (n, 3)), "hist_mask": np.ones((n, 3))}
    return spec, feats, y


@pytest.mark.parametrize("name", MODELS)
def test_learns_a_planted_cross(name):
    keras.utils.set_random_seed(0)
    spec, x, y = planted(4000, 0)
    _, x_test, y_test = planted(2000, 1)
    model = CTRModel(name, spec, embedding_dim=4, dnn_units=(16,))
    model.compile(optimizer=keras.optimizers.Adam(0.02), loss="binary_crossentropy")
    model.fit(x, y, batch_size=256, epochs=8, verbose=0)
    assert roc_auc_score(y_test, np.asarray(model.predict(x_test, verbose=0))) > 0.9


def test_train_cli_writes_eval_json(tmp_path):
    """baselines.train end to end on a tiny simulator dataset (one epoch)."""
    import json
    import subprocess
    import sys

    from data import generate
    from data.sim_config import SimConfig
    from tests.conftest import REPO
    data = tmp_path / "data"
    generate.generate(SimConfig(n_users=200, n_days=4, test_days=1), str(data), n_shards=1,
                      processes=1)
    cmd = [sys.executable, "-m", "baselines.train", "--model=deepfm", f"--data_dir={data}",
           f"--model_dir={tmp_path / 'deepfm'}", "--epochs=1", "--batch_size=512",
           "--learning_rate=0.01", "--lr_auc=0.6", "--deterministic"]   # runs under op determinism
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads((tmp_path / "deepfm" / "eval.json").read_text())
    assert 0.5 < report["auc"] < 1 and report["logloss"] > 0
    assert 0 < report["auc_by_slot"] < 1
    assert report["data_fingerprint"] == json.loads((data / "metadata.json").read_text())[
        "fingerprint"]
    assert report["oracle_auc"] > report["auc"] - 0.05
    assert report["rela_impr_vs_lr"] == pytest.approx((report["auc"] - 0.5) / 0.1 - 1)
    meta = json.loads((data / "metadata.json").read_text())
    ceiling = meta["splits"]["test"]["learnable_ceiling_auc"]
    assert report["learnable_ceiling_auc"] == ceiling
    assert report["oracle_auc_noise_free"] == meta["splits"]["test"]["oracle_auc_noise_free"]
    assert report["headroom_share"] == pytest.approx((report["auc"] - 0.6) / (ceiling - 0.6))
    assert report["examples_per_s"] > 0 and report["valid"]["epoch"] == 1
    assert report["flags"]["model"] == "deepfm" and report["flags"]["deterministic"] is True
    assert (tmp_path / "deepfm" / "model.keras").exists()
    assert any((tmp_path / "deepfm" / "tb").iterdir())
    bad = subprocess.run(cmd[:4], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert bad.returncode != 0 and "--data_dir is required" in bad.stderr


def test_fused_epoch_equals_step_by_step():
    """make_epoch_fn (batches gathered in graph) == make_train_step over the same batches."""
    import tensorflow as tf

    from baselines.train import make_epoch_fn, make_train_step
    spec, x, y = planted(300, 2)
    models = []
    for _ in range(2):
        keras.utils.set_random_seed(3)
        m = CTRModel("deepfm", spec, embedding_dim=4, dnn_units=(8,))
        m({k: v[:2] for k, v in x.items()})
        models.append(m)
    models[1].set_weights(models[0].get_weights())
    order = np.random.default_rng(0).permutation(300)
    epoch = make_epoch_fn(models[0], 0.01, 128)
    epoch({k: tf.constant(v) for k, v in x.items()}, tf.constant(y), tf.constant(order))
    step = make_train_step(models[1], 0.01)
    for i in range(0, 300, 128):  # batches of 128, 128 and 44
        idx = order[i:i + 128]
        step({k: v[idx] for k, v in x.items()}, y[idx])
    for a, b in zip(models[0].get_weights(), models[1].get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def test_constant_fields_get_no_embedding_and_history_is_optional():
    spec = {**SPEC, "channel_names": ["a"], "list_size": 1}  # channel and slot are constants
    model = CTRModel("fm", spec, **HP, history=False)
    model(BATCH)
    # user id, item id, age, q, tags: no channel, slot or history field
    assert model.inputs_layer.n_fields == 5
    e, w = model.inputs_layer(BATCH)
    assert tuple(e.shape) == (2, 5, 2) and tuple(w.shape) == (2, 5)
    assert CTRModel("fm", SPEC, **HP).inputs_layer.n_fields == 8
