"""Behaviour feature fields (the F-hat matrices of Eq. 1) and item embeddings.

A *window* is a dict of per-position tensors [B, W, ...] (the keys of `data.pipeline`'s list
batches: item_id, channel, slot, item_fields, tags, context, feedback, mask) plus user_id [B]
and user_fields [B, F_u]. Each position i is one impressed behaviour, described by n fields of size d:

    channel level (LRA, Sec. 3.2): (a) user id and profile fields, (b) context fields and the slot,
        the behaviour's outcome (feedback: unknown / shown / clicked), (c) its channel,
        (d) cumulative channel features: per-channel counts of impressions and of clicks among
        the `span` positions before i, through a dense layer.
    item level (HRA, Sec. 3.3): (a), (b) as above, (c) item id, item fields, mean tag embedding
        and channel, (d) cumulative item features: the mean item-id embedding of the `span`
        positions before i.

Cumulative features read only earlier positions, so the fields of position i do not depend on
which state's window it is in: one encoding per position serves every slot of a list.
"""
from __future__ import annotations

import keras
import tensorflow as tf

PACKAGE = "hrl_rec"
LEVELS = ("channel", "item")
FEEDBACK_VALUES = 3  # 0 unknown / padding, 1 shown, 2 clicked


PROFILE_KEYS = ("user_id", "user_fields")  # per list; every other window key is per position


def map_positions(window: dict, fn) -> dict:
    """`window` with `fn` applied to each per-position tensor [B, L, ...] (profile kept)."""
    return {k: (v if k in PROFILE_KEYS else fn(v)) for k, v in window.items()}


def recent_sum(x: tf.Tensor, span: int) -> tf.Tensor:
    """out[:, i] = sum of x[:, i - span : i] (positions before i only). x: [B, W, k]."""
    total = tf.cumsum(x, axis=1, exclusive=True)
    shifted = tf.pad(total, [[0, 0], [span, 0], [0, 0]])[:, :tf.shape(x)[1]]
    return total - shifted


def masked_mean(x: tf.Tensor, mask: tf.Tensor, axis: int) -> tf.Tensor:
    mask = tf.cast(mask, x.dtype)[..., None]
    return tf.reduce_sum(x * mask, axis) / tf.maximum(tf.reduce_sum(mask, axis), 1.0)


def embedding_tables(model: keras.Model) -> list:
    """Every embedding table of a model (what --embedding_l2 regularises)."""
    return [layer.embeddings for layer in model._flatten_layers()
            if isinstance(layer, keras.layers.Embedding)]


def _table(name: str, size: int, dim: int) -> keras.layers.Embedding:
    return keras.layers.Embedding(size, dim, embeddings_initializer="uniform", name=name)


