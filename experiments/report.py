"""Experiment tables: per-setting statistics over seeds, written as Markdown, CSV and PNG.

Every figure is a mean over seeds with its sample standard deviation (n - 1); differences and
RelaImpr are taken per seed against the same seed's reference run (paired), then averaged.
Files are written to a temporary file and renamed, so a table is never left half-written.
Every Markdown table ends its header with a provenance line (`provenance`): the commit, the
command that wrote it and the tool's wall time, so a results file says where it came from.
"""
from __future__ import annotations

import csv
import dataclasses
import datetime
import io
import os
import shlex
import subprocess
import sys
import time

import numpy as np

from data.stats import headroom_share, rela_impr
from data.files import write_atomic

_STARTED = time.monotonic()      # the tool's start, near enough: every tool imports this early
_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def code_commit(root: str = _ROOT) -> str:
    """The repository's commit, with "+uncommitted" when tracked files differ from it, or
    "unknown" outside a git checkout."""
    try:
        head = subprocess.run(["git", "-C", root, "rev-parse", "--short=12", "HEAD"],
                              capture_output=True, text=True, timeout=30, check=True).stdout
        dirty = subprocess.run(["git", "-C", root, "status", "--porcelain",
                                "--untracked-files=no"], capture_output=True, text=True,
                               timeout=30, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return head.strip() + ("+uncommitted" if dirty.strip() else "")


def command_line(argv=None) -> str:
    """The command as a reader would type it: `python -m MODULE ARGS` for a module run."""
    argv = list(sys.argv if argv is None else argv)
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    head = (["python", "-m", spec.name] if spec is not None and spec.name
            else ["python", argv[0]] if argv else ["python"])
    return shlex.join(head + argv[1:])


def provenance(seconds: float | None = None, argv=None) -> str:
    """`Written by: commit C, `COMMAND`, wall time, date` (seconds: the tool's own count, or
    the time since this module was imported)."""
    spent = time.monotonic() - _STARTED if seconds is None else seconds
    when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return (f"Written by: commit `{code_commit()}`, `{command_line(argv)}`, wall time "
            f"{spent / 60:.1f} min, {when}.")


@dataclasses.dataclass
class Stat:
    mean: float
    std: float  # sample standard deviation over seeds; nan with one seed
    n: int
    values: tuple[float, ...]  # one per seed

    @classmethod
    def of(cls, values) -> Stat:
        v = np.asarray(values, np.float64)
        std = float(v.std(ddof=1)) if len(v) > 1 else float("nan")
        return cls(float(v.mean()), std, len(v), tuple(float(x) for x in v))

    def text(self, digits: int = 4, percent: bool = False) -> str:
        scale, unit = (100.0, "%") if percent else (1.0, "")
        mean = round(self.mean * scale, digits) + 0.0  # no "-0.0" for a tiny negative mean
        if self.n == 1:
            return f"{mean:.{digits}f}{unit}"
        return f"{mean:.{digits}f} ± {self.std * scale:.{digits}f}{unit}"


def paired(results: dict, name: str, reference: str, seeds, fn) -> Stat | None:
    """fn(run, reference run) over the seeds where both exist and fn is not None; None where
    there are none."""
    values = [fn(results[name, s], results[reference, s]) for s in seeds
              if (name, s) in results and (reference, s) in results]
    values = [v for v in values if v is not None]
    return Stat.of(values) if values else None


def metric(results: dict, name: str, seeds, key: str = "auc") -> Stat:
    return Stat.of([results[name, s][key] for s in seeds if (name, s) in results])


def auc_gain(run: dict, ref: dict) -> float:
    return run["auc"] - ref["auc"]


def rela_impr_vs(run: dict, base: dict) -> float:
    return rela_impr(run["auc"], base["auc"])


def headroom_vs(run: dict, base: dict) -> float | None:
    """The run's share of the (learnable ceiling - LR) headroom (data.stats.headroom_share),
    with the ceiling its eval.json records."""
    return headroom_share(run["auc"], base["auc"], run.get("learnable_ceiling_auc"))


def ceiling_rows(results: dict, seeds, columns: int) -> list[list[str]]:
    """Markdown rows for the test split's oracle and fair ceilings (data.ceilings) that the
    runs' eval.json record, padded to `columns` cells."""
    rows = []
    for key, label in (("oracle_auc", "oracle (true click probabilities)"),
                       ("oracle_auc_noise_free", "oracle without eps_ui (noise-free)"),
                       ("learnable_ceiling_auc",
                        "learnable ceiling (true formula, users estimated from earlier days)")):
        values = {results[k][key] for k in results
                  if k[1] in seeds and results[k].get(key) is not None}
        if values:
            rows.append([label, f"{max(values):.4f}"] + [""] * (columns - 2))
    return rows


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows]) + "\n"


