"""Off-policy evaluation (hrl_rec/ope.py) in IRecSim and on real bandit logs.

    python -m experiments.ope --flagfile=configs/ope.flags
    python -m experiments.ope --flagfile=configs/ope.flags --parts=obd

`--parts=simulator`: every arm of Table 3 that `--arm` names (and the base arms) estimated
from the dataset's exploration logs beside its online value; experiments/ope_sim.py says how.
Writes `--output_dir`/simulator.{md,csv,json,png}.

`--parts=obd`: the Open Bandit Dataset's uniform-random logs, below.

The Open Bandit Dataset (Saito et al., NeurIPS 2021 Datasets and Benchmarks; provenance in
`--obd_dir`/../PROVENANCE.md) logs ZOZOTOWN's 3-slot fashion widget under a uniform-random
policy: every row is one slot (position 1-3) of one impression, with the shown item, the click
and its propensity (1 / number of items). Rows of one impression are not linked (no impression
id; 9,982 of 10,000 timestamps are unique), so a row is a one-slot list whose context is the
user's features and the position; the slate estimators (IIPS, RIPS) coincide with IPS there,
and only IPS, SNIPS and DR (hrl_rec/ope.py) are reported.

Days 2019-11-24 .. `--split_day` - 1 train the policies and the DR click model; the remaining
days are the evaluation log. Target policies, each a distribution over the campaign's items
at each (context, position):
- `uniform`: the logging policy itself. Every weight is 1, so IPS and SNIPS must return the
  evaluation days' observed CTR exactly (DR up to its click model's mean residual): the one
  policy whose true value these logs show.
- `most_clicked`: the items with the most training clicks (the smoothed click rate, ties by
  id), the best at position 1, the second at 2, the third at 3, for every user.
- `lr_greedy`: a logistic regression on the user features, the user-item affinity, the item
  (id and features) and the position, fit on the training days; per row, its three best items
  by predicted CTR, ranked into positions 1-3.
- `lr_softmax`: the same model's softmax over the items at temperature `--temperature` (on the
  logit scale), independently at each position: a stochastic policy whose weights vary less.
The DR estimator's click model is the same logistic regression (its DM part alone is printed
as `dm`). The true value of every policy but `uniform` is unknown: these logs cannot say
whether the estimates are right, only how wide their intervals are. The dataset's other
logging policy (Bernoulli Thompson sampling) is not in `--obd_dir`, so the issue's check of an
estimate against that policy's observed CTR cannot be run here.

Writes `--output_dir`/obd.md, obd.csv, obd.json and obd.png.
"""
from __future__ import annotations

import csv
import dataclasses
import datetime
import json
import os
import time

import numpy as np
from absl import app, flags

from data.files import write_atomic
from data.progress import Progress
from experiments import report
from hrl_rec import ope

FLAGS = flags.FLAGS
POLICIES = ("uniform", "most_clicked", "lr_greedy", "lr_softmax")
OBD_ESTIMATORS = ("ips", "snips", "dr")
POSITIONS = 3


PARTS = ("simulator", "obd")
SIM_ESTIMATORS = ("ips", "snips", "iips", "rips", "dr", "pi")
BASE_ARMS = {"base": "base (LR + channel quotas, no exploration)",
             "lr_no_quotas": "LR without channel quotas (CTR only)"}


