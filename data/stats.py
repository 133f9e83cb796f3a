"""Log statistics for metadata.json, mergeable across shards (each shard adds its own)."""
from __future__ import annotations

import numpy as np
from sklearn.metrics import log_loss, roc_auc_score

from data.schema import ImpressionLog

AUC_BINS = 1 << 16
# IRec-4B, Table 1 of the paper: the only real statistics of the paper's feed.
PAPER_TABLE1 = {"users": 22_527_380, "sessions": 140_982_284, "clicks": 355_019_232,
                "impressions": 3_770_955_760}
PAPER_RATIOS = {
    "ctr": PAPER_TABLE1["clicks"] / PAPER_TABLE1["impressions"],
    "impressions_per_session": PAPER_TABLE1["impressions"] / PAPER_TABLE1["sessions"],
    "clicks_per_session": PAPER_TABLE1["clicks"] / PAPER_TABLE1["sessions"],
    "sessions_per_user": PAPER_TABLE1["sessions"] / PAPER_TABLE1["users"],
}


class SplitStats:
    """Counts of one split; `add` per shard, `merge` across processes, `summary` at the end."""

    def __init__(self, n_channels: int, list_size: int):
        self.n_channels = n_channels
        self.list_size = list_size
        self.impressions = np.zeros(n_channels, np.int64)
        self.clicks = np.zeros(n_channels, np.int64)
        self.dwell = np.zeros(n_channels)
        self.slot_impressions = np.zeros(list_size, np.int64)
        self.slot_clicks = np.zeros(list_size, np.int64)
        self.auc_pos = np.zeros(AUC_BINS, np.int64)
        self.auc_neg = np.zeros(AUC_BINS, np.int64)
        self.users: set = set()
        self.lists = 0
        self.sessions = 0
        self.has_oracle = True
        # the fair ceilings (data.ceilings): histograms of their scores, when recorded
        self.noise_free_pos = np.zeros(AUC_BINS, np.int64)
        self.noise_free_neg = np.zeros(AUC_BINS, np.int64)
        self.ceiling_pos = np.zeros(AUC_BINS, np.int64)
        self.ceiling_neg = np.zeros(AUC_BINS, np.int64)
        self.has_ceilings = False

    def add_ceilings(self, noise_free, noise_free_clicked, learnable, learnable_clicked) -> None:
        """Adds the scores of `data.ceilings` with their labels: the noise-free oracle's of
        this split's impressions, the learnable ceiling's of those it is measured on (the test
        split's; the validation day's for the training split)."""
        for name, scores, clicked in (("noise_free", noise_free, noise_free_clicked),
                                      ("ceiling", learnable, learnable_clicked)):
            clicked = np.asarray(clicked, bool)
            bins = np.clip((np.asarray(scores) * AUC_BINS).astype(np.int64), 0, AUC_BINS - 1)
            pos, neg = getattr(self, f"{name}_pos"), getattr(self, f"{name}_neg")
            pos += np.bincount(bins[clicked], minlength=AUC_BINS)
            neg += np.bincount(bins[~clicked], minlength=AUC_BINS)
        self.has_ceilings = True

    def add(self, log: ImpressionLog, sessions: int = 0) -> None:
        c = self.n_channels
        clicked = log.clicked.astype(bool)
        self.impressions += np.bincount(log.channel, minlength=c)
        self.clicks += np.bincount(log.channel[clicked], minlength=c)
        self.dwell += np.bincount(log.channel, weights=log.dwell, minlength=c)
        self.slot_impressions += np.bincount(log.slot, minlength=self.list_size)
        self.slot_clicks += np.bincount(log.slot[clicked], minlength=self.list_size)
        if len(log) and (log.true_ctr < 0).any():
            self.has_oracle = False
        bins = np.clip((log.true_ctr * AUC_BINS).astype(np.int64), 0, AUC_BINS - 1)
        self.auc_pos += np.bincount(bins[clicked], minlength=AUC_BINS)
        self.auc_neg += np.bincount(bins[~clicked], minlength=AUC_BINS)
        self.users.update(np.unique(log.user_id).tolist())
        self.lists += len(np.unique(log.request_id))
        self.sessions += sessions

    def merge(self, other: "SplitStats") -> None:
        was_empty = self.empty()
        for name in self._ARRAYS:
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.users |= other.users
        self.lists += other.lists
        self.sessions += other.sessions
        self.has_oracle &= other.has_oracle
        self.has_ceilings = (self.has_ceilings or was_empty) and other.has_ceilings

    _ARRAYS = ("impressions", "clicks", "dwell", "slot_impressions", "slot_clicks", "auc_pos",
               "auc_neg", "noise_free_pos", "noise_free_neg", "ceiling_pos", "ceiling_neg")

    def empty(self) -> bool:
        return int(self.impressions.sum()) == 0

    def to_json(self) -> dict:
        """Every count, so that shards generated on other machines can be merged."""
        return {"n_channels": self.n_channels, "list_size": self.list_size,
                "lists": self.lists, "sessions": self.sessions, "has_oracle": self.has_oracle,
                "has_ceilings": self.has_ceilings,
                "users": sorted(int(u) for u in self.users),
                **{k: getattr(self, k).tolist() for k in self._ARRAYS}}

    @classmethod
    def from_json(cls, d: dict) -> "SplitStats":
        s = cls(d["n_channels"], d["list_size"])
        for k in cls._ARRAYS:
            if k in d:  # shard statistics written before the ceilings lack theirs
                setattr(s, k, np.asarray(d[k], getattr(s, k).dtype))
        s.users, s.lists, s.sessions = set(d["users"]), d["lists"], d["sessions"]
        s.has_oracle = d["has_oracle"]
        s.has_ceilings = d.get("has_ceilings", False)
        return s

    def oracle_auc(self) -> float | None:
        """AUC of the true click probabilities (binned to 2^-16; ties count one half)."""
        return binned_auc(self.auc_pos, self.auc_neg) if self.has_oracle else None

    def ceilings(self) -> dict:
        """{oracle_auc_noise_free, learnable_ceiling_auc} (data.ceilings), or {} if not
        recorded."""
        if not self.has_ceilings:
            return {}
        return {"oracle_auc_noise_free": binned_auc(self.noise_free_pos, self.noise_free_neg),
                "learnable_ceiling_auc": binned_auc(self.ceiling_pos, self.ceiling_neg)}

    def summary(self, channel_names) -> dict:
        imp, clk = self.impressions, self.clicks
        total_imp, total_clk = int(imp.sum()), int(clk.sum())
        out = {
            "users": len(self.users), "lists": self.lists, "impressions": total_imp,
            "clicks": total_clk, "ctr": total_clk / max(total_imp, 1),
            "impressions_per_channel": dict(zip(channel_names, imp.tolist())),
            "clicks_per_channel": dict(zip(channel_names, clk.tolist())),
            "ctr_per_channel": {n: float(c / max(i, 1)) for n, c, i in zip(channel_names, clk, imp)},
            "mean_dwell_s_per_channel": {n: float(d / max(c, 1)) for n, d, c in
                                         zip(channel_names, self.dwell, clk)},
            "ctr_per_slot": (self.slot_clicks / np.maximum(self.slot_impressions, 1)).tolist(),
            "oracle_auc": self.oracle_auc(),
            **self.ceilings(),
        }
        if self.sessions:
            out["sessions"] = self.sessions
            out["impressions_per_session"] = total_imp / self.sessions
            out["clicks_per_session"] = total_clk / self.sessions
            out["sessions_per_user"] = self.sessions / max(len(self.users), 1)
        return out


