"""The state encoders of both agents: field self-attention (Eq. 1) and the GRU (Eq. 2)."""
from __future__ import annotations

import keras
import tensorflow as tf

from hrl_rec.features import PACKAGE


@keras.saving.register_keras_serializable(package=PACKAGE)
class FieldSelfAttention(keras.layers.Layer):
    """Eq. 1: f_i = Concat(Transformer(F_i)), f_i in R^{d_h}.

    Multi-head self-attention across the n fields of ONE behaviour (AutoInt's interacting layer,
    which the paper follows, "Song et al. 2019"), per head h with d_k = d / H:

        alpha^h_{jk} = softmax_k(<W_Q^h e_j, W_K^h e_k> / sqrt(d_k))
        e~_j = ReLU(Concat_h(sum_k alpha^h_{jk} W_V^h e_k) + W_R e_j)
        f_i = ReLU(W_O Concat_j(e~_j) + b_O)          (W_O: n*d -> d_h)

    With `attention=False` (Table 4's "w/o field self-attention") f_i = ReLU(W_O Concat_j(e_j) + b_O),
    a fully connected layer over the concatenated fields.

    Shapes: [..., n, d] -> [..., d_h]. Example: FieldSelfAttention(n_fields=13, hidden_dim=128,
    heads=4) maps [256, 60, 13, 32] to [256, 60, 128].
    """

    def __init__(self, n_fields: int, hidden_dim: int = 128, heads: int = 4,
                 attention: bool = True, **kwargs):
        super().__init__(**kwargs)
        self.n_fields, self.hidden_dim, self.heads, self.attention = (
            n_fields, hidden_dim, heads, attention)

    def build(self, input_shape):
        d = int(input_shape[-1])
        if d % self.heads:
            raise ValueError(f"field embedding size {d} is not a multiple of heads={self.heads}")
        if self.attention:
            # One [d, 4d] matmul for W_Q, W_K, W_V and W_R: large matmuls beat four small ones.
            self.qkvr = self.add_weight(name="qkvr", shape=(d, 4 * d),
                                        initializer="glorot_uniform")
        self.out = self.add_weight(name="out", shape=(self.n_fields * d, self.hidden_dim),
                                   initializer="glorot_uniform")
        self.out_bias = self.add_weight(name="out_bias", shape=(self.hidden_dim,),
                                        initializer="zeros")

    def interact(self, x: tf.Tensor) -> tf.Tensor:
        """[..., n, d] -> [..., n, d]: the attention block alone."""
        d = x.shape[-1]
        dk = d // self.heads
        lead = tf.shape(x)[:-2]
        flat = tf.reshape(x, [-1, self.n_fields, d])
        q, k, v, r = tf.split(tf.matmul(flat, self.qkvr), 4, axis=-1)

        def split_heads(t):  # [N, n, d] -> [N, H, n, dk]
            return tf.transpose(tf.reshape(t, [-1, self.n_fields, self.heads, dk]), [0, 2, 1, 3])

        scores = tf.matmul(split_heads(q), split_heads(k), transpose_b=True) / dk ** 0.5
        heads = tf.matmul(tf.nn.softmax(scores, axis=-1), split_heads(v))
        merged = tf.reshape(tf.transpose(heads, [0, 2, 1, 3]), [-1, self.n_fields, d])
        return tf.reshape(tf.nn.relu(merged + r), tf.concat([lead, [self.n_fields, d]], 0))

    def call(self, x):
        if self.attention:
            x = self.interact(x)
        d = x.shape[-1]
        flat = tf.reshape(x, tf.concat([tf.shape(x)[:-2], [self.n_fields * d]], 0))
        return tf.nn.relu(tf.tensordot(flat, self.out, 1) + self.out_bias)

    def get_config(self):
        return {**super().get_config(), "n_fields": self.n_fields, "hidden_dim": self.hidden_dim,
                "heads": self.heads, "attention": self.attention}