def define_flags() -> None:
    flags.DEFINE_list("parts", list(PARTS), f"Which evaluations to run, of {PARTS}.")
    # --- simulator ---
    flags.DEFINE_string("data_dir", "datasets/sim_small", "IRecSim dataset whose test days are "
                        "the exploration logs (generated from --data_flagfile if missing).")
    flags.DEFINE_string("data_flagfile", "configs/sim_small.flags",
                        "Flags of data.generate for --data_dir.")
    flags.DEFINE_multi_string("arm", [], "A trained arm: LABEL=DIR with one {a,b,...} group "
                              "for its seeds (a hrl_rec.train, baselines.dqn_train or "
                              "baselines.ddpg_train --model_dir). Repeat for more arms.")
    flags.DEFINE_list("item_scores", ["cosine"], "How HRL-Rec arms pick items "
                      "(hrl_rec.policy.SlatePolicy's item_score); one arm per score.")
    flags.DEFINE_integer("wolpertinger_k", 10, "k of the Wolpertinger item scores.")
    flags.DEFINE_string("truth_from", "", "An experiments.ab_test output folder whose "
                        "table3_arms.csv already holds the arms' online values (serving is "
                        "deterministic, so they are the truths): its table3.md must name "
                        "--data_dir's fingerprint, and each --arm directory must be named "
                        "SETTING__SEED as experiments.ab_test names its runs. Arms it lacks "
                        "are served here.")
    flags.DEFINE_list("sim_estimators", list(SIM_ESTIMATORS),
                      f"Estimators on the simulator, of {SIM_ESTIMATORS}.")
    flags.DEFINE_string("obd_dir", "../shared/data/open-bandit-dataset/random",
                        "The Open Bandit Dataset's random/ folder: one sub-folder per campaign "
                        "holding CAMPAIGN.csv and item_context.csv.")
    flags.DEFINE_list("campaigns", ["all", "men", "women"], "Campaigns (sub-folders) to use.")
    flags.DEFINE_list("policies", list(POLICIES), f"Target policies, of {POLICIES}.")
    flags.DEFINE_string("split_day", "2019-11-28",
                        "First evaluation day (UTC, YYYY-MM-DD); earlier days train the "
                        "policies and the click model.")
    flags.DEFINE_float("temperature", 1.0, "lr_softmax's temperature on the logit scale (> 0).")
    flags.DEFINE_float("clip", 0.0, "Clip every importance weight at this value; 0 = no clip.")
    flags.DEFINE_float("l2", 1.0, "Inverse L2 strength C of the logistic regression (sklearn).")
    flags.DEFINE_integer("bootstrap", 1000, "Bootstrap resamples per interval.")
    flags.DEFINE_float("level", 0.95, "Confidence level of the intervals.")
    flags.DEFINE_integer("seed", 0, "Seed of the bootstrap.")
    flags.DEFINE_string("output_dir", "results/ope", "Where simulator.* and obd.* go.")


@dataclasses.dataclass
class Campaign:
    """One campaign's rows ([n]) and item table ([items])."""
    name: str
    day: np.ndarray            # [n] str YYYY-MM-DD
    item: np.ndarray           # [n] int
    position: np.ndarray       # [n] int 0..2
    click: np.ndarray          # [n] float
    propensity: np.ndarray     # [n] float
    user: np.ndarray           # [n, 4] str, hashed user features
    affinity: np.ndarray       # [n, items] float
    item_numeric: np.ndarray   # [items] item_feature_0
    item_categories: np.ndarray  # [items, 3] str, item_feature_1..3


class OBDError(ValueError):
    """A file of the Open Bandit Dataset that cannot be read as documented."""


