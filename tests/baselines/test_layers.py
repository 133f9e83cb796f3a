"""Each layer against numbers computed by hand (docstrings give the formulas)."""
import numpy as np
import pytest

from baselines import layers


def test_fm_interaction_hand_computed():
    v = np.array([[[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]], np.float32)
    # <v1,v2> + <v1,v3> + <v2,v3> = 11 + 17 + 39
    np.testing.assert_allclose(layers.FMInteraction()(v), [[67.0]])


def test_bi_interaction_hand_computed():
    v = np.array([[[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]], np.float32)
    # 1/2 [(9, 12)^2 - (35, 56)] = (23, 44)
    np.testing.assert_allclose(layers.BiInteractionPooling()(v), [[23.0, 44.0]])


def test_attention_pooling_hand_computed():
    layer = layers.AttentionPooling(attention_units=1)
    v = np.array([[[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]], np.float32)
    layer.build(v.shape)
    layer.attention.kernel.assign([[1.0], [2.0]])
    layer.attention.bias.assign([0.0])
    layer.h.kernel.assign([[1.0]])
    layer.p.kernel.assign([[1.0], [1.0]])
    # pairs (0,0), (1,0), (0,1) -> scores 0, 1, 2 -> softmax (.0900, .2447, .6652)
    np.testing.assert_allclose(layer(v), [[0.2447285 + 0.6652410]], rtol=1e-6)


@pytest.mark.parametrize("residual, want", [
    (False, [[0.7310586, 0.2689414], [0.2689414, 0.7310586]]),
    (True, [[1.7310586, 0.2689414], [0.2689414, 1.7310586]])])
def test_interacting_layer_hand_computed(residual, want):
    layer = layers.InteractingLayer(heads=1, head_size=2, residual=residual)
    e = np.array([[[1.0, 0.0], [0.0, 1.0]]], np.float32)
    layer.build(e.shape)
    for w in (layer.w_q, layer.w_k, layer.w_v) + ((layer.w_res,) if residual else ()):
        w.assign(np.eye(2))
    # attention rows softmax([1, 0]) = (e/(e+1), 1/(e+1))
    np.testing.assert_allclose(layer(e)[0], want, rtol=1e-6)


def test_interacting_layer_two_heads_shape():
    layer = layers.InteractingLayer(heads=2, head_size=3)
    assert tuple(layer(np.ones((4, 5, 6), np.float32)).shape) == (4, 5, 6)


def test_dnn_hand_computed():
    layer = layers.DNN(units=(2,))
    layer.build((None, 2))
    layer.dense[0].kernel.assign([[1.0, -1.0], [2.0, 0.0]])
    layer.dense[0].bias.assign([0.0, 1.0])
    # ReLU([1, 1] @ W + b) = ReLU([3, 0])
    np.testing.assert_allclose(layer(np.array([[1.0, 1.0]], np.float32)), [[3.0, 0.0]])


@pytest.mark.parametrize("layer", [layers.AttentionPooling(8, 0.1), layers.DNN((4, 2), 0.2),
                                   layers.InteractingLayer(3, 4, False)])
def test_config_round_trip(layer):
    clone = type(layer).from_config(layer.get_config())
    assert clone.get_config() == layer.get_config()
