"""MovieLens-100k as a CTR task for the peer check: rating >= 4 is a click.

Fields: user id, movie id, gender, age bucket, occupation, first zip character; genres as a
variable-length field (up to 6, id 0 = padding). Chronological split: the first 80% of ratings
by timestamp train, the last 20% test. numpy only: the deepctr side imports it too.
"""
from __future__ import annotations

import os

import numpy as np

AGE_EDGES = (18, 25, 35, 45, 50, 56)  # MovieLens-1M's age groups
MAX_GENRES = 6
SPARSE = ("user_id", "item_id", "gender", "age", "occupation", "zip")


def load(movielens_dir: str, test_fraction: float = 0.2) -> dict:
    data_path = os.path.join(movielens_dir, "u.data")
    if not os.path.exists(data_path):
        raise FileNotFoundError(f"{data_path} not found (--movielens_dir must be ml-100k)")
    ratings = np.loadtxt(data_path, dtype=np.int64)
    users = {}
    with open(os.path.join(movielens_dir, "u.user"), encoding="latin-1") as f:
        for line in f:
            uid, age, gender, occupation, zipcode = line.strip().split("|")
            users[int(uid)] = (int(age), gender, occupation, zipcode[:1])
    genres = {}
    with open(os.path.join(movielens_dir, "u.item"), encoding="latin-1") as f:
        for line in f:
            cols = line.rstrip("\n").split("|")
            flags_ = np.array(cols[-19:], np.int64)
            genres[int(cols[0])] = np.flatnonzero(flags_)[:MAX_GENRES] + 1
    order = np.argsort(ratings[:, 3], kind="stable")
    ratings = ratings[order]
    vocab = {k: {v: i for i, v in enumerate(sorted({u[j] for u in users.values()}))}
             for j, k in enumerate(("age_raw", "gender", "occupation", "zip"))}
    out = {
        "user_id": ratings[:, 0] - 1, "item_id": ratings[:, 1] - 1,
        "gender": np.array([vocab["gender"][users[u][1]] for u in ratings[:, 0]]),
        "age": np.searchsorted(AGE_EDGES, [users[u][0] for u in ratings[:, 0]], side="right"),
        "occupation": np.array([vocab["occupation"][users[u][2]] for u in ratings[:, 0]]),
        "zip": np.array([vocab["zip"][users[u][3]] for u in ratings[:, 0]]),
        "label": (ratings[:, 2] >= 4).astype(np.float32),
    }
    g = np.zeros((len(ratings), MAX_GENRES), np.int64)
    for i, m in enumerate(ratings[:, 1]):
        g[i, :len(genres[m])] = genres[m]
    out["genres"] = g
    n_train = int(round(len(ratings) * (1 - test_fraction)))
    out["is_train"] = np.arange(len(ratings)) < n_train
    out["vocab"] = np.array([943, 1682, len(vocab["gender"]), len(AGE_EDGES) + 1,
                             len(vocab["occupation"]), len(vocab["zip"]), 20])
    return out
