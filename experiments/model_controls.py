"""Model-level positive controls (issue 22): does removing HRL-Rec's component cost it the
mechanism that component models, and nothing when the mechanism is off?

    python -m experiments.model_controls --flagfile=configs/model_controls.flags
    python -m experiments.model_controls --flagfile=configs/model_controls.flags --dry_run

Each control pairs a component with the simulator mechanism it is for:

    gru             the GRU state encoder (vs average pooling)      satiation_weight
    self_attention  the field self-attention (vs fully connected)   triple_weight

HRL-Rec with and without the component (experiments.ablation's rows, the same flags) trains on
the claims preset ("on", --data_flagfile) and on the same preset with the mechanism's weight at
0 ("off"), over the same seeds. Per seed, the paired difference of test AUC

    d_s = AUC(HRL-Rec, seed s) - AUC(without the component, seed s)

gives mean(d), its standard error se = std(d) / sqrt(n), and t = mean(d) / se. The control
passes when the effect shows with the mechanism on (t > --min_t, 3 by default) and not with it
off (t <= --min_t). Whichever way it comes out is reported. (gamma > 0 and the channel selector
act on future sessions and on the channel mix, which an offline AUC cannot show; their controls
need the online A/B test, experiments.ab_test, on the same pair of datasets.)

Datasets: --data_root/on and --data_root/<mechanism>_off, each generated on first use from a
flagfile written beside it (the preset's flagfile, the --data_flag overrides, and the weight at
0), so the size can be cut for a quick variant (--data_flag=--n_users=1000). Runs land in
--runs_dir/<dataset>/<setting>__<seed> (a rerun reuses finished runs and resumes cut-off ones,
experiments/grid.py); the table in --output_dir as model_controls.md and model_controls.csv.
"""
from __future__ import annotations

import dataclasses
import math
import os
import time

from absl import app, flags

from data.files import write_atomic
from experiments import ablation, grid, report

FLAGS = flags.FLAGS


@dataclasses.dataclass(frozen=True)
class Control:
    """A component of HRL-Rec (its ablation row) and the mechanism (a SimConfig flag) it models."""
    name: str
    component: str      # row label
    setting: str        # experiments.ablation's setting without the component
    mechanism: str      # the data flag whose weight is set to 0 for the "off" dataset


CONTROLS = (Control("gru", "GRU state encoder", "no_gru", "satiation_weight"),
            Control("self_attention", "field self-attention", "no_self_attention",
                    "triple_weight"))


def define_flags(flag_values=flags.FLAGS) -> None:
    fv = {"flag_values": flag_values}
    flags.DEFINE_list("controls", [c.name for c in CONTROLS], "Controls to run.", **fv)
    flags.DEFINE_string("data_flagfile", "configs/sim_claims.flags",
                        "The preset with every mechanism on.", **fv)
    flags.DEFINE_multi_string("data_flag", [], "A flag added to every dataset's generation "
                              "(repeatable), e.g. --data_flag=--n_users=1000 for a quick "
                              "variant.", **fv)
    flags.DEFINE_string("data_root", "datasets/model_controls",
                        "Where the on and <mechanism>_off datasets go.", **fv)
    flags.DEFINE_string("hrl_flagfile", "configs/quickstart.flags",
                        "HRL-Rec's flagfile for every run.", **fv)
    flags.DEFINE_multi_string("hrl_flag", [], "A flag added to every HRL-Rec run (repeatable).",
                              **fv)
    flags.DEFINE_list("seeds", ["0", "1", "2", "3", "4"], "Seeds; every run uses each of them.",
                      **fv)
    flags.DEFINE_float("min_t", 3.0, "The effect shows when mean(d) / se(d) exceeds this.", **fv)
    flags.DEFINE_string("runs_dir", "runs/model_controls", "Where each run's folder goes.", **fv)
    flags.DEFINE_string("output_dir", "results/model_controls", "Where the table files go.",
                        **fv)
    flags.DEFINE_boolean("dry_run", False, "Print the datasets' flags and the runs' commands.",
                         **fv)


def select(names: list[str]) -> list[Control]:
    known = {c.name: c for c in CONTROLS}
    unknown = [n for n in names if n not in known]
    if unknown or not names:
        raise ValueError(f"--controls={','.join(names)}: expected some of {list(known)}")
    return [known[n] for n in names]


def dataset_flags(preset: str, extra: list[str], mechanism: str | None) -> str:
    """The text of a dataset's flagfile: the preset, the overrides, the mechanism at 0."""
    lines = [f"--flagfile={preset}", *extra] + ([f"--{mechanism}=0"] if mechanism else [])
    return "\n".join(lines) + "\n"


def datasets(controls: list[Control]) -> list[tuple[str, str | None]]:
    """[(dataset name, mechanism at 0 or None)]: "on" first, then one per control."""
    return [("on", None)] + [(f"{c.mechanism}_off", c.mechanism) for c in controls]


def write_flagfile(data_root: str, name: str, text: str) -> str:
    """--data_root/<name>.flags holding `text`; an existing file must hold the same (a dataset
    generated from other flags is never silently reused)."""
    path = os.path.join(data_root, f"{name}.flags")
    if os.path.exists(path):
        with open(path) as f:
            if f.read() != text:
                raise SystemExit(f"{path} holds other flags than this command's; delete it and "
                                 f"{os.path.join(data_root, name)} or use another --data_root")
        return path
    os.makedirs(data_root, exist_ok=True)
    write_atomic(path, text)
    return path