@keras.saving.register_keras_serializable(package=PACKAGE)
class StateEncoder(keras.layers.Layer):
    """Eq. 2: s_t = GRU(f_{t}, ..., f_{t+m-1}), the last hidden state, started at h_0 (the user
    profile). States are returned for every window of m consecutive positions:

        inputs f [B, L, d_h], mask [B, L] (1 = an impression), h0 [B, d_h]
        output  [B, L - m + 1, d_h];  output[:, t] is the state of window[t : t + m]

    For a list batch (L = m + S) output[:, t] is the state before slot t and output[:, t + 1]
    its successor. `window`:
      "sliding": each window is its own GRU run over exactly m behaviours (the paper's Eq. 2);
      "prefix": one GRU run over all L positions, output[:, t] read at position m - 1 + t (it
        has seen up to t more behaviours; S times fewer GRU steps).
    Masked positions leave the hidden state unchanged, so an empty window gives h_0.
    `gru=False` (Table 4's "w/o GRU") averages instead: s = (h_0 + sum_i f_i) / (1 + #f_i) over
    the window's impressions (h_0 counts as one behaviour, so profile information survives).
    """

    # True runs the prefix window's GRU as one matmul for every step's input projection, then
    # a loop of the recurrent part alone (`_prefix_gru`); False (the default) runs Keras's GRU
    # layer, which projects each step's input inside its loop. Same weights and values
    # (tested). At paper sizes with XLA the hoisted form was no faster (GRU forward 82-85 ms
    # vs 45-49 ms, full step 2.31 vs 2.40 s, within this machine's noise; docs/train_speed.md),
    # so it stays off; benchmarks.train_profile --gru=hoisted times it.
    hoisted_gru = False

    def __init__(self, hidden_dim: int = 128, max_seq_len: int = 50, gru: bool = True,
                 window: str = "sliding", **kwargs):
        super().__init__(**kwargs)
        if window not in ("sliding", "prefix"):
            raise ValueError(f"window must be 'sliding' or 'prefix', got {window!r}")
        self.hidden_dim, self.max_seq_len, self.gru, self.window = (
            hidden_dim, max_seq_len, gru, window)
        if gru:
            self.cell = keras.layers.GRU(hidden_dim, return_sequences=window == "prefix",
                                         name="gru")

    def build(self, input_shape=None):
        if self.gru:
            self.cell.build((None, None, self.hidden_dim))

    def call(self, f, mask, h0):
        m = self.max_seq_len
        n_states = tf.shape(f)[1] - m + 1
        mask = tf.cast(mask, tf.bool)
        if not self.gru:
            return self._average(f, mask, h0)
        # Keras returns zeros, not h_0, for steps before the first unmasked one: put h_0 back.
        if self.window == "prefix":
            if self.hoisted_gru:
                seq = self._prefix_gru(f, mask, h0)[:, m - 1:]
            else:
                seq = self.cell(f, mask=mask, initial_state=h0)[:, m - 1:]
            seen = tf.cumsum(tf.cast(mask, tf.int32), axis=1)[:, m - 1:] > 0
            return tf.where(seen[..., None], seq, h0[:, None])
        idx = tf.range(n_states)[:, None] + tf.range(m)[None, :]       # [N, m]
        windows = tf.gather(f, idx, axis=1)                             # [B, N, m, d]
        wmask = tf.gather(mask, idx, axis=1)
        b = tf.shape(f)[0]
        flat = tf.reshape(windows, [b * n_states, m, f.shape[-1]])
        last = self.cell(flat, mask=tf.reshape(wmask, [b * n_states, m]),
                         initial_state=tf.repeat(h0, n_states, axis=0))
        last = tf.reshape(last, [b, n_states, self.hidden_dim])
        return tf.where(tf.reduce_any(wmask, axis=2)[..., None], last, h0[:, None])

    def _prefix_gru(self, f, mask, h0):
        """[B, L, d_h]: the hidden state after each position, h_0 before the first impression.
        Keras's GRU cell (reset_after, Cho et al. 2014 as cuDNN runs it), with x W + b_x for
        all L positions as one matmul before the loop:

            z = sigmoid(x_z + h U_z + c_z),  r = sigmoid(x_r + h U_r + c_r),
            h~ = tanh(x_h + r * (h U_h + c_h)),  h' = z * h + (1 - z) * h~,

        x_* = x W_* + b_*; a masked position leaves h unchanged."""
        cell = self.cell.cell
        x = tf.tensordot(f, cell.kernel, 1) + cell.bias[0]                       # [B, L, 3 d_h]
        rec, rec_bias = cell.recurrent_kernel, cell.bias[1]

        def step(h, inputs):
            x_t, m_t = inputs
            x_z, x_r, x_h = tf.split(x_t, 3, axis=-1)
            h_z, h_r, h_h = tf.split(tf.matmul(h, rec) + rec_bias, 3, axis=-1)
            z, r = tf.sigmoid(x_z + h_z), tf.sigmoid(x_r + h_r)
            new = z * h + (1.0 - z) * tf.tanh(x_h + r * h_h)
            return tf.where(m_t[:, None], new, h)

        states = tf.scan(step, (tf.transpose(x, [1, 0, 2]), tf.transpose(mask)), initializer=h0)
        return tf.transpose(states, [1, 0, 2])

    def step(self, x, h, mask):
        """One GRU step (prefix window, GRU only): the state after one more behaviour.

        x [B, d_h], h [B, d_h] (the state so far), mask [B] (0 leaves h unchanged) -> [B, d_h].
        Serving uses it to advance a slate by one slot instead of rerunning the window."""
        new, _ = self.cell.cell(x, [h])
        return tf.where(tf.cast(mask, tf.bool)[:, None], new, h)

    def _average(self, f, mask, h0):
        m = self.max_seq_len
        w = tf.cast(mask, f.dtype)[..., None]
        total = tf.cumsum(f * w, axis=1)
        count = tf.cumsum(w, axis=1)
        if self.window == "sliding":  # window sums by differences of running sums
            total -= tf.pad(total, [[0, 0], [m, 0], [0, 0]])[:, :tf.shape(f)[1]]
            count -= tf.pad(count, [[0, 0], [m, 0], [0, 0]])[:, :tf.shape(f)[1]]
        return (h0[:, None] + total[:, m - 1:]) / (1.0 + count[:, m - 1:])

    def get_config(self):
        return {**super().get_config(), "hidden_dim": self.hidden_dim,
                "max_seq_len": self.max_seq_len, "gru": self.gru, "window": self.window}