CEILING_KEYS = ("oracle_auc_noise_free", "learnable_ceiling_auc", "valid_learnable_ceiling_auc")


def fair_ceilings(meta: dict) -> dict:
    """The dataset's fair ceilings (data.ceilings) from its metadata.json, for every report:
    `oracle_auc_noise_free` and `learnable_ceiling_auc` of the test split, and
    `valid_learnable_ceiling_auc` of the last training day (every trainer's validation day).
    None where the dataset has no simulator truth or predates them (regenerate it with
    data.generate: the shards' bytes and the fingerprint stay the same)."""
    splits = meta.get("splits", {})
    test, train = splits.get("test", {}), splits.get("train", {})
    return {"oracle_auc_noise_free": test.get("oracle_auc_noise_free"),
            "learnable_ceiling_auc": test.get("learnable_ceiling_auc"),
            "valid_learnable_ceiling_auc": train.get("learnable_ceiling_auc")}


def headroom_share(auc: float | None, lr_auc: float | None, ceiling: float | None):
    """(auc - LR) / (ceiling - LR): the share of the headroom above LR, up to the learnable
    ceiling, that a model takes (1 = at the ceiling, < 0 = below LR); None if a value is
    missing or the ceiling is not above LR."""
    if auc is None or lr_auc is None or ceiling is None or ceiling <= lr_auc:
        return None
    return (auc - lr_auc) / (ceiling - lr_auc)


def binned_auc(pos: np.ndarray, neg: np.ndarray) -> float | None:
    """AUC from histograms of the positives' and negatives' scores over ascending bins (ties
    within a bin count one half); None without both classes."""
    if pos.sum() == 0 or neg.sum() == 0:
        return None
    neg_below = np.cumsum(neg) - neg
    return float((pos * neg_below + 0.5 * pos * neg).sum() / (pos.sum() * neg.sum()))


def calibration_report(summary: dict) -> dict:
    """Generated ratios beside the paper's Table 1 ratios."""
    return {k: {"generated": summary.get(k), "paper": v} for k, v in PAPER_RATIOS.items()}


def click_metrics(labels, preds, true_ctr) -> dict:
    """AUC and logloss of predicted click probabilities, and the oracle AUC of the true ones
    when every impression has one (true_ctr < 0 marks logs without ground truth). Every model
    (baselines and HRL-Rec) is scored by this one function."""
    if len(np.unique(labels)) < 2:
        raise ValueError("evaluation data needs both clicked and unclicked impressions")
    bad = int((~np.isfinite(preds)).sum())
    if bad:
        raise ValueError(f"{bad} of {len(preds)} predictions are not finite (NaN or inf): "
                         "the model's weights or inputs are")
    out = {"auc": float(roc_auc_score(labels, preds)),
           "logloss": float(log_loss(labels, np.clip(preds, 1e-7, 1 - 1e-7)))}
    if (true_ctr >= 0).all():
        out["oracle_auc"] = float(roc_auc_score(labels, true_ctr))
    return out


def rela_impr(auc: float, base_auc: float) -> float:
    """RelaImpr (Yan et al. 2014; the paper's Tables 2 and 4, base = LR):
    (AUC(model) - 0.5) / (AUC(base) - 0.5) - 1."""
    return (auc - 0.5) / (base_auc - 0.5) - 1.0


def auc_by_slot(labels, scores, slots) -> float:
    """The mean over slots of the AUC within each slot (slots whose impressions are all clicked
    or all not are skipped). On sim_small the slot alone gives a pooled AUC of ~0.73, so a
    pooled AUC hides what a score ranks among the items of one position; this does not."""
    labels, scores, slots = (np.asarray(x) for x in (labels, scores, slots))
    aucs = [roc_auc_score(labels[slots == k], scores[slots == k]) for k in np.unique(slots)
            if 0 < labels[slots == k].sum() < (slots == k).sum()]
    return float(np.mean(aucs)) if aucs else float("nan")
