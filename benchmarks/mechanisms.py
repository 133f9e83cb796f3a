"""Positive controls of IRecSim's mechanisms (issue 22): can the testbed show each effect?

    python -m benchmarks.mechanisms --flagfile=configs/sim_claims.flags

For every click-logit mechanism of data.mechanisms (clickbait, satiation, triple, shock) it
simulates shard 0 of the preset twice, with the mechanism as the preset sets it and with its
weight 0 (every other flag the same), and prints one JSON line:

    oracle_effect      AUC of the true click probability minus the AUC of the same probability
                       with the mechanism's term taken out of the logit (with it on)
    recovered_effect   a logistic regression handed everything else the oracle's logit holds
                       and the slot, with the true term as one more feature, minus the same
                       model without it: AUC on the last day, trained on the days before (with
                       it on): the effect is learnable from this many clicks
    flag_off_effect    the larger magnitude of the two effects above with the weight at 0
    passed             oracle_effect >= 0.01, recovered_effect >= half of it, and
                       |flag_off_effect| < 0.002

(The shock's effects are measured on its days only.)

The return-rate mechanisms (fatigue_weight, topic_fatigue_weight, clickbait_satisfaction,
satisfaction_completion)
change tomorrow's sessions, not today's clicks, so their control compares policies
(data.oracle_policy): the myopic oracle (the most probable click in every slot) against the
planning oracle for the mechanism (the same fill of z + lambda * v, v the item's true
long-term value, lambda the best of --planning_weights), each serving the whole population
from day 0 to the end (the warm-up day is the logging policy's):

    oracle_effect      clicks per user of the best planner / the myopic oracle's - 1
    flag_off_effect    the same ratio, the same lambda, with the mechanism's weight at 0
                       (satisfaction_completion: and --satisfaction_click at 1, the clicks'
                       own satisfaction back)
    recovered_effect   a Poisson regression handed the true daily feature x_ud the
                       mechanism reads (the day's topic or channel concentration, clicked
                       clickbait or completion per page) beside everything else that day's
                       satisfaction and fatigue read (the other features, clicks, new tags
                       and repeated tags per page), fitted on the logging policy's logs: a
                       user's sessions on day d + 1 ~ exp(b0 + b x_ud / sd(x) + c' w_ud
                       + c log pages_ud + weekend_(d+1)) x the user's mean sessions per day
                       (exposure; w the other features, standardised); recovered_effect =
                       exp(b) - 1, the change of tomorrow's sessions per standard deviation
                       of today's feature, with its z (b / se(b))
    recovered_off_effect  the same with the mechanism's weight at 0
    passed             oracle_effect >= 0.05 and flag_off_effect < 0.01 (planning gains
                       nothing without the mechanism; it may lose clicks); with the recovered
                       part run, also: recovered_effect of the mechanism's sign with |z| >= 3,
                       and recovered_off_effect of that sign less than half of it
"""
from __future__ import annotations

import dataclasses
import json
import sys
import time

import numpy as np
from absl import app, flags
from sklearn.linear_model import LogisticRegression

from data import ceilings, config_flags
from data.generate import simulate_shard
from data.oracle_policy import OraclePolicy
from data.sim_config import SimConfig
from data.sim_world import make_world

ORACLE_MIN = 0.01         # (a): removing the term costs the oracle at least this much AUC
RECOVERED_SHARE = 0.5     # (b): a model handed the true feature recovers at least this share
OFF_MAX = 0.002           # (c): with the flag off, no effect beyond this
PLAN_MIN = 0.05           # (a) for return-rate mechanisms: the planner's gain in clicks per user
PLAN_OFF_MAX = 0.01       # (c) for them: without the mechanism planning gains less than this
RECOVERED_Z = 3.0         # (b) for them: the regression's coefficient is this many se from 0
# the daily feature each return-rate mechanism reads (MechanismState.last_day) and the sign of
# its effect on tomorrow's sessions
RETURN_FEATURES = {"fatigue_weight": ("channel_concentration", -1),
                   "topic_fatigue_weight": ("topic_concentration", -1),
                   "clickbait_satisfaction": ("clickbait_per_page", -1),
                   "satisfaction_completion": ("completion_per_page", +1)}
