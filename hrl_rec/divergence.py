"""Stops training at the first non-finite loss or weight, before it reaches a checkpoint.

Without this a diverged run (a learning rate too high for the data, an exploding critic) goes
on silently: NaN weights are checkpointed over the good ones, a resumed run repeats the NaN,
and the run ends in scikit-learn's "Input contains NaN" at the validation AUC, far from the
step that caused it. Every training loop (HRL-Rec's runner, the RL baselines through it, the
supervised baselines) checks the losses it already reads back each step, and the weights
before each save.
"""
from __future__ import annotations

import math
from typing import Callable

import numpy as np


class TrainingDiverged(FloatingPointError):
    """A loss or weight is NaN or infinite. The message names which, the step, and what was
    kept from before it."""


def check_losses(metrics: dict, step: int, kept: Callable[[], str]) -> None:
    """Raises TrainingDiverged if a `loss/...` entry of a train step's metrics is not finite.

    metrics: name -> scalar (tensor or number); step: the step that produced them; kept: gives
    (only on failure) a sentence on what is saved from before and what to change."""
    bad = {k: float(v) for k, v in metrics.items()
           if k.startswith("loss/") and not math.isfinite(float(v))}
    if bad:
        values = ", ".join(f"{k} = {v}" for k, v in sorted(bad.items()))
        raise TrainingDiverged(f"training diverged at step {step}: {values}. {kept()}")


def check_weights(variables, step: int, kept: Callable[[], str]) -> None:
    """Raises TrainingDiverged if any of `variables` (Keras or tf variables) holds a NaN or an
    infinity, naming the first three."""
    bad = [getattr(v, "path", v.name) for v in variables if not np.isfinite(v.numpy()).all()]
    if bad:
        more = f" and {len(bad) - 3} more" if len(bad) > 3 else ""
        raise TrainingDiverged(f"training diverged by step {step}: weights "
                               f"{', '.join(bad[:3])}{more} are not finite. {kept()}")
