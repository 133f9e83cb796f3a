"""Serving with cached user states: an in-process state store and the request loop (issue 24).

A production feed encodes a user's behaviours once, when they are logged, not once per request:

    behaviours logged  ->  update_state(state, behaviours)  -> state written back to the store
    slate request      ->  slate_from_state(state, candidates)   (the 10 slot decisions only)

`CachedStateServer` runs that loop on an exported SavedModel (hrl_rec.export's
`initial_state`, `update_state` and `slate_from_state` signatures) with `StateStore`, an LRU
dict keyed by user id. A real deployment keeps the states in a key-value store instead
(Redis, Bigtable, a feature store; ~2 x d_h floats plus the last `span` behaviours' ids, about
1.3 KB per user at the paper's sizes) and needs:
  - one writer per user at a time (or compare-and-set on last_event_id), so two concurrent
    updates cannot both start from the same old state and drop each other's behaviours;
  - behaviours delivered at least once: update_state ignores event ids it has already seen,
    so redelivery is harmless, but a behaviour older than the state's last_event_id that
    arrives late is dropped (re-encode the user from the raw history to include it);
  - the model version stored with the state: a state is only valid for the weights that
    wrote it, so a new model starts from initial_state plus the last m behaviours.
A cached state reads every behaviour since it was started, where the raw-history signature
reads the last m; they serve the same slates when the state was built from those m (tested in
tests/hrl_rec/test_policy.py), and diverge as the state outgrows m. A deployment that wants
the trained window exactly rebuilds states from the last m behaviours (e.g. nightly).
"""
from __future__ import annotations

from collections import OrderedDict

import numpy as np
import tensorflow as tf


class StateStore:
    """An LRU map user id -> that user's cached state (a dict of numpy rows).

    `get(user_ids, user_fields, initial)` -> the batched state, `initial(user_ids,
    user_fields)` filling users it does not hold; `put(user_ids, state)` writes rows back.
    Users beyond `capacity` are evicted least recently used first; an evicted user starts
    again from the initial state (count them in `evictions`)."""

    def __init__(self, capacity: int = 100_000):
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        self.capacity, self.evictions = capacity, 0
        self._rows: OrderedDict[int, dict] = OrderedDict()

    def __len__(self) -> int:
        return len(self._rows)

    def __contains__(self, user_id) -> bool:
        return int(user_id) in self._rows

    def get(self, user_ids, user_fields, initial) -> dict:
        ids = [int(u) for u in np.asarray(user_ids)]
        missing = [i for i, u in enumerate(ids) if u not in self._rows]
        fresh = {}
        if missing:
            fresh = {k: np.asarray(v) for k, v in initial(
                tf.constant(np.asarray(user_ids)[missing], tf.int64),
                tf.constant(np.asarray(user_fields)[missing], tf.int64)).items()}
        rows, at = [], {i: j for j, i in enumerate(missing)}
        for i, u in enumerate(ids):
            if i in at:
                rows.append({k: v[at[i]] for k, v in fresh.items()})
            else:
                self._rows.move_to_end(u)
                rows.append(self._rows[u])
        return {k: np.stack([r[k] for r in rows]) for k in rows[0]}

    def put(self, user_ids, state: dict) -> None:
        state = {k: np.asarray(v) for k, v in state.items()}
        for i, u in enumerate(np.asarray(user_ids)):
            self._rows[int(u)] = {k: v[i].copy() for k, v in state.items()}
            self._rows.move_to_end(int(u))
        while len(self._rows) > self.capacity:
            self._rows.popitem(last=False)
            self.evictions += 1


class CachedStateServer:
    """The serving loop over an exported model with cached states.

    served: `tf.saved_model.load(export_dir)` of a prefix-GRU model (hrl_rec.export).
    `observe(user_ids, user_fields, events)` advances the users' states by newly logged
    behaviours (event_* keys, see hrl_rec.export); `recommend(user_ids, user_fields,
    candidates)` -> the slates (serving_default's outputs) from the stored states."""

    def __init__(self, served, store: StateStore | None = None):
        for name in ("initial_state", "update_state", "slate_from_state"):
            if name not in served.signatures:
                raise ValueError(
                    f"the export has no {name!r} signature: cached states need a model with "
                    "--state_window=prefix (re-export it with hrl_rec.export)")
        self.signatures = served.signatures
        self.store = store if store is not None else StateStore()

    def _initial(self, user_id, user_fields) -> dict:
        return {k: v.numpy() for k, v in self.signatures["initial_state"](
            user_id=user_id, user_fields=user_fields).items()}

    def observe(self, user_ids, user_fields, events: dict) -> None:
        state = self.store.get(user_ids, user_fields, self._initial)
        new = self.signatures["update_state"](
            user_id=tf.constant(user_ids, tf.int64), user_fields=tf.constant(user_fields, tf.int64),
            **{k: tf.constant(v) for k, v in state.items()},
            **{k: tf.constant(v, tf.int64) for k, v in events.items()})
        self.store.put(user_ids, {k: v.numpy() for k, v in new.items()})

    def recommend(self, user_ids, user_fields, candidates: dict) -> dict:
        state = self.store.get(user_ids, user_fields, self._initial)
        return self.signatures["slate_from_state"](
            user_id=tf.constant(user_ids, tf.int64), user_fields=tf.constant(user_fields, tf.int64),
            **{k: tf.constant(v) for k, v in state.items()},
            **{k: tf.constant(v, tf.int64) for k, v in candidates.items()})