RETURN_PARTS = ("planning", "recovered")
CLICK_MECHANISMS = {"clickbait": "clickbait_weight", "satiation": "satiation_weight",
                    "triple": "triple_weight", "shock": "shock_size"}
RETURN_MECHANISMS = ("fatigue_weight", "topic_fatigue_weight", "clickbait_satisfaction",
                     "satisfaction_completion")
# what else "off" restores: satisfaction from completion replaces the click count's
# (--satisfaction_click 0 in the claims preset), so without it the clicks count again
OFF_ALSO = {"satisfaction_completion": {"satisfaction_click": 1.0}}

FLAGS = flags.FLAGS


def define_flags() -> None:
    config_flags.define_flags(SimConfig)
    flags.DEFINE_list("mechanisms", list(CLICK_MECHANISMS), "Click-logit mechanisms to check.")
    flags.DEFINE_integer("n_shards", 1, "The preset's shard count (read from data flagfiles); "
                         "the controls simulate the whole population as one shard.")
    flags.DEFINE_integer("max_train_rows", 300_000, "Rows the logistic regressions train on at "
                         "most (a uniform sample of the days before the last).")
    flags.DEFINE_list("return_mechanisms", list(RETURN_MECHANISMS), "Return-rate mechanisms "
                      "to check with the planning oracle (empty: none).")
    flags.DEFINE_list("planning_weights", ["1", "3", "10"], "The planning oracle's lambdas; "
                      "the best (most clicks per user, mechanism on) is reported.")
    flags.DEFINE_list("return_parts", list(RETURN_PARTS), "Parts of the return-rate checks to "
                      "run: planning (the oracles, (a) and (c)) and recovered (the regression "
                      "on the logging policy's logs, (b)).")


@dataclasses.dataclass
class Log:
    """What a control needs of each impression of one simulation."""
    day: np.ndarray
    clicked: np.ndarray
    exam: np.ndarray
    true_ctr: np.ndarray
    term: np.ndarray
    features: np.ndarray     # [n, F] int categorical: slot, channel, hour block, age field


