"""Peer check of the Table 2 baselines on MovieLens-100k (rating >= 4 is a click).

    python -m benchmarks.peer_ctr [--seeds=5] [--epochs=3]

Ours (baselines.models, trained by baselines.train's step) against deepctr 0.9.4 (WDL, DeepFM,
NFM, AFM, AutoInt) and scikit-learn's LogisticRegression on one-hot features (LR), on the same
fields, chronological split, embedding size, optimizer (Adam), learning rate, batch size,
epochs and seeds. deepctr runs only under legacy Keras, so it runs in its own virtualenv
(--peer_venv, created on first use: tensorflow-cpu 2.21 + tf-keras 2.21 + deepctr 0.9.4 +
pandas); peers are benchmark-only dependencies. FM has no deepctr peer and is reported alone.
Examples/s = training examples x epochs / training wall time (tracing and compilation included
on both sides); for sklearn's full-batch solver, training examples / fit time. Our in-memory
epochs run as one tf.function each (baselines.train.make_epoch_fn), as keras' fit batches in
graph. Our LR, whose peer is a solver run to convergence, trains until its training loss
improves by less than 0.1% per epoch; every other model trains --epochs, as its peer. Both sides
see the same 7 fields (ours drops the constant channel and slot and uses no history here).
Prints a Markdown table, then one JSON line per model.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from absl import app, flags  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402
from sklearn.metrics import roc_auc_score  # noqa: E402
from sklearn.preprocessing import MultiLabelBinarizer, OneHotEncoder  # noqa: E402
from scipy import sparse  # noqa: E402

import keras  # noqa: E402
from baselines.models import CTRModel  # noqa: E402
from baselines.train import make_epoch_fn  # noqa: E402
from benchmarks import movielens  # noqa: E402
from benchmarks.common import emit  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
flags.DEFINE_string("movielens_dir", os.path.join(REPO, "..", "shared", "data", "movielens-100k"),
                    "The ml-100k folder.")
flags.DEFINE_string("peer_venv", os.path.join(REPO, ".peer-venv"), "deepctr's virtualenv.")
flags.DEFINE_integer("seeds", 5, "Seeds 0..N-1, each model on each side.")
flags.DEFINE_integer("epochs", 3, "Training epochs (both sides).")
flags.DEFINE_integer("batch_size", 256, "Batch size (both sides).")
flags.DEFINE_integer("embedding_dim", 8, "Embedding size (both sides).")
flags.DEFINE_float("learning_rate", 1e-3, "Adam learning rate (both sides).")
flags.DEFINE_float("lr_learning_rate", 1e-2, "Adam learning rate of our LR, whose peer is "
                   "sklearn's full-batch solver run to convergence (no epochs to match).")
flags.DEFINE_integer("lr_max_epochs", 20, "Our LR trains until its training loss converges, "
                     "at most this many epochs.")
flags.DEFINE_list("models", ["lr", "fm", "nfm", "afm", "widedeep", "deepfm", "autoint"],
                  "Our models to check.")
FLAGS = flags.FLAGS
PEER_PACKAGES = ["tensorflow-cpu==2.21.0", "pandas", "scikit-learn"]
PEER_NO_DEPS = ["tf-keras==2.21.0", "deepctr==0.9.4"]


def ensure_peer_venv(path: str) -> str:
    python = os.path.join(path, "bin", "python")
    check = [python, "-c", "import deepctr, tf_keras"]
    if os.path.exists(python) and subprocess.run(check, capture_output=True).returncode == 0:
        return python
    print(f"creating the peer virtualenv {path} (once)", file=sys.stderr, flush=True)
    subprocess.run([sys.executable, "-m", "venv", path], check=True)
    subprocess.run([python, "-m", "pip", "install", "-q", *PEER_PACKAGES], check=True)
    subprocess.run([python, "-m", "pip", "install", "-q", "--no-deps", *PEER_NO_DEPS], check=True)
    return python


def our_features(z: dict, rows: np.ndarray) -> dict:
    n = int(rows.sum())
    return {"user_id": z["user_id"][rows], "item_id": z["item_id"][rows],
            "channel": np.zeros(n, np.int64), "slot": np.zeros(n, np.int64),
            "user_fields": np.stack([z[k][rows] for k in ("gender", "age", "occupation", "zip")],
                                    1),
            "item_fields": np.zeros((n, 0), np.int64), "context": np.zeros((n, 0), np.int64),
            "tags": z["genres"][rows], "hist_item_id": np.zeros((n, 1), np.int64),
            "hist_mask": np.zeros((n, 1), np.int64)}


def our_spec(vocab) -> dict:
    return {"channel_names": ["movie"], "list_size": 1, "max_tags": movielens.MAX_GENRES,
            "n_users": int(vocab[0]), "n_items": int(vocab[1]), "n_tags": int(vocab[-1]),
            "user_field_names": ["gender", "age", "occupation", "zip"],
            "user_field_sizes": [int(v) for v in vocab[2:6]], "item_field_names": [],
            "item_field_sizes": [], "context_field_names": [], "context_field_sizes": []}


def run_ours(name: str, seed: int, z: dict) -> dict:
    keras.utils.set_random_seed(seed)
    model = CTRModel(name, our_spec(z["vocab"]), embedding_dim=FLAGS.embedding_dim,
                     dnn_units=(256, 128), attention_units=8, heads=2, head_size=8,
                     interacting_layers=3, l2=1e-5, history=False)
    train, test = z["is_train"], ~z["is_train"]
    x = {k: tf.constant(v) for k, v in our_features(z, train).items()}
    y = tf.constant(z["label"][train])
    rng = np.random.default_rng(seed)
    lr_model = name == "lr"
    epoch = make_epoch_fn(model, FLAGS.lr_learning_rate if lr_model else FLAGS.learning_rate,
                          FLAGS.batch_size)
    start = time.perf_counter()
    epochs, last = 0, np.inf
    while True:
        loss = float(epoch(x, y, tf.constant(rng.permutation(int(train.sum())))))
        epochs += 1
        # Our LR's peer is a solver run to convergence: LR trains until its training loss
        # improves by less than 0.1% (at most --lr_max_epochs); the others --epochs, as deepctr.
        converged = (last - loss) < 1e-3 * abs(last) or epochs >= FLAGS.lr_max_epochs
        if (epochs >= FLAGS.epochs and not lr_model) or (lr_model and converged):
            break
        last = loss
    secs = time.perf_counter() - start
    pred = tf.function(lambda f: model(f))(
        {k: tf.constant(v) for k, v in our_features(z, test).items()})
    return {"auc": roc_auc_score(z["label"][test], np.asarray(pred)),
            "examples_per_s": train.sum() * epochs / secs, "epochs": epochs}


def run_sklearn_lr(z: dict) -> dict:
    train, test = z["is_train"], ~z["is_train"]
    onehot = OneHotEncoder(handle_unknown="ignore").fit(
        np.stack([z[k] for k in movielens.SPARSE], 1)[train])
    genres = MultiLabelBinarizer(classes=list(range(1, 20)))
    genres.fit([])

    def design(rows):
        cats = onehot.transform(np.stack([z[k] for k in movielens.SPARSE], 1)[rows])
        g = genres.transform([[t for t in row if t > 0] for row in z["genres"][rows]])
        return sparse.hstack([cats, sparse.csr_matrix(g)]).tocsr()

    x_train = design(train)
    start = time.perf_counter()
    lr = LogisticRegression(max_iter=1000).fit(x_train, z["label"][train])
    secs = time.perf_counter() - start
    return {"auc": roc_auc_score(z["label"][test], lr.predict_proba(design(test))[:, 1]),
            "examples_per_s": train.sum() / secs}


def run_peer(python: str, data_path: str, seed: int) -> list[dict]:
    cmd = [python, os.path.join(REPO, "benchmarks", "peer_deepctr.py"), f"--data={data_path}",
           f"--seed={seed}", f"--epochs={FLAGS.epochs}", f"--batch_size={FLAGS.batch_size}",
           f"--embedding_dim={FLAGS.embedding_dim}", f"--learning_rate={FLAGS.learning_rate}",
           "--attention_units=8", "--dnn_units=256,128"]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise RuntimeError(f"deepctr run failed:\n{done.stderr[-3000:]}")
    return [json.loads(l) for l in done.stdout.splitlines() if l.startswith("{")]


def main(argv):
    del argv
    z = movielens.load(FLAGS.movielens_dir)
    python = ensure_peer_venv(FLAGS.peer_venv)
    ours = {m: [] for m in FLAGS.models}
    peer = {m: [] for m in FLAGS.models}
    with tempfile.TemporaryDirectory() as tmp:
        data_path = os.path.join(tmp, "movielens.npz")
        np.savez(data_path, **z)
        for seed in range(FLAGS.seeds):
            for r in run_peer(python, data_path, seed):
                if r["model"] in peer:
                    peer[r["model"]].append(r)
            for m in FLAGS.models:
                ours[m].append(run_ours(m, seed, z))
                print(f"seed {seed} {m}: ours auc {ours[m][-1]['auc']:.4f}", file=sys.stderr,
                      flush=True)
    if "lr" in peer:
        peer["lr"] = [run_sklearn_lr(z)]
    rows = []
    print("| model | our AUC (mean ± std) | peer AUC | difference | our ex/s | peer ex/s | ratio |")
    print("|---|---|---|---|---|---|---|")
    for m in FLAGS.models:
        o_auc = np.array([r["auc"] for r in ours[m]])
        o_eps = float(np.mean([r["examples_per_s"] for r in ours[m]]))
        p_auc = np.array([r["auc"] for r in peer[m]]) if peer[m] else None
        p_eps = float(np.mean([r["examples_per_s"] for r in peer[m]])) if peer[m] else None
        diff = o_auc.mean() - p_auc.mean() if p_auc is not None else None
        print(f"| {m} | {o_auc.mean():.4f} ± {o_auc.std():.4f} | "
              + (f"{p_auc.mean():.4f} ± {p_auc.std():.4f} | {diff:+.4f} | " if p_auc is not None
                 else "– | – | ")
              + f"{o_eps:,.0f} | " + (f"{p_eps:,.0f} | {o_eps / p_eps:.2f} |" if p_eps else "– | – |"))
        rows.append((m, o_auc, p_auc, o_eps, p_eps))
    settings = {"epochs": FLAGS.epochs, "batch_size": FLAGS.batch_size, "seeds": FLAGS.seeds,
                "embedding_dim": FLAGS.embedding_dim, "learning_rate": FLAGS.learning_rate}
    for m, o_auc, p_auc, o_eps, p_eps in rows:
        print(json.dumps({"model": m, "ours_auc": round(float(o_auc.mean()), 4),
                          "ours_auc_std": round(float(o_auc.std()), 4),
                          "peer_auc": None if p_auc is None else round(float(p_auc.mean()), 4),
                          "ours_examples_per_s": round(o_eps),
                          "peer_examples_per_s": None if p_eps is None else round(p_eps),
                          "peer": "sklearn" if m == "lr" else "deepctr", **settings}))
    emit("peer_ctr_models_checked", len(rows), "models", **settings)


if __name__ == "__main__":
    app.run(main)
