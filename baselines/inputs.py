"""The baselines' shared input layer: the same feature fields HRL-Rec sees.

Fields: user id, item id, channel, slot, each user profile field, each item field, each
context field, the item's tags (mean of tag embeddings) and, unless `history=False`, the
user's history (mean of the item embeddings of the m most recent impressions before this one,
over `hist_mask`; it shares the item-id table, as DIN-style models do). A field whose
vocabulary has a single value (one channel, lists of one slot) is a constant that the global
bias already covers, so it gets no embedding.
"""
from __future__ import annotations

import keras
from keras import ops

from baselines.layers import PACKAGE


def field_vocabularies(spec: dict) -> list[tuple[str, str, int, int]]:
    """-> [(field name, input key, column or -1, vocabulary size)] from a FeatureSpec dict."""
    fields = [("user_id", "user_id", -1, spec["n_users"]),
              ("item_id", "item_id", -1, spec["n_items"]),
              ("channel", "channel", -1, len(spec["channel_names"])),
              ("slot", "slot", -1, spec["list_size"])]
    for key, names, sizes in (("user_fields", "user_field_names", "user_field_sizes"),
                              ("item_fields", "item_field_names", "item_field_sizes"),
                              ("context", "context_field_names", "context_field_sizes")):
        fields += [(f"{key}.{n}", key, j, s) for j, (n, s) in enumerate(zip(spec[names],
                                                                            spec[sizes]))]
    return [f for f in fields if f[3] > 1]


def _masked_mean(emb, mask):
    mask = ops.cast(mask, emb.dtype)[..., None]
    return ops.sum(emb * mask, axis=1) / ops.maximum(ops.sum(mask, axis=1), 1.0)


@keras.saving.register_keras_serializable(package=PACKAGE)
class FieldEmbedding(keras.layers.Layer):
    """Feature dict -> (field embeddings [B, F, d], first-order weights [B, F]).

    `spec` is a FeatureSpec as a dict (metadata.json's `spec`). With `embeddings=False` (LR)
    only the first-order weights exist and the embeddings come back as None.

    `ignore` names fields left out (feature ablations, e.g. ("slot",)).

    Every field's vocabulary is a block of rows of one table (`embedding` [V, d], `linear`
    [V', 1]; `block(name)` gives a block's first row), so a batch costs one gather and one
    optimizer update per table instead of one per field: 1.6x the examples/s of per-field
    tables for FM and AFM on MovieLens (docs/table2.md). The blocks are the fields in
    `field_vocabularies` order, then "tags"; `linear` has a last block, "history", the
    first-order weights of the history's items (the history's embeddings share the item-id
    block).
    """

    def __init__(self, spec: dict, embedding_dim: int = 16, l2: float = 0.0,
                 embeddings: bool = True, history: bool = True, ignore: tuple = (), **kwargs):
        super().__init__(**kwargs)
        self.spec = dict(spec)
        self.embedding_dim = embedding_dim
        self.l2 = l2
        self.embeddings = embeddings
        self.history = history
        self.ignore = tuple(ignore)
        fields = field_vocabularies(self.spec)
        names = [f[0] for f in fields]
        unknown = [n for n in self.ignore if n not in names]
        if unknown:
            raise ValueError(f"ignore_fields {unknown} are not fields of this data; fields: "
                             f"{names}")
        if history and "item_id" in self.ignore:
            raise ValueError("ignore_fields: the history shares item_id's embeddings; ignore "
                             "item_id only with --nohistory")
        self.fields = [f for f in fields if f[0] not in self.ignore]
        sizes = [(name, size) for name, _, _, size in self.fields] + [
            ("tags", self.spec["n_tags"]), ("history", self.spec["n_items"])]
        self._blocks, row = {}, 0
        for name, size in sizes:
            self._blocks[name] = row
            row += size
        reg = keras.regularizers.L2(l2) if l2 else None
        self.embedding = keras.layers.Embedding(
            self._blocks["history"], embedding_dim, embeddings_regularizer=reg,
            name="emb_fields") if embeddings else None
        self.linear = keras.layers.Embedding(row, 1, embeddings_regularizer=reg,
                                             name="lin_fields")

    def block(self, name: str) -> int:
        """The first row of a field's ("user_id", "user_fields.age", ..., "tags", "history")."""
        return self._blocks[name]

    @property
    def n_fields(self) -> int:
        return len(self.fields) + 1 + int(self.history)

    def build(self, input_shape=None):
        for layer in [self.linear] + ([self.embedding] if self.embeddings else []):
            layer.build((None,))

    def call(self, features):
        rows = ops.stack([(features[key] if col < 0 else features[key][:, col])
                          + self._blocks[name] for name, key, col, _ in self.fields], axis=1)
        tags = features["tags"]
        tag_mask = tags > 0
        tag_rows = tags + self._blocks["tags"]
        n, t = len(self.fields), tags.shape[1]
        lin_rows, emb_rows = [rows, tag_rows], [rows, tag_rows]
        if self.history:
            hist, hist_mask = features["hist_item_id"], features["hist_mask"]
            lin_rows.append(hist + self._blocks["history"])
            emb_rows.append(hist + self._blocks["item_id"])
        w = self.linear(ops.concatenate(lin_rows, axis=1))  # [B, F + T (+ H), 1]
        lins = [w[:, :n, 0], _masked_mean(w[:, n:n + t], tag_mask)]
        if self.history:
            lins.append(_masked_mean(w[:, n + t:], hist_mask))
        lins = ops.concatenate(lins, axis=1)
        if not self.embeddings:
            return None, lins
        e = self.embedding(ops.concatenate(emb_rows, axis=1))  # [B, F + T (+ H), d]
        embs = [e[:, :n], _masked_mean(e[:, n:n + t], tag_mask)[:, None]]
        if self.history:
            embs.append(_masked_mean(e[:, n + t:], hist_mask)[:, None])
        return ops.concatenate(embs, axis=1), lins

    def get_config(self):
        return {**super().get_config(), "spec": self.spec, "embedding_dim": self.embedding_dim,
                "l2": self.l2, "embeddings": self.embeddings, "history": self.history,
                "ignore": list(self.ignore)}