def simulate(cfg: SimConfig, name: str) -> Log:
    """Shard 0 of `cfg` as its only shard, every logged impression (days >= 0)."""
    world = make_world(cfg)
    chunks = []

    def observe(req, slates, fb):
        if req.day < 0:
            return
        n, s = slates.shape
        feats = np.stack([np.tile(np.arange(s), n), world.items.channel[slates].ravel(),
                          np.repeat(req.context[:, 0] // 6, s),
                          np.repeat(req.user_fields[:, 0], s)], axis=1)
        chunks.append((np.full(n * s, req.day), fb.clicked.ravel(), np.tile(fb.exam, n),
                       fb.true_ctr.ravel().astype(np.float64), fb.terms[name].ravel(), feats))

    simulate_shard(cfg, 0, 1, world=world, observe=observe)
    return Log(*(np.concatenate([c[i] for c in chunks]) for i in range(6)))


def _logit(p):
    p = np.clip(p, 1e-12, 1 - 1e-12)
    return np.log(p) - np.log1p(-p)


def oracle_effect(log: Log, keep: np.ndarray) -> float:
    """AUC(true p) - AUC(e sigmoid(logit(p / e) - term)) on the rows in `keep`."""
    p, e = log.true_ctr[keep], log.exam[keep]
    without = e / (1 + np.exp(-(_logit(p / e) - log.term[keep])))
    y = log.clicked[keep]
    return ceilings.auc(p, y) - ceilings.auc(without, y)


def recovered_effect(log: Log, keep: np.ndarray, max_rows: int, seed: int = 0) -> float:
    """AUC gain, on the last kept day, of a logistic regression handed the true term: trained
    on the kept days before it, on [everything else the oracle's logit holds, one-hot slot]
    with and without the term as one more feature. It recovers the oracle's effect when the
    clicks of these days carry the term's signal."""
    rest = _logit(log.true_ctr / log.exam) - log.term
    slots = np.eye(int(log.features[:, 0].max()) + 1)[log.features[:, 0]]
    last = log.day[keep].max()
    train = np.flatnonzero(keep & (log.day < last))
    test = keep & (log.day == last)
    if len(train) > max_rows:
        train = np.sort(np.random.default_rng(seed).choice(train, max_rows, replace=False))
    aucs = []
    for with_term in (False, True):
        def x(rows):
            cols = [rest[rows, None], slots[rows]] + ([log.term[rows, None]] if with_term else [])
            return np.concatenate(cols, axis=1)
        model = LogisticRegression(C=1.0, max_iter=500)
        model.fit(x(train), log.clicked[train])
        aucs.append(ceilings.auc(model.predict_proba(x(test))[:, 1], log.clicked[test]))
    return aucs[1] - aucs[0]


def check(cfg: SimConfig, name: str, max_rows: int) -> dict:
    flag = CLICK_MECHANISMS[name]
    start = time.monotonic()
    if not getattr(cfg, flag):
        return {"name": name, "flag": flag, "oracle_effect": None, "recovered_effect": None,
                "flag_off_effect": None, "passed": None,
                "message": f"--{flag} is 0 in this preset: nothing to control"}
    results = {}
    for state, c in (("on", cfg), ("off", dataclasses.replace(cfg, **{flag: 0.0}))):
        log = simulate(c, name)
        keep = np.ones(len(log.day), bool)
        if name == "shock":
            keep = (log.day >= cfg.shock_day) & (log.day < cfg.shock_day + cfg.shock_days)
        results[state] = (oracle_effect(log, keep), recovered_effect(log, keep, max_rows))
    (oracle, recovered), off = results["on"], results["off"]
    off_effect = max(off, key=abs)
    passed = (oracle >= ORACLE_MIN and recovered >= RECOVERED_SHARE * oracle
              and abs(off_effect) < OFF_MAX)
    return {"name": name, "flag": flag, "value": getattr(cfg, flag),
            "oracle_effect": oracle, "recovered_effect": recovered,
            "flag_off_effect": off_effect, "passed": bool(passed),
            "n_users": cfg.n_users, "n_days": cfg.n_days, "unit": "AUC",
            "wall_s": round(time.monotonic() - start, 1)}


def clicks_per_user(cfg: SimConfig, policy: OraclePolicy) -> float:
    """Clicks per user of the population over days 0..n_days-1, `policy` serving every day
    from day 0 (the whole population as one shard)."""
    clicks = [0]

    def observe(req, slates, fb):
        if req.day >= 0:
            clicks[0] += int(fb.clicked.sum())

    simulate_shard(cfg, 0, 1, act=policy, observe=observe, on_env=policy.bind)
    return clicks[0] / cfg.n_users


@dataclasses.dataclass
class Panel:
    """Per user (rows) and day (columns 0..n_days-1) of one logging-policy simulation."""
    feature: np.ndarray      # [U, D] the mechanism's daily feature (nan on inactive days)
    pages: np.ndarray        # [U, D]
    sessions: np.ndarray     # [U, D]
    covariates: np.ndarray   # [U, D, K] the other features of PANEL_COVARIATES (nan inactive)


# what a day's satisfaction and fatigue read besides the mechanism's own feature
PANEL_COVARIATES = ("channel_concentration", "topic_concentration", "completion_per_page",
                    "clickbait_per_page", "clicks_per_page", "new_tags_per_page",
                    "repeats_per_page")


def daily_panel(cfg: SimConfig, feature: str) -> Panel:
    """Simulates the logging policy on the whole population as one shard and records, per
    user and day, `feature` of MechanismState.last_day, the other PANEL_COVARIATES, the
    pages and the sessions."""
    u, d = cfg.n_users, cfg.n_days
    others = [c for c in PANEL_COVARIATES if c != feature]
    panel = Panel(np.full((u, d), np.nan), np.zeros((u, d)), np.zeros((u, d)),
                  np.full((u, d, len(others)), np.nan))
    env = []

    def observe(req, slates, fb):
        if req.day >= 0:
            np.add.at(panel.sessions[:, req.day], req.rows[req.page == 0], 1.0)

    def on_day(day, log):
        last = env[0].mech.last_day
        if day >= 0 and last is not None:
            active = last["active"]
            panel.feature[active, day] = last[feature][active]
            panel.covariates[active, day] = np.stack([last[c][active] for c in others], 1)
            panel.pages[:, day] = last["pages"]

    simulate_shard(cfg, 0, 1, observe=observe, on_day=on_day, on_env=env.append)
    return panel


def session_response(panel: Panel, max_iter: int = 50) -> dict:
    """The Poisson regression of recovered_effect (module docstring), by Newton's method:
    {coef, se, z, sd, effect} for the standardised feature. The exposure is the user's own
    mean over the period, so over few days the coefficient is attenuated (a planted -0.3 per
    sd reads -0.27 over 8 days, -0.30 over 40); its z is what the check reads."""
    x, pages, y = panel.feature[:, :-1], panel.pages[:, :-1], panel.sessions[:, 1:]
    exposure = np.broadcast_to(panel.sessions.mean(1, keepdims=True), y.shape)
    weekend = np.broadcast_to((np.arange(1, panel.sessions.shape[1]) % 7 >= 5)[None], y.shape)
    keep = np.isfinite(x) & (exposure > 0)
    x, sd = x[keep], float(np.std(x[keep]))
    if len(x) < 10 or sd == 0:
        return {"coef": None, "se": None, "z": None, "sd": sd, "effect": None}
    w = np.concatenate([panel.covariates[:, :-1][keep],
                        np.log(np.maximum(pages[keep], 1))[:, None],
                        weekend[keep].astype(np.float64)[:, None]], axis=1)
    w_sd = w.std(0)
    w = (w[:, w_sd > 0] - w[:, w_sd > 0].mean(0)) / w_sd[w_sd > 0]   # constant ones dropped
    design = np.concatenate([np.ones_like(x)[:, None], ((x - x.mean()) / sd)[:, None], w],
                            axis=1)
    target, offset = y[keep], np.log(exposure[keep])
    beta = np.zeros(design.shape[1])
    beta[0] = np.log(target.sum() / np.exp(offset).sum())
    for _ in range(max_iter):
        mu = np.exp(offset + design @ beta)
        info = design.T @ (design * mu[:, None])
        step = np.linalg.solve(info, design.T @ (target - mu))
        beta += step
        if np.max(np.abs(step)) < 1e-10:
            break
    mu = np.exp(offset + design @ beta)
    se = float(np.sqrt(np.linalg.inv(design.T @ (design * mu[:, None]))[1, 1]))
    return {"coef": float(beta[1]), "se": se, "z": float(beta[1] / se), "sd": sd,
            "effect": float(np.expm1(beta[1]))}


def flag_off(cfg: SimConfig, flag: str) -> SimConfig:
    """`cfg` with the return-rate mechanism's weight at 0 and what OFF_ALSO restores."""
    return dataclasses.replace(cfg, **{flag: 0.0, **OFF_ALSO.get(flag, {})})


def return_recovered(cfg: SimConfig, flag: str, progress=None) -> dict:
    """(b) of a return-rate mechanism: the regression on the logging policy's logs with the
    mechanism on and with its weight at 0 (OFF_ALSO restored); `progress()` after each
    simulation."""
    feature, sign = RETURN_FEATURES[flag]
    off = flag_off(cfg, flag)
    fits = []
    for c in (cfg, off):
        fits.append(session_response(daily_panel(c, feature)))
        if progress:
            progress()
    on_fit, off_fit = fits
    passed = (on_fit["effect"] is not None and sign * on_fit["z"] >= RECOVERED_Z
              and sign * (off_fit["effect"] or 0.0) < 0.5 * sign * on_fit["effect"])
    return {"recovered_effect": on_fit["effect"], "recovered_z": on_fit["z"],
            "recovered_off_effect": off_fit["effect"], "recovered_off_z": off_fit["z"],
            "recovered_feature": feature, "recovered_feature_sd": on_fit["sd"],
            "recovered_passed": bool(passed)}


def return_check(cfg: SimConfig, flag: str, weights: list[float],
                 parts=RETURN_PARTS) -> dict:
    """One JSON line of a return-rate mechanism: `parts` of RETURN_PARTS ((a) and (c) by the
    oracles, (b) by the regression); a part not run leaves its fields null."""
    start = time.monotonic()
    out = {"name": flag, "flag": flag, "value": getattr(cfg, flag), "oracle_effect": None,
           "recovered_effect": None, "flag_off_effect": None, "passed": None}
    if not getattr(cfg, flag):
        return {**out, "message": f"--{flag} is 0 in this preset: nothing to control"}
    total = (len(weights) + 3 if "planning" in parts else 0) + (2 if "recovered" in parts else 0)
    done = [0]

    def tick():
        done[0] += 1
        spent = time.monotonic() - start
        print(f"  {flag}: {done[0]}/{total} simulations, {spent / 60:.1f} min, ETA "
              f"{spent / done[0] * (total - done[0]) / 60:.1f} min", file=sys.stderr, flush=True)

    checks = []
    if "planning" in parts:
        def run(c, policy):
            value = clicks_per_user(c, policy)
            tick()
            return value

        myopic = run(cfg, OraclePolicy(cfg))
        planned = {w: run(cfg, OraclePolicy(cfg, flag, w)) for w in weights}
        best = max(planned, key=planned.get)
        off = flag_off(cfg, flag)
        myopic_off = run(off, OraclePolicy(off))
        planned_off = run(off, OraclePolicy(off, flag, best))
        out.update(oracle_effect=planned[best] / myopic - 1.0,
                   flag_off_effect=planned_off / myopic_off - 1.0, planning_weight=best,
                   clicks_per_user_myopic=myopic,
                   clicks_per_user_planned={str(w): v for w, v in planned.items()},
                   clicks_per_user_off={"myopic": myopic_off, "planned": planned_off})
        checks.append(out["oracle_effect"] >= PLAN_MIN and out["flag_off_effect"] < PLAN_OFF_MAX)
    if "recovered" in parts:
        out.update(return_recovered(cfg, flag, progress=tick))
        checks.append(out["recovered_passed"])
    out.update(passed=bool(all(checks)), parts=list(parts), n_users=cfg.n_users,
               n_days=cfg.n_days, unit="clicks per user, relative (recovered: tomorrow's "
               "sessions per sd of today's feature, relative)",
               wall_s=round(time.monotonic() - start, 1))
    return out


def main(argv):
    del argv
    try:
        cfg = config_flags.from_flags(SimConfig, FLAGS)
    except ValueError as e:
        raise app.UsageError(str(e)) from None
    unknown = [m for m in FLAGS.mechanisms if m not in CLICK_MECHANISMS]
    if unknown:
        raise app.UsageError(f"--mechanisms: unknown {unknown}; expected some of "
                             f"{list(CLICK_MECHANISMS)}")
    unknown = [m for m in FLAGS.return_mechanisms if m not in RETURN_MECHANISMS]
    if unknown:
        raise app.UsageError(f"--return_mechanisms: unknown {unknown}; expected some of "
                             f"{list(RETURN_MECHANISMS)}")
    try:
        weights = [float(w) for w in FLAGS.planning_weights]
    except ValueError:
        raise app.UsageError(f"--planning_weights={','.join(FLAGS.planning_weights)}: expected "
                             "numbers") from None
    if not weights or min(weights) <= 0:
        raise app.UsageError("--planning_weights: expected one or more numbers > 0")
    parts = [p for p in RETURN_PARTS if p in FLAGS.return_parts]
    if set(FLAGS.return_parts) - set(RETURN_PARTS) or not parts:
        raise app.UsageError(f"--return_parts={','.join(FLAGS.return_parts)}: expected some of "
                             f"{list(RETURN_PARTS)}")
    for i, name in enumerate(FLAGS.mechanisms):
        print(f"mechanisms: {i}/{len(FLAGS.mechanisms)} checking {name}", file=sys.stderr,
              flush=True)
        print(json.dumps(check(cfg, name, FLAGS.max_train_rows)), flush=True)
    for i, flag in enumerate(FLAGS.return_mechanisms):
        print(f"mechanisms: {i}/{len(FLAGS.return_mechanisms)} return check of {flag} "
              f"({', '.join(parts)})", file=sys.stderr, flush=True)
        print(json.dumps(return_check(cfg, flag, weights, parts)), flush=True)


if __name__ == "__main__":
    define_flags()
    app.run(main)
