"""Experiment tables: per-setting statistics over seeds, written as Markdown, CSV and PNG.

Every figure is a mean over seeds with its sample standard deviation (n - 1); differences and
RelaImpr are taken per seed against the same seed's reference run (paired), then averaged.
Files are written to NAME.tmp and renamed, so a table is never left half-written.
"""
from __future__ import annotations

import csv
import dataclasses
import io
import os

import numpy as np

from data.stats import rela_impr


@dataclasses.dataclass
class Stat:
    mean: float
    std: float  # sample standard deviation over seeds; nan with one seed
    n: int

    @classmethod
    def of(cls, values) -> Stat:
        v = np.asarray(values, np.float64)
        return cls(float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else float("nan"), len(v))

    def text(self, digits: int = 4, percent: bool = False) -> str:
        scale, unit = (100.0, "%") if percent else (1.0, "")
        if self.n == 1:
            return f"{self.mean * scale:.{digits}f}{unit}"
        return f"{self.mean * scale:.{digits}f} ± {self.std * scale:.{digits}f}{unit}"


def paired(results: dict, name: str, reference: str, seeds, fn) -> Stat | None:
    """fn(run, reference run) over the seeds where both exist; None where none do."""
    values = [fn(results[name, s], results[reference, s]) for s in seeds
              if (name, s) in results and (reference, s) in results]
    return Stat.of(values) if values else None


def metric(results: dict, name: str, seeds, key: str = "auc") -> Stat:
    return Stat.of([results[name, s][key] for s in seeds if (name, s) in results])


def auc_gain(run: dict, ref: dict) -> float:
    return run["auc"] - ref["auc"]


def rela_impr_vs(run: dict, base: dict) -> float:
    return rela_impr(run["auc"], base["auc"])


def _replace(path: str, text: str | bytes) -> None:
    tmp = path + ".tmp"
    mode = "wb" if isinstance(text, bytes) else "w"
    with open(tmp, mode) as f:
        f.write(text)
    os.replace(tmp, path)


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows]) + "\n"


def write_markdown(path: str, title: str, notes: list[str], header, rows) -> None:
    _replace(path, f"# {title}\n\n" + "".join(f"{n}\n" for n in notes) + "\n"
             + markdown_table(header, rows))


def write_csv(path: str, header: list[str], rows: list[list]) -> None:
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(header)
    w.writerows(rows)
    _replace(path, out.getvalue())


def write_bar_chart(path: str, title: str, labels: list[str], stats: list[Stat],
                    xlabel: str, reference: tuple[str, float] | None = None) -> bool:
    """Horizontal bars (mean, error bar = std) with an optional reference line; False (and
    nothing written) when matplotlib is not installed."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, ax = plt.subplots(figsize=(7, 0.5 * len(labels) + 1.5))
    y = np.arange(len(labels))[::-1]
    means = np.array([s.mean for s in stats])
    errs = np.nan_to_num([s.std for s in stats])
    ax.barh(y, means, xerr=errs, color="tab:blue", alpha=0.8, capsize=3)
    ax.set_yticks(y, labels)
    lows = [means.min() - errs.max()] + ([reference[1]] if reference else [])
    span = max(means.max() + errs.max() - min(lows), 1e-3)
    ax.set_xlim(min(lows) - 0.3 * span, means.max() + errs.max() + 0.2 * span)
    if reference:
        ax.axvline(reference[1], color="tab:red", linestyle="--", label=reference[0])
        ax.legend(loc="lower right")
    ax.set_xlabel(xlabel)
    ax.set_title(title)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120)
    plt.close(fig)
    _replace(path, buf.getvalue())
    return True
