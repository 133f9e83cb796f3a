"""Reusable layers of the Table 2 baselines (Keras 3, serializable).

Shapes: B = batch, F = feature fields, d = embedding size.
"""
from __future__ import annotations

import keras
from keras import ops

PACKAGE = "hrl_rec.baselines"


@keras.saving.register_keras_serializable(package=PACKAGE)
class FMInteraction(keras.layers.Layer):
    """Second-order factorization-machine term (Rendle 2010, Eq. 1, O(Fd) form).

        y = 1/2 * sum_k [ (sum_f v_fk)^2 - sum_f v_fk^2 ]   = sum_{i<j} <v_i, v_j>

    Input [B, F, d] -> output [B, 1].
    """

    def call(self, v):
        square_of_sum = ops.square(ops.sum(v, axis=1))
        sum_of_square = ops.sum(ops.square(v), axis=1)
        return 0.5 * ops.sum(square_of_sum - sum_of_square, axis=1, keepdims=True)


@keras.saving.register_keras_serializable(package=PACKAGE)
class BiInteractionPooling(keras.layers.Layer):
    """NFM's bi-interaction pooling (He & Chua 2017, Eq. 4): the FM term before summing over k.

        f_BI = 1/2 * [ (sum_f v_f)^2 - sum_f v_f^2 ]   (element-wise)

    Input [B, F, d] -> output [B, d].
    """

    def call(self, v):
        return 0.5 * (ops.square(ops.sum(v, axis=1)) - ops.sum(ops.square(v), axis=1))


def _pair_indices(n_fields: int):
    rows, cols = [], []
    for i in range(n_fields):
        for j in range(i + 1, n_fields):
            rows.append(i)
            cols.append(j)
    return rows, cols


@keras.saving.register_keras_serializable(package=PACKAGE)
class AttentionPooling(keras.layers.Layer):
    """AFM's attention-based pooling of pairwise interactions (Xiao et al. 2017, Eq. 4-5).

        p_ij = v_i (.) v_j                                  for all field pairs i < j
        a_ij = softmax_ij( h^T ReLU(W p_ij + b) )
        y    = p^T sum_ij a_ij p_ij

    Input [B, F, d] -> output [B, 1]. `attention_units` is t, the size of W's output.
    """

    def __init__(self, attention_units: int = 16, dropout: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        self.attention_units = attention_units
        self.dropout = dropout
        self.attention = keras.layers.Dense(attention_units, activation="relu", name="attention")
        self.h = keras.layers.Dense(1, use_bias=False, name="h")
        self.p = keras.layers.Dense(1, use_bias=False, name="p")
        self.drop = keras.layers.Dropout(dropout)

    def build(self, input_shape):
        rows, cols = _pair_indices(input_shape[1])
        self._rows, self._cols = rows, cols
        d = input_shape[2]
        self.attention.build((None, None, d))
        self.h.build((None, None, self.attention_units))
        self.p.build((None, d))

    def call(self, v, training=False):
        pairs = ops.take(v, self._rows, axis=1) * ops.take(v, self._cols, axis=1)  # [B, P, d]
        scores = self.h(self.attention(pairs))  # [B, P, 1]
        weights = ops.softmax(scores, axis=1)
        pooled = ops.sum(weights * pairs, axis=1)  # [B, d]
        return self.p(self.drop(pooled, training=training))

    def get_config(self):
        return {**super().get_config(), "attention_units": self.attention_units,
                "dropout": self.dropout}


@keras.saving.register_keras_serializable(package=PACKAGE)
class InteractingLayer(keras.layers.Layer):
    """AutoInt's interacting layer (Song et al. 2019, Eq. 5-8): multi-head self-attention over
    the F fields with a residual connection.

        alpha^h_mk = softmax_k( <W_Q^h e_m, W_K^h e_k> )
        e~^h_m     = sum_k alpha^h_mk W_V^h e_k
        e^Res_m    = ReLU( concat_h e~^h_m + W_Res e_m )

    Input [B, F, d] -> output [B, F, heads * head_size].
    """

    def __init__(self, heads: int = 2, head_size: int = 8, residual: bool = True, **kwargs):
        super().__init__(**kwargs)
        self.heads = heads
        self.head_size = head_size
        self.residual = residual

    def build(self, input_shape):
        d = input_shape[-1]
        width = self.heads * self.head_size
        init = keras.initializers.GlorotUniform()
        self.w_q = self.add_weight(name="w_q", shape=(d, width), initializer=init)
        self.w_k = self.add_weight(name="w_k", shape=(d, width), initializer=init)
        self.w_v = self.add_weight(name="w_v", shape=(d, width), initializer=init)
        if self.residual:
            self.w_res = self.add_weight(name="w_res", shape=(d, width), initializer=init)

    def _split(self, x):  # [B, F, H*s] -> [B, H, F, s]
        b, f = ops.shape(x)[0], ops.shape(x)[1]
        return ops.transpose(ops.reshape(x, (b, f, self.heads, self.head_size)), (0, 2, 1, 3))

    def call(self, e):
        # One matmul for W_Q, W_K, W_V (and W_Res): fewer, larger ops in forward and backward.
        weights = [self.w_q, self.w_k, self.w_v] + ([self.w_res] if self.residual else [])
        parts = ops.split(ops.matmul(e, ops.concatenate(weights, axis=1)), len(weights), axis=-1)
        q, k, v = (self._split(x) for x in parts[:3])
        alpha = ops.softmax(ops.matmul(q, ops.transpose(k, (0, 1, 3, 2))), axis=-1)
        out = ops.transpose(ops.matmul(alpha, v), (0, 2, 1, 3))  # [B, F, H, s]
        out = ops.reshape(out, (ops.shape(e)[0], ops.shape(e)[1], self.heads * self.head_size))
        if self.residual:
            out = out + parts[3]
        return ops.relu(out)

    def get_config(self):
        return {**super().get_config(), "heads": self.heads, "head_size": self.head_size,
                "residual": self.residual}


@keras.saving.register_keras_serializable(package=PACKAGE)
class DNN(keras.layers.Layer):
    """A ReLU tower: x -> Dense(u_1) -> ... -> Dense(u_L), with dropout after each layer.

    Input [B, n] -> output [B, u_L].
    """

    def __init__(self, units=(256, 128), dropout: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        self.units = tuple(units)
        self.dropout = dropout
        self.dense = [keras.layers.Dense(u, activation="relu", name=f"dense_{i}")
                      for i, u in enumerate(self.units)]
        self.drops = [keras.layers.Dropout(dropout) for _ in self.units]

    def build(self, input_shape):
        width = input_shape[-1]
        for layer, units in zip(self.dense, self.units):
            layer.build((None, width))
            width = units

    def call(self, x, training=False):
        for layer, drop in zip(self.dense, self.drops):
            x = drop(layer(x), training=training)
        return x

    def get_config(self):
        return {**super().get_config(), "units": list(self.units), "dropout": self.dropout}