@keras.saving.register_keras_serializable(package=PACKAGE)
class BehaviourFields(keras.layers.Layer):
    """Window -> (fields [B, W, n, d], user profile [B, (1 + F_u) * d]).

    `level` is "channel" (LRA) or "item" (HRA); `spec` is metadata.json's FeatureSpec dict;
    `span` is how many earlier positions the cumulative field covers (the list size).
    """

    def __init__(self, spec: dict, level: str, embedding_dim: int = 32, span: int = 10,
                 **kwargs):
        super().__init__(**kwargs)
        if level not in LEVELS:
            raise ValueError(f"level must be one of {LEVELS}, got {level!r}")
        self.spec, self.level, self.embedding_dim, self.span = dict(spec), level, embedding_dim, span
        d, n_ch = embedding_dim, len(spec["channel_names"])
        # The user id is a profile field too: "all models share the same features" (Sec. 4.3)
        # and the baselines embed it.
        self.user_tables = [_table("user_id", spec["n_users"], d)] + [
            _table(f"user_{n}", s, d) for n, s in zip(spec["user_field_names"],
                                                      spec["user_field_sizes"])]
        self.context_tables = [_table(f"context_{n}", s, d) for n, s in
                               zip(spec["context_field_names"], spec["context_field_sizes"])]
        self.slot_table = _table("slot", spec["list_size"], d)
        self.feedback_table = _table("feedback", FEEDBACK_VALUES, d)
        self.channel_table = _table("channel", n_ch, d)
        if level == "channel":
            self.cumulative = keras.layers.Dense(d, name="cumulative_channels")
            self.item_tables = []
        else:
            self.item_id_table = _table("item_id", spec["n_items"], d)
            self.item_tables = [_table(f"item_{n}", s, d) for n, s in
                                zip(spec["item_field_names"], spec["item_field_sizes"])]
            self.tag_table = _table("tags", spec["n_tags"], d)

    @property
    def n_fields(self) -> int:
        n = len(self.user_tables) + len(self.context_tables) + 4  # slot, feedback, channel, cum.
        return n + (0 if self.level == "channel" else 2 + len(self.item_tables))

    def build(self, input_shape=None):
        for t in self.user_tables + self.context_tables + self.item_tables + [
                self.slot_table, self.feedback_table, self.channel_table]:
            t.build((None,))
        if self.level == "channel":
            self.cumulative.build((None, 2 * len(self.spec["channel_names"])))
        else:
            self.item_id_table.build((None,))
            self.tag_table.build((None,))

    def profile(self, user_id: tf.Tensor, user_fields: tf.Tensor) -> tf.Tensor:
        """user_id [B], user_fields [B, F_u] -> [B, 1 + F_u, d]."""
        columns = [user_id] + [user_fields[:, j] for j in range(len(self.user_tables) - 1)]
        return tf.stack([t(c) for t, c in zip(self.user_tables, columns)], axis=1)

    def call(self, window: dict):
        mask = tf.cast(window["mask"], tf.float32)
        width = tf.shape(window["mask"])[1]
        profile = self.profile(window["user_id"], window["user_fields"])
        fields = [tf.tile(profile[:, None], [1, width, 1, 1])]
        per_position = [t(window["context"][..., j]) for j, t in enumerate(self.context_tables)]
        per_position += [self.slot_table(window["slot"]), self.feedback_table(window["feedback"]),
                         self.channel_table(window["channel"])]
        if self.level == "channel":
            n_ch = len(self.spec["channel_names"])
            shown = tf.one_hot(window["channel"], n_ch) * mask[..., None]
            clicked = shown * tf.cast(window["feedback"] == 2, tf.float32)[..., None]
            counts = recent_sum(tf.concat([shown, clicked], -1), self.span) / float(self.span)
            per_position.append(self.cumulative(counts))
        else:
            item = self.item_id_table(window["item_id"])
            per_position += [item] + [t(window["item_fields"][..., j])
                                      for j, t in enumerate(self.item_tables)]
            per_position.append(masked_mean(self.tag_table(window["tags"]),
                                            window["tags"] > 0, axis=2))
            recent = recent_sum(item * mask[..., None], self.span)
            count = recent_sum(mask[..., None], self.span)
            per_position.append(recent / tf.maximum(count, 1.0))
        fields.append(tf.stack(per_position, axis=2))
        return tf.concat(fields, axis=2), tf.reshape(profile, [tf.shape(profile)[0], -1])

    def get_config(self):
        return {**super().get_config(), "spec": self.spec, "level": self.level,
                "embedding_dim": self.embedding_dim, "span": self.span}


@keras.saving.register_keras_serializable(package=PACKAGE)
class ItemEncoder(keras.layers.Layer):
    """The item embedding d that actions are compared with (Sec. 3.2-3.4), shared by both agents:

        d = tanh(e_id + e_channel + sum_j e_field_j + mean_k e_tag_k + sum_c e_context_c),

    d in (-1, 1)^d. The context terms describe the item as shown (its age bucket at that
    moment, the hour, the network); they are used when the inputs carry `context`. tanh puts
    items in the actors' action range (Eq. 3, 6), so a logged item's embedding can stand in for
    the action that chose it. Inputs: dict with item_id, channel [...], item_fields [..., F_i],
    tags [..., T] and optionally context [..., F_c]; output [..., d].
    """

    def __init__(self, spec: dict, embedding_dim: int = 32, **kwargs):
        super().__init__(**kwargs)
        self.spec, self.embedding_dim = dict(spec), embedding_dim
        d = embedding_dim
        self.id_table = _table("item_id", spec["n_items"], d)
        self.channel_table = _table("channel", len(spec["channel_names"]), d)
        self.field_tables = [_table(f"item_{n}", s, d) for n, s in
                             zip(spec["item_field_names"], spec["item_field_sizes"])]
        self.tag_table = _table("tags", spec["n_tags"], d)
        self.context_tables = [_table(f"context_{n}", s, d) for n, s in
                               zip(spec["context_field_names"], spec["context_field_sizes"])]

    def build(self, input_shape=None):
        for t in [self.id_table, self.channel_table, self.tag_table] + self.field_tables + \
                self.context_tables:
            t.build((None,))

    def call(self, items: dict) -> tf.Tensor:
        item, context = self.parts(items)
        return tf.tanh(item if context is None else item + context)

    def parts(self, items: dict):
        """(item, context) before the tanh, [..., d] each: the item's own terms (id, channel,
        fields, tags) and the context terms (None without `context`). d = tanh(item +
        context), so an item can be re-encoded as if shown in another context."""
        x = self.id_table(items["item_id"]) + self.channel_table(items["channel"])
        for j, t in enumerate(self.field_tables):
            x += t(items["item_fields"][..., j])
        x += masked_mean(self.tag_table(items["tags"]), items["tags"] > 0, axis=-2)
        context = None
        if "context" in items and self.context_tables:
            context = tf.add_n([t(items["context"][..., j])
                                for j, t in enumerate(self.context_tables)])
        return x, context

    def get_config(self):
        return {**super().get_config(), "spec": self.spec, "embedding_dim": self.embedding_dim}