def write_markdown(path: str, title: str, notes: list[str], header, rows,
                   seconds: float | None = None) -> None:
    """The table under its title, its notes and the provenance line (`provenance`)."""
    notes = list(notes) + [provenance(seconds)]
    write_atomic(path, f"# {title}\n\n" + "".join(f"{n}\n" for n in notes) + "\n"
                 + markdown_table(header, rows))


def write_csv(path: str, header: list[str], rows: list[list]) -> None:
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(header)
    w.writerows(rows)
    write_atomic(path, out.getvalue())


def print_written(output_dir: str, files: list[str], png: str, drawn: bool) -> None:
    """The driver's last line: the files written, and why the PNG is missing when it is."""
    print(f"wrote {output_dir}/{', '.join(files)}"
          + (f", {png}" if drawn else f" (no {png}: pip install matplotlib)"), flush=True)


def pyplot():
    """matplotlib.pyplot without a display, or None when matplotlib is not installed."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    return plt


def save_png(plt, fig, path: str) -> None:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120)
    plt.close(fig)
    write_atomic(path, buf.getvalue())


def write_interval_chart(path: str, title: str, labels: list[str], stats: list[Stat],
                         xlabel: str, reference: tuple[str, float] | None = None,
                         span: float = 0.05) -> list[str] | None:
    """One row per label: each seed's value (grey dots) and mean ± std (black), with an optional
    reference line; no bars, whose length would mean nothing on a cut axis. Rows whose mean is
    more than `span` from the median mean are written as text at the edge, so that one collapsed
    setting does not flatten the others. -> the labels written off scale, or None (and nothing
    written) when matplotlib is not installed."""
    plt = pyplot()
    if plt is None:
        return None
    means = np.array([s.mean for s in stats])
    errs = np.nan_to_num([s.std for s in stats])
    centre = float(np.median(means))
    inside = np.abs(means - centre) <= span
    ends = [(means - errs)[inside].min(), (means + errs)[inside].max()]
    if reference is not None and abs(reference[1] - centre) <= span:
        ends.append(reference[1])
    pad = max(0.15 * (max(ends) - min(ends)), 5e-4)
    lo, hi = min(ends) - pad, max(ends) + pad
    fig, ax = plt.subplots(figsize=(7, 0.5 * len(labels) + 1.5))
    y = np.arange(len(labels))[::-1]
    for row, s in zip(y, stats):
        ax.plot(s.values, [row] * s.n, "o", color="0.6", markersize=4)
    ax.errorbar(means, y, xerr=errs, fmt="D", color="black", capsize=3, label="mean ± std")
    off = []
    for row, s, label, ok in zip(y, stats, labels, inside):
        if not ok:
            off.append(label)
            left = s.mean < centre
            ax.annotate(f"{'< ' if left else ''}{s.text()}{'' if left else ' >'} (off scale)",
                        xy=(lo if left else hi, row), ha="left" if left else "right",
                        va="center", fontsize="small", color="tab:purple")
    ax.set_xlim(lo, hi)
    ax.set_yticks(y, labels)
    if reference:
        ax.axvline(reference[1], color="tab:red", linestyle="--", label=reference[0])
    ax.legend(loc="best", fontsize="small")
    ax.grid(axis="x", alpha=0.3)
    ax.set_xlabel(xlabel)
    ax.set_title(title)
    fig.tight_layout()
    save_png(plt, fig, path)
    return off


@dataclasses.dataclass
class Panel:
    """One panel of a sweep chart: a statistic at each value of one parameter."""

    xlabel: str
    xs: list[float]
    stats: list[Stat]
    log_x: bool = False
    mark: tuple[str, float] | None = None  # (label, x) drawn as a dotted vertical line


def write_sweep_chart(path: str, title: str, panels: list[Panel], ylabel: str) -> bool:
    """Panels side by side: each seed's value (grey dots) and the mean ± std (black line) at each
    x. -> whether it was written (False: matplotlib is not installed)."""
    plt = pyplot()
    if plt is None:
        return False
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 3.8), squeeze=False)
    for ax, p in zip(axes[0], panels):
        for x, s in zip(p.xs, p.stats):
            ax.plot([x] * s.n, s.values, "o", color="0.6", markersize=4)
        ax.errorbar(p.xs, [s.mean for s in p.stats],
                    yerr=np.nan_to_num([s.std for s in p.stats]), fmt="-D", color="black",
                    capsize=3, label="mean ± std")
        if p.mark:
            ax.axvline(p.mark[1], color="tab:red", linestyle=":", label=p.mark[0])
        if p.log_x:
            ax.set_xscale("log")
        ax.set_xticks(p.xs, [f"{x:g}" for x in p.xs])
        ax.minorticks_off()
        ax.set_xlabel(p.xlabel)
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        ax.legend(loc="best", fontsize="small")
    fig.suptitle(title)
    fig.tight_layout()
    save_png(plt, fig, path)
    return True