def read_campaign(obd_dir: str, name: str) -> Campaign:
    """Reads `obd_dir/name/name.csv` and its item_context.csv; errors name file, line and
    column."""
    folder = os.path.join(obd_dir, name)
    log_path, item_path = os.path.join(folder, f"{name}.csv"), os.path.join(folder,
                                                                            "item_context.csv")
    for path in (log_path, item_path):
        if not os.path.isfile(path):
            raise OBDError(f"{path}: not found (--obd_dir={obd_dir}, --campaigns names "
                           f"{name!r}); expected the Open Bandit Dataset's random/ folder")
    with open(item_path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    items = len(rows)
    numeric, cats = np.zeros(items), np.empty((items, 3), object)
    for line, row in enumerate(rows, start=2):
        try:
            i = int(row["item_id"])
            numeric[i] = float(row["item_feature_0"])
            cats[i] = [row[f"item_feature_{j}"] for j in (1, 2, 3)]
        except (KeyError, ValueError, IndexError, TypeError) as e:
            raise OBDError(f"{item_path} line {line}: expected item_id in 0..{items - 1} and "
                           f"item_feature_0..3 ({type(e).__name__}: {e})") from None
    day, item, pos, click, prop, user, aff = [], [], [], [], [], [], []
    with open(log_path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        affinity_cols = [f"user-item_affinity_{i}" for i in range(items)]
        missing = [c for c in ["timestamp", "item_id", "position", "click", "propensity_score",
                               *[f"user_feature_{j}" for j in range(4)], *affinity_cols]
                   if c not in (reader.fieldnames or [])]
        if missing:
            raise OBDError(f"{log_path}: missing columns {missing[:5]}")
        for line, row in enumerate(reader, start=2):
            field = "timestamp"
            try:
                datetime.date.fromisoformat(row[field][:10])
                day.append(row[field][:10])
                field = "item_id"
                i = int(row[field])
                if not 0 <= i < items:
                    raise ValueError(f"{i} outside 0..{items - 1}")
                item.append(i)
                field = "position"
                p = int(row[field])
                if p not in (1, 2, 3):
                    raise ValueError(f"{p} not in 1, 2, 3")
                pos.append(p - 1)
                field = "click"
                c = int(row[field])
                if c not in (0, 1):
                    raise ValueError(f"{c} not 0 or 1")
                click.append(c)
                field = "propensity_score"
                q = float(row[field])
                if not 0.0 < q <= 1.0:
                    raise ValueError(f"{q} not in (0, 1]")
                prop.append(q)
                field = "user_feature_*"
                user.append([row[f"user_feature_{j}"] for j in range(4)])
                field = "user-item_affinity_*"
                aff.append([float(row[c]) for c in affinity_cols])
            except (ValueError, TypeError) as e:
                raise OBDError(f"{log_path} line {line} column {field}: {e}") from None
    if not day:
        raise OBDError(f"{log_path}: no rows")
    return Campaign(name, np.array(day), np.array(item), np.array(pos),
                    np.array(click, np.float64), np.array(prop), np.array(user, object),
                    np.array(aff), numeric, cats)


class ClickModel:
    """Logistic regression P(click | user features, affinity to the item, item, position):
    one-hot user features, item id, item categories and position, plus the affinity and
    item_feature_0 (fit on the training rows)."""

    def __init__(self, campaign: Campaign, train: np.ndarray, c: float):
        from sklearn.linear_model import LogisticRegression
        from sklearn.preprocessing import OneHotEncoder
        self.c = campaign
        self.encoder = OneHotEncoder(handle_unknown="ignore")
        x_cat, x_num = self._features(train, campaign.item[train], campaign.position[train])
        self.encoder.fit(x_cat)
        self.model = LogisticRegression(C=c, max_iter=2000)
        self.model.fit(self._matrix(x_cat, x_num), campaign.click[train])

    def _features(self, rows, items, positions):
        c = self.c
        cat = np.concatenate([c.user[rows], items[:, None].astype(str),
                              c.item_categories[items], positions[:, None].astype(str)], 1)
        num = np.stack([c.affinity[rows, items], c.item_numeric[items]], 1)
        return cat, num

    def _matrix(self, cat, num):
        from scipy import sparse
        return sparse.hstack([self.encoder.transform(cat), sparse.csr_matrix(num)]).tocsr()

    def logits(self, rows: np.ndarray) -> np.ndarray:
        """[len(rows), items, positions] logits of every item at every position."""
        items = self.c.item_numeric.shape[0]
        n = len(rows)
        r = np.repeat(rows, items * POSITIONS)
        i = np.tile(np.repeat(np.arange(items), POSITIONS), n)
        p = np.tile(np.arange(POSITIONS), n * items)
        return self.model.decision_function(self._matrix(*self._features(r, i, p))).reshape(
            n, items, POSITIONS)


def _softmax(x, axis):
    z = np.exp(x - x.max(axis=axis, keepdims=True))
    return z / z.sum(axis=axis, keepdims=True)


def _ranked(scores: np.ndarray) -> np.ndarray:
    """[n, items] scores -> [n, items, positions]: 1 where the item is the row's k-th best
    (ties by lower id)."""
    n, items = scores.shape
    order = np.argsort(-scores, axis=1, kind="stable")[:, :POSITIONS]
    out = np.zeros((n, items, POSITIONS))
    for k in range(POSITIONS):
        out[np.arange(n), order[:, k], k] = 1.0
    return out


def target_probabilities(name: str, campaign: Campaign, train, rows, logits, temperature):
    """[len(rows), items, positions]: the target's probability of each item at each position
    in each evaluation row's context."""
    items = campaign.item_numeric.shape[0]
    n = len(rows)
    if name == "uniform":
        return np.full((n, items, POSITIONS), 1.0 / items)
    if name == "most_clicked":
        clicks = np.bincount(campaign.item[train], campaign.click[train], items)
        shown = np.bincount(campaign.item[train], minlength=items)
        rate = (clicks + 1.0) / (shown + items)    # Laplace-smoothed click rate
        return np.repeat(_ranked(rate[None])[:, :, :], n, axis=0)
    if name == "lr_greedy":
        return _ranked(logits.mean(axis=2))
    if name == "lr_softmax":
        return _softmax(logits / temperature, axis=1)
    raise ValueError(f"--policies: {name!r}, expected one of {POLICIES}")


def evaluate_campaign(campaign: Campaign, progress: Progress):
    """{policy: {estimator: Estimate}} plus the observed CTR and the DM values."""
    train = np.flatnonzero(campaign.day < FLAGS.split_day)
    test = np.flatnonzero(campaign.day >= FLAGS.split_day)
    if len(train) == 0 or len(test) == 0:
        raise app.UsageError(f"--split_day={FLAGS.split_day}: campaign {campaign.name} has "
                             f"days {campaign.day.min()}..{campaign.day.max()}; both sides "
                             "need rows")
    model = ClickModel(campaign, train, FLAGS.l2)
    logits = model.logits(test)                               # [n, items, positions]
    q_all = 1.0 / (1.0 + np.exp(-logits))
    idx = np.arange(len(test))
    pos, item = campaign.position[test], campaign.item[test]
    q_logged = q_all[idx, item, pos]
    clip = FLAGS.clip if FLAGS.clip > 0 else np.inf
    out = {"observed_ctr": float(campaign.click[test].mean()), "train_rows": int(len(train)),
           "test_rows": int(len(test)), "test_clicks": int(campaign.click[test].sum()),
           "policies": {}}
    for name in FLAGS.policies:
        probs = target_probabilities(name, campaign, train, test, logits, FLAGS.temperature)
        pi = probs[idx, item, pos]
        dm = (probs * q_all).sum(axis=1)[idx, pos]            # E_pi[qhat] at the row's position
        log = ope.SlateLog(reward=campaign.click[test][:, None],
                           logging=campaign.propensity[test][:, None], target=pi[:, None],
                           q_logged=q_logged[:, None], q_target=dm[:, None])
        estimates = {}
        for estimator in OBD_ESTIMATORS:
            estimates[estimator] = ope.bootstrap(log, estimator, clip, FLAGS.bootstrap,
                                                 FLAGS.level, FLAGS.seed)
            progress.update(1, extra=f"{campaign.name} {name} {estimator}")
        out["policies"][name] = {"dm": float(dm.mean()), "estimates": estimates}
    return out


def main(argv):
    del argv
    bad = [p for p in FLAGS.parts if p not in PARTS]
    if bad or not FLAGS.parts:
        raise app.UsageError(f"--parts={','.join(FLAGS.parts)}: expected some of {PARTS}")
    bad = [p for p in FLAGS.policies if p not in POLICIES]
    if bad:
        raise app.UsageError(f"--policies: {bad} unknown; expected some of {POLICIES}")
    bad = [e for e in FLAGS.sim_estimators if e not in SIM_ESTIMATORS]
    if bad:
        raise app.UsageError(f"--sim_estimators: {bad} unknown; expected some of "
                             f"{SIM_ESTIMATORS}")
    if FLAGS.temperature <= 0:
        raise app.UsageError(f"--temperature={FLAGS.temperature}: expected > 0")
    if FLAGS.clip < 0:
        raise app.UsageError(f"--clip={FLAGS.clip}: expected >= 0 (0 = no clipping)")
    try:
        datetime.date.fromisoformat(FLAGS.split_day)
    except ValueError:
        raise app.UsageError(f"--split_day={FLAGS.split_day}: expected YYYY-MM-DD") from None
    arms = parse_arms(FLAGS.arm)
    if "simulator" in FLAGS.parts:
        run_simulator(arms)
    if "obd" in FLAGS.parts:
        run_obd()


def parse_arms(specs: list[str]) -> list[tuple[str, list[str]]]:
    """--arm LABEL=DIR{a,b} -> [(label, [dir per seed])]; a missing model is a usage error."""
    from experiments.seed_table import expand
    arms = []
    for spec in specs:
        label, sep, pattern = spec.partition("=")
        if not sep or not label or not pattern:
            raise app.UsageError(f"--arm={spec}: expected LABEL=DIR (DIR may hold one "
                                 "{a,b,...} group)")
        dirs = expand(pattern)
        missing = [d for d in dirs if not os.path.exists(os.path.join(d, "model.keras"))]
        if missing:
            raise app.UsageError(f"--arm={spec}: {missing[0]}/model.keras not found (train "
                                 "the arm first, or drop it)")
        arms.append((label, dirs))
    return arms


def run_obd():
    t0 = time.monotonic()
    try:
        campaigns = [read_campaign(FLAGS.obd_dir, c) for c in FLAGS.campaigns]
    except OBDError as e:
        raise SystemExit(str(e)) from None
    progress = Progress(len(campaigns) * len(FLAGS.policies) * len(OBD_ESTIMATORS),
                        "ope: estimating", unit="estimates")
    results = {c.name: evaluate_campaign(c, progress) for c in campaigns}
    write_outputs(results, time.monotonic() - t0)


def ab_test_truths(folder: str, fingerprint: str, targets) -> dict:
    """{target key: {"ctr": ...}} for the targets whose arm experiments.ab_test's
    `folder`/table3_arms.csv holds (arm SETTING[+SCORE], seed)."""
    md, arms_csv = os.path.join(folder, "table3.md"), os.path.join(folder, "table3_arms.csv")
    for path in (md, arms_csv):
        if not os.path.exists(path):
            raise app.UsageError(f"--truth_from={folder}: {path} not found (an "
                                 "experiments.ab_test --output_dir)")
    with open(md) as f:
        if f"fingerprint `{fingerprint}`" not in f.read():
            raise app.UsageError(f"--truth_from={folder}: {md} does not name the fingerprint "
                                 f"{fingerprint} of --data_dir={FLAGS.data_dir}")
    with open(arms_csv, newline="") as f:
        rows = {(r["arm"], r["seed"]): r for r in csv.DictReader(f)}
    out = {}
    for key, _, _, _, _, d, score in targets:
        if d:
            setting, _, seed = os.path.basename(d.rstrip("/")).rpartition("__")
            arm = setting if score == "cosine" else f"{setting}+{score}"
        else:
            arm, seed = key, ""
        row = rows.get((arm, seed))
        if row is not None:
            out[key] = {"ctr": float(row["ctr"]), "clicks": int(row["clicks"]),
                        "impressions": int(row["impressions"]),
                        "requests": int(row["requests"]), "source": arms_csv}
    return out


def _sim_targets(arms, world):
    """[(key, label, seed label, act, m, model dir or '', item score)] for the base arms and
    every --arm seed x item score."""
    from experiments import online
    from hrl_rec.model import HRLRec
    targets = [("base", BASE_ARMS["base"], "", online.logging_arm(0.0), 0, "", "cosine"),
               ("lr_no_quotas", BASE_ARMS["lr_no_quotas"], "",
                online.logging_arm(0.0, quotas=False), 0, "", "cosine")]
    for label, dirs in arms:
        for d in dirs:
            model = online.load_model(d)
            scores = FLAGS.item_scores if isinstance(model, HRLRec) else ["cosine"]
            for score in scores:
                name = label if score == "cosine" else f"{label}, {score}"
                act = online.model_arm(model, world, 0.0, 0, score, FLAGS.wolpertinger_k)
                targets.append((f"{name}|{d}", name, os.path.basename(d.rstrip("/")), act,
                                model.max_seq_len, d, score))
    return targets


def run_simulator(arms):
    """Collects the exploration logs once with every arm's slates, then serves each arm online
    for its truth (cached in --output_dir/simulator_truth.json, so a rerun resumes)."""
    from experiments import online, ope_sim
    from hrl_rec.train import ensure_dataset
    t0 = time.monotonic()
    ensure_dataset(FLAGS.data_dir, FLAGS.data_flagfile)
    cfg, world, metadata = online.load_world(FLAGS.data_dir)
    targets = _sim_targets(arms, world)
    n_shards = metadata["shards"]
    days = cfg.n_days + 1
    progress = Progress((len(targets) + 1) * n_shards * days, "ope: simulating",
                        unit="shard-days")
    truth_path = os.path.join(FLAGS.output_dir, "simulator_truth.json")
    truths = {}
    if os.path.exists(truth_path):
        with open(truth_path) as f:
            cached = json.load(f)
        if cached.get("fingerprint") == metadata["fingerprint"]:
            truths = cached["arms"]
    if FLAGS.truth_from:
        truths = {**ab_test_truths(FLAGS.truth_from, metadata["fingerprint"], targets),
                  **truths}
    os.makedirs(FLAGS.output_dir, exist_ok=True)
    collector = ope_sim.collect(cfg, world, n_shards,
                                {k: (a, m) for k, _, _, a, m, _, _ in targets},
                                on_day=lambda *_: progress.update(1, extra="exploration logs"))
    for key, name, _, act, m, _, _ in targets:
        if key in truths:
            progress.update(n_shards * days, extra=f"{name} (truth from "
                            f"{truths[key].get('source', truth_path)})")
            continue
        result = online.run_arm(cfg, world, n_shards, act, None, m,
                                on_day=lambda *_: progress.update(1, extra=name))
        truths[key] = {"ctr": result["ctr"], "clicks": result["clicks"],
                       "impressions": result["impressions"], "requests": result["requests"]}
        write_atomic(truth_path, json.dumps({"fingerprint": metadata["fingerprint"],
                                             "arms": truths}, indent=1, sort_keys=True))
    clip = FLAGS.clip if FLAGS.clip > 0 else np.inf
    size = cfg.list_size
    rows = []
    for key, name, seed, _, _, d, _ in targets:
        log = collector.log(key)
        online_truth = truths[key]["ctr"]
        logged_truth = collector.truth(key)          # clicks per list on the logged requests
        agree = float(log.target.mean())
        for estimator in FLAGS.sim_estimators:
            e = ope.bootstrap(log, estimator, clip, FLAGS.bootstrap, FLAGS.level, FLAGS.seed)
            rows.append({"arm": name, "seed": seed, "model_dir": d, "estimator": estimator,
                         "estimate": e.value / size, "low": e.low / size,
                         "high": e.high / size, "truth": logged_truth / size,
                         "bias": (e.value - logged_truth) / size,
                         "covered": e.covers(logged_truth), "online_truth": online_truth,
                         "online_covered": e.covers(online_truth * size),
                         "ess": e.ess, "slot_agreement": agree, "lists": log.n})
    write_simulator(rows, metadata, collector.lists, time.monotonic() - t0)


def write_simulator(rows, metadata, lists, seconds):
    header = ["arm", "seeds", "estimator", "estimate", "truth on the logged requests", "bias",
              "covered", "online CTR", "covers online", "ESS (lists)", "slot agreement"]
    table, labels, stats, truths = [], [], [], []
    groups = {}
    for r in rows:
        groups.setdefault((r["arm"], r["estimator"]), []).append(r)
    for (arm, estimator), rs in groups.items():
        est = np.array([r["estimate"] for r in rs])
        tru = np.array([r["truth"] for r in rs])
        bias = est - tru
        fmt = (lambda v: f"{v.mean():.4f}" + (f" ± {v.std(ddof=1):.4f}" if len(v) > 1 else ""))
        interval = (f" [{rs[0]['low']:.4f}, {rs[0]['high']:.4f}]" if len(rs) == 1 else "")
        online_ctr = np.array([r["online_truth"] for r in rs])
        table.append([arm, str(len(rs)) if rs[0]["seed"] else "", estimator,
                      fmt(est) + interval, fmt(tru), fmt(bias),
                      f"{sum(r['covered'] for r in rs)}/{len(rs)}", fmt(online_ctr),
                      f"{sum(r['online_covered'] for r in rs)}/{len(rs)}",
                      f"{np.mean([r['ess'] for r in rs]):.1f}",
                      f"{np.mean([r['slot_agreement'] for r in rs]):.3f}"])
        for r in rs:
            labels.append(f"{arm} {r['seed']} {estimator}".replace("  ", " "))
            stats.append((r["estimate"], r["low"], r["high"]))
            truths.append(r["truth"])
    notes = [f"Data: `{FLAGS.data_dir}` (fingerprint `{metadata['fingerprint']}`): the test "
             f"days' {lists} logged lists under the logging policy with its online exploration "
             "(experiments/ope_sim.py). Estimate: clicks per shown slot under the arm on the "
             "logged requests. Truth on the logged requests: the simulator's click "
             "probabilities of the arm's slate at each logged request (what the estimators "
             "estimate); `bias` and `covered` are against it. Online CTR: the arm serving the "
             "test days itself (experiments.ab_test's value), whose users then differ from the "
             "logged ones. Interval: percentile bootstrap over lists, "
             f"{FLAGS.bootstrap} resamples, level {FLAGS.level:g}; with several seeds the "
             "cells are mean ± std over seeds and `covered` counts the seeds whose interval "
             "holds their truth. ESS: effective number of lists behind the estimate (per "
             "slot for IIPS, RIPS, DR); slot agreement: the share of logged slots where the "
             f"arm would have shown the same item. Clip: "
             f"{FLAGS.clip if FLAGS.clip > 0 else 'none'}.",
             f"Regenerate: `python -m experiments.ope --flagfile=configs/ope.flags "
             f"--parts=simulator` ({seconds / 60:.0f} min)."]
    report.write_markdown(os.path.join(FLAGS.output_dir, "simulator.md"),
                          "Off-policy estimates of Table 3's arms in IRecSim", notes, header,
                          table)
    keys = list(rows[0]) if rows else []
    report.write_csv(os.path.join(FLAGS.output_dir, "simulator.csv"), keys,
                     [[str(r[k]) for k in keys] for r in rows])
    write_atomic(os.path.join(FLAGS.output_dir, "simulator.json"),
                 json.dumps({"fingerprint": metadata["fingerprint"], "rows": rows}, indent=1))
    drawn = write_chart(os.path.join(FLAGS.output_dir, "simulator.png"), labels, stats, {},
                        truths=truths)
    print(open(os.path.join(FLAGS.output_dir, "simulator.md")).read(), flush=True)
    report.print_written(FLAGS.output_dir, ["simulator.md", "simulator.csv", "simulator.json"],
                         "simulator.png", drawn)


def write_outputs(results: dict, seconds: float) -> None:
    os.makedirs(FLAGS.output_dir, exist_ok=True)
    header = ["campaign", "policy", "estimator", "ctr", "low", "high", "ess", "dm",
              "observed_ctr", "test_rows", "test_clicks"]
    rows, labels, stats = [], [], []
    for campaign, r in results.items():
        for policy, p in r["policies"].items():
            for estimator, e in p["estimates"].items():
                rows.append([campaign, policy, estimator, f"{e.value:.5f}", f"{e.low:.5f}",
                             f"{e.high:.5f}", f"{e.ess:.1f}", f"{p['dm']:.5f}",
                             f"{r['observed_ctr']:.5f}", str(r["test_rows"]), str(r["test_clicks"])])
                labels.append(f"{campaign} {policy} {estimator}")
                stats.append((e.value, e.low, e.high))
    notes = [f"Data: `{FLAGS.obd_dir}` (Open Bandit Dataset, small, uniform-random logs); "
             f"training days before {FLAGS.split_day}, evaluation days from it. CTR = expected "
             "clicks per shown slot under the target policy; interval: percentile bootstrap "
             f"over rows, {FLAGS.bootstrap} resamples, level {FLAGS.level:g}, seed "
             f"{FLAGS.seed}; clip {FLAGS.clip if FLAGS.clip > 0 else 'none'}; lr_softmax "
             f"temperature {FLAGS.temperature:g}.",
             "`uniform` is the logging policy: its IPS and SNIPS estimates must equal the observed "
             "CTR (DR up to its click model's mean residual). The other policies' true CTR is "
             "unknown (no logs of them here). `dm`: the click model's own estimate (DR's "
             "direct-method part); `ess`: the effective number of rows behind the estimate.",
             f"Regenerate: `python -m experiments.ope --flagfile=configs/ope.flags` "
             f"({seconds:.0f} s)."]
    report.write_markdown(os.path.join(FLAGS.output_dir, "obd.md"),
                          "Off-policy estimates on the Open Bandit Dataset", notes, header, rows)
    report.write_csv(os.path.join(FLAGS.output_dir, "obd.csv"), header, rows)
    payload = {c: {**{k: v for k, v in r.items() if k != "policies"},
                   "policies": {p: {"dm": v["dm"], "estimates": {
                       e: est.to_json() for e, est in v["estimates"].items()}}
                                for p, v in r["policies"].items()}}
               for c, r in results.items()}
    write_atomic(os.path.join(FLAGS.output_dir, "obd.json"),
                 json.dumps(payload, indent=1, sort_keys=True))
    drawn = write_chart(os.path.join(FLAGS.output_dir, "obd.png"), labels, stats,
                        {c: r["observed_ctr"] for c, r in results.items()})
    print(open(os.path.join(FLAGS.output_dir, "obd.md")).read(), flush=True)
    report.print_written(FLAGS.output_dir, ["obd.md", "obd.csv", "obd.json"], "obd.png",
                         drawn)


def write_chart(path, labels, stats, observed, truths=None) -> bool:
    plt = report.pyplot()
    if plt is None:
        return False
    fig, ax = plt.subplots(figsize=(7, 0.28 * len(labels) + 1.2))
    y = np.arange(len(labels))[::-1]
    values = np.array(stats)
    ax.errorbar(values[:, 0], y, xerr=[values[:, 0] - values[:, 1], values[:, 2] - values[:, 0]],
                fmt="o", ms=3, capsize=2)
    for campaign, ctr in observed.items():
        rows = [i for i, label in enumerate(labels) if label.startswith(campaign + " ")]
        ax.vlines(ctr, y[rows].min() - 0.4, y[rows].max() + 0.4, colors="grey",
                  linestyles="dotted")
    if truths is not None:
        ax.plot(truths, y, "x", color="red", ms=4)
    ax.set_yticks(y, labels, fontsize=7)
    ax.set_xlabel("estimated CTR with its interval; " + (
        "x: the arm's online CTR" if truths is not None else
        "dotted: the evaluation days' observed CTR under the logging policy"), fontsize=7)
    report.save_png(plt, fig, path)
    return True


if __name__ == "__main__":
    define_flags()
    app.run(main)
