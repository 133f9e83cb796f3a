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
    """

    def __init__(self, spec: dict, embedding_dim: int = 16, l2: float = 0.0,
                 embeddings: bool = True, history: bool = True, **kwargs):
        super().__init__(**kwargs)
        self.spec = dict(spec)
        self.embedding_dim = embedding_dim
        self.l2 = l2
        self.embeddings = embeddings
        self.history = history
        self.fields = field_vocabularies(self.spec)
        reg = keras.regularizers.L2(l2) if l2 else None

        def table(name, size, dim):
            return keras.layers.Embedding(size, dim, embeddings_regularizer=reg, name=name)

        self.tables = [table(f"emb_{n.replace('.', '_')}", s, embedding_dim)
                       for n, _, _, s in self.fields] if embeddings else []
        self.linear = [table(f"lin_{n.replace('.', '_')}", s, 1) for n, _, _, s in self.fields]
        self.tag_table = table("emb_tags", self.spec["n_tags"], embedding_dim) if embeddings \
            else None
        self.tag_linear = table("lin_tags", self.spec["n_tags"], 1)
        self.hist_linear = table("lin_history", self.spec["n_items"], 1)

    @property
    def n_fields(self) -> int:
        return len(self.fields) + 1 + int(self.history)

    def build(self, input_shape=None):
        for layer in self.tables + self.linear + [self.tag_linear, self.hist_linear] + (
                [self.tag_table] if self.embeddings else []):
            layer.build((None,))

    def call(self, features):
        embs, lins = [], []
        for i, (name, key, col, _) in enumerate(self.fields):
            x = features[key] if col < 0 else features[key][:, col]
            if self.embeddings:
                embs.append(self.tables[i](x))
            lins.append(self.linear[i](x)[:, 0])
        tags = features["tags"]
        tag_mask = tags > 0
        lins.append(_masked_mean(self.tag_linear(tags), tag_mask)[:, 0])
        if self.history:
            hist, hist_mask = features["hist_item_id"], features["hist_mask"]
            lins.append(_masked_mean(self.hist_linear(hist), hist_mask)[:, 0])
        if not self.embeddings:
            return None, ops.stack(lins, axis=1)
        embs.append(_masked_mean(self.tag_table(tags), tag_mask))
        if self.history:  # shares the item-id table
            embs.append(_masked_mean(self.tables[1](hist), hist_mask))
        return ops.stack(embs, axis=1), ops.stack(lins, axis=1)

    def get_config(self):
        return {**super().get_config(), "spec": self.spec, "embedding_dim": self.embedding_dim,
                "l2": self.l2, "embeddings": self.embeddings, "history": self.history}