def settings_for(names: list[str], data_dir: str, flagfile: str) -> list[grid.Setting]:
    """HRL-Rec and the chosen ablation rows on one dataset (LR is not needed here)."""
    rows = ablation.grid_settings(names, data_dir, flagfile, FLAGS.hrl_flagfile, FLAGS.hrl_flag,
                                  "configs/baselines.flags", [])
    return [s for s in rows if s.name != ablation.BASE]


def difference(results: dict, setting: str, seeds: list[int]) -> report.Stat | None:
    return report.paired(results, "hrl_rec", setting, seeds, report.auc_gain)


def t_value(stat: report.Stat | None) -> float | None:
    """mean / (std / sqrt(n)); None with fewer than 2 seeds, inf for a constant nonzero d."""
    if stat is None or stat.n < 2:
        return None
    se = stat.std / math.sqrt(stat.n)
    if se == 0:
        return math.copysign(math.inf, stat.mean) if stat.mean else 0.0
    return stat.mean / se


def verdict(t_on: float | None, t_off: float | None, min_t: float) -> str:
    if t_on is None or t_off is None:
        return "not enough seeds"
    if t_on > min_t and t_off <= min_t:
        return "passed"
    if t_on <= min_t:
        return "no effect with the mechanism on"
    return "an effect with the mechanism off too"


HEADER = ["component (mechanism)", "AUC with - without, mechanism on", "t on",
          "the same, mechanism off", "t off", "seeds", "verdict"]
CSV_HEADER = ["control", "component", "mechanism", "d_on_mean", "d_on_std", "t_on", "d_off_mean",
              "d_off_std", "t_off", "seeds", "verdict", "data_on", "data_off"]


def main(argv):
    del argv
    try:
        seeds = grid.parse_seeds(FLAGS.seeds)
        controls = select(FLAGS.controls)
    except ValueError as e:
        raise app.UsageError(str(e)) from None
    if not os.path.exists(FLAGS.data_flagfile):
        raise app.UsageError(f"--data_flagfile={FLAGS.data_flagfile} not found")
    plan = []   # (dataset name, data_dir, flagfile text, settings)
    for name, mechanism in datasets(controls):
        rows = [c.setting for c in controls if name in ("on", f"{c.mechanism}_off")]
        plan.append((name, os.path.join(FLAGS.data_root, name),
                     dataset_flags(FLAGS.data_flagfile, FLAGS.data_flag, mechanism),
                     ["hrl_rec", *rows]))
    if FLAGS.dry_run:
        for name, data_dir, text, rows in plan:
            print(f"# {data_dir}: " + " ".join(text.split()))
            grid.print_commands(settings_for(rows, data_dir, os.path.join(
                FLAGS.data_root, f"{name}.flags")), seeds, os.path.join(FLAGS.runs_dir, name))
        return
    start = time.monotonic()
    results, fingerprints = {}, {}
    for name, data_dir, text, rows in plan:
        flagfile = write_flagfile(FLAGS.data_root, name, text)
        got = grid.collect(settings_for(rows, data_dir, flagfile), seeds,
                           os.path.join(FLAGS.runs_dir, name), f"model controls ({name})",
                           data_dir, flagfile)
        results[name] = got
        fingerprints[name] = got["hrl_rec", seeds[0]].get("data_fingerprint")
    md, table = [], []
    for c in controls:
        off = f"{c.mechanism}_off"
        d_on = difference(results["on"], c.setting, seeds)
        d_off = difference(results[off], c.setting, seeds)
        t_on, t_off = t_value(d_on), t_value(d_off)
        call = verdict(t_on, t_off, FLAGS.min_t)
        fmt = lambda t: "" if t is None else f"{t:.1f}"   # noqa: E731
        md.append([f"{c.component} ({c.mechanism})", d_on.text() if d_on else "", fmt(t_on),
                   d_off.text() if d_off else "", fmt(t_off),
                   str(min(d_on.n if d_on else 0, d_off.n if d_off else 0)), call])
        table.append([c.name, c.component, c.mechanism,
                      *(x for d in (d_on,) for x in ((d.mean, d.std) if d else ("", ""))),
                      "" if t_on is None else t_on,
                      *(x for d in (d_off,) for x in ((d.mean, d.std) if d else ("", ""))),
                      "" if t_off is None else t_off, ",".join(map(str, seeds)), call,
                      fingerprints["on"], fingerprints[off]])
    notes = [f"Data: `{FLAGS.data_flagfile}` {' '.join(FLAGS.data_flag)} in `{FLAGS.data_root}` "
             "(fingerprints: " + ", ".join(f"{k} `{v}`" for k, v in fingerprints.items())
             + f"), test split. Seeds: {', '.join(map(str, seeds))}. HRL-Rec: "
             f"`{FLAGS.hrl_flagfile}` {' '.join(FLAGS.hrl_flag)}.",
             "d = test AUC of HRL-Rec minus the same seed's run without the component; mean ± "
             f"sample std over seeds; t = mean / (std / sqrt(n)); passed: t > {FLAGS.min_t:g} "
             "with the mechanism on and not with it off.",
             f"Runs: `{FLAGS.runs_dir}`."]
    os.makedirs(FLAGS.output_dir, exist_ok=True)
    path = os.path.join(FLAGS.output_dir, "model_controls")
    report.write_markdown(path + ".md", "Model-level positive controls (issue 22)", notes,
                          HEADER, md, seconds=time.monotonic() - start)
    report.write_csv(path + ".csv", CSV_HEADER, table)
    print(report.markdown_table(HEADER, md), flush=True)
    print(f"wrote {path}.md and {path}.csv", flush=True)


if __name__ == "__main__":
    define_flags()
    app.run(main)
