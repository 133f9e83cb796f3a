"""The seven CTR baselines of the paper's Table 2, as one serializable Keras model class.

Every model maps the shared fields (baselines.inputs) to a click logit; the output is
sigmoid(logit) [B]. With e = field embeddings [B, F, d], w = first-order weights [B, F]:

    LR        logit = b + sum_f w_f                                   (Peng et al. 2002)
    FM        logit = LR + sum_{i<j} <e_i, e_j>                       (Rendle 2010)
    NFM       logit = LR + h^T DNN(BiInteraction(e))                   (He & Chua 2017)
    AFM       logit = LR + AttentionPooling(e)                         (Xiao et al. 2017)
    WideDeep  logit = LR + h^T DNN(flatten(e))                         (Cheng et al. 2016)
    DeepFM    logit = LR + sum_{i<j} <e_i, e_j> + h^T DNN(flatten(e))  (Guo et al. 2017)
    AutoInt   logit = LR + h^T flatten(InteractingLayer^L(e))          (Song et al. 2019)

The wide part of Wide&Deep is the same first-order LR as the others (the paper's baselines
"use the same features"); no hand-made cross features. AutoInt's paper (Eq. 14) has no
first-order term; DeepCTR's implementation, the peer we check against, adds it, and so do we.
"""
from __future__ import annotations

import keras
from keras import ops

from baselines import layers
from baselines.inputs import FieldEmbedding

MODELS = ("lr", "fm", "nfm", "afm", "widedeep", "deepfm", "autoint")
DEFAULTS = {"embedding_dim": 16, "dnn_units": (256, 128), "dropout": 0.0, "l2": 0.0,
            "attention_units": 16, "heads": 2, "head_size": 8, "interacting_layers": 3,
            "history": True, "ignore_fields": ()}


@keras.saving.register_keras_serializable(package=layers.PACKAGE)
class CTRModel(keras.Model):
    """One of MODELS over a FeatureSpec (dict); hyper-parameters default to DEFAULTS."""

    def __init__(self, model: str, spec: dict, **hparams):
        super().__init__(name=model)
        if model not in MODELS:
            raise ValueError(f"unknown model {model!r}; expected one of {MODELS}")
        unknown = set(hparams) - set(DEFAULTS)
        if unknown:
            raise ValueError(f"unknown hyper-parameters {sorted(unknown)} for {model}")
        self.model_name = model
        self.spec = dict(spec)
        self.hparams = {**DEFAULTS, **hparams}
        hp = self.hparams
        self.inputs_layer = FieldEmbedding(self.spec, hp["embedding_dim"], hp["l2"],
                                           embeddings=model != "lr", history=hp["history"],
                                           ignore=hp["ignore_fields"], name="fields")
        self.bias = self.add_weight(name="bias", shape=(), initializer="zeros")
        if model in ("fm", "deepfm"):
            self.fm = layers.FMInteraction(name="fm")
        if model == "nfm":
            self.bi = layers.BiInteractionPooling(name="bi_interaction")
        if model in ("nfm", "widedeep", "deepfm"):
            self.dnn = layers.DNN(hp["dnn_units"], hp["dropout"], name="dnn")
            self.dnn_out = keras.layers.Dense(1, use_bias=False, name="dnn_out")
        if model == "afm":
            self.afm = layers.AttentionPooling(hp["attention_units"], hp["dropout"], name="afm")
        if model == "autoint":
            self.interacting = [layers.InteractingLayer(hp["heads"], hp["head_size"],
                                                        name=f"interacting_{i}")
                                for i in range(hp["interacting_layers"])]
            self.autoint_out = keras.layers.Dense(1, use_bias=False, name="autoint_out")

    def logit(self, features, training=False):
        e, w = self.inputs_layer(features)
        m = self.model_name
        n_fields = self.inputs_layer.n_fields
        if m == "autoint":
            x = e
            for layer in self.interacting:
                x = layer(x)
            # Static widths: a -1 would leave the Dense input size unknown inside tf.function.
            width = n_fields * self.hparams["heads"] * self.hparams["head_size"]
            return (self.bias + ops.sum(w, axis=1)
                    + self.autoint_out(ops.reshape(x, (-1, width)))[:, 0])
        out = self.bias + ops.sum(w, axis=1)
        if m in ("fm", "deepfm"):
            out = out + self.fm(e)[:, 0]
        if m == "afm":
            out = out + self.afm(e, training=training)[:, 0]
        if m in ("nfm", "widedeep", "deepfm"):
            x = self.bi(e) if m == "nfm" else ops.reshape(
                e, (-1, n_fields * self.hparams["embedding_dim"]))
            out = out + self.dnn_out(self.dnn(x, training=training))[:, 0]
        return out

    def call(self, features, training=False):
        return ops.sigmoid(self.logit(features, training=training))

    def get_config(self):
        hp = {k: list(v) if isinstance(v, tuple) else v for k, v in self.hparams.items()}
        return {"model": self.model_name, "spec": self.spec, **hp}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["dnn_units"] = tuple(config.get("dnn_units", DEFAULTS["dnn_units"]))
        config["ignore_fields"] = tuple(config.get("ignore_fields", ()))
        return cls(config.pop("model"), config.pop("spec"), **config)
