"""The deepctr side of benchmarks/peer_ctr.py; runs in the peer virtualenv (tf-keras).

Reads the arrays written by peer_ctr.py, trains deepctr's WDL, DeepFM, NFM, AFM and AutoInt with
the given settings, and prints one JSON line per (model, seed): auc, examples_per_s.
"""
import argparse
import json
import os
import time

os.environ["TF_USE_LEGACY_KERAS"] = "1"  # deepctr needs tf-keras; set before TensorFlow loads

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from deepctr.feature_column import SparseFeat, VarLenSparseFeat  # noqa: E402
from deepctr.models import AFM, NFM, WDL, AutoInt, DeepFM  # noqa: E402
from sklearn.metrics import roc_auc_score  # noqa: E402

SPARSE = ("user_id", "item_id", "gender", "age", "occupation", "zip")


def build(name, columns, a):
    dnn = tuple(a.dnn_units)
    if name == "widedeep":
        return WDL(columns, columns, dnn_hidden_units=dnn, seed=a.seed)
    if name == "deepfm":
        return DeepFM(columns, columns, dnn_hidden_units=dnn, seed=a.seed)
    if name == "nfm":
        return NFM(columns, columns, dnn_hidden_units=dnn, seed=a.seed)
    if name == "afm":
        return AFM(columns, columns, attention_factor=a.attention_units, seed=a.seed)
    if name == "autoint":
        return AutoInt(columns, columns, att_layer_num=3, att_embedding_size=8, att_head_num=2,
                       dnn_hidden_units=(), seed=a.seed)
    raise ValueError(name)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--data", required=True)
    p.add_argument("--models", default="widedeep,deepfm,nfm,afm,autoint")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--batch_size", type=int, default=256)
    p.add_argument("--embedding_dim", type=int, default=8)
    p.add_argument("--learning_rate", type=float, default=1e-3)
    p.add_argument("--attention_units", type=int, default=8)
    p.add_argument("--dnn_units", type=lambda s: [int(x) for x in s.split(",")],
                   default=[256, 128])
    a = p.parse_args()
    z = np.load(a.data)
    vocab = z["vocab"]
    d = a.embedding_dim
    columns = [SparseFeat(n, int(vocab[i]), embedding_dim=d) for i, n in enumerate(SPARSE)]
    columns.append(VarLenSparseFeat(SparseFeat("genres", int(vocab[-1]), embedding_dim=d),
                                    maxlen=z["genres"].shape[1], combiner="mean"))
    train, test = z["is_train"], ~z["is_train"]
    x = {n: z[n] for n in SPARSE + ("genres",)}
    for name in a.models.split(","):
        tf.keras.utils.set_random_seed(a.seed)
        model = build(name, columns, a)
        model.compile(tf.keras.optimizers.Adam(a.learning_rate), "binary_crossentropy")
        start = time.perf_counter()
        model.fit({k: v[train] for k, v in x.items()}, z["label"][train], epochs=a.epochs,
                  batch_size=a.batch_size, verbose=0, shuffle=True)
        secs = time.perf_counter() - start
        pred = model.predict({k: v[test] for k, v in x.items()}, batch_size=4096, verbose=0)
        print(json.dumps({"model": name, "seed": a.seed,
                          "auc": float(roc_auc_score(z["label"][test], pred.ravel())),
                          "examples_per_s": int(train.sum()) * a.epochs / secs}), flush=True)


if __name__ == "__main__":
    main()
