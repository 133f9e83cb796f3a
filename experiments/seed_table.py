"""A table of eval.json figures over seeds: one column per group of runs, mean ± sample std and
the per-seed values, as in docs/hrl_rec_actions.md.

    python -m experiments.seed_table --output=results/hrl_rec_actions/offline_seeds.md \
        --column="HRL-Rec (quickstart)=runs/ab_test21b/hrl_rec__{0,1,2}" \
        --column="LR=runs/exp/lr_{0,1,2}" --keys=auc,auc_cosine_by_slot

A column is LABEL=DIR[;DIR...] with `{a,b,c}` expanded; a run without a key leaves its cell
empty; `valid_auc` also reads baselines.train's nested `valid.auc`, and `auc_cosine_by_slot`
falls back to baselines.train's `auc_by_slot`.
"""
from __future__ import annotations

import json
import os
import re

from absl import app, flags

from data.files import write_atomic
from experiments.report import Stat, markdown_table, provenance

FLAGS = flags.FLAGS
FALLBACK = {"auc_cosine_by_slot": "auc_by_slot", "auc_click_by_slot": "auc_by_slot"}


def expand(pattern: str) -> list[str]:
    """'a_{0,1}' -> ['a_0', 'a_1'] (one brace group at most)."""
    m = re.search(r"\{([^{}]*)\}", pattern)
    if not m:
        return [pattern]
    return [pattern[:m.start()] + part + pattern[m.end():] for part in m.group(1).split(",")]


def value(run: dict, key: str):
    if key == "valid_auc" and key not in run:
        return run.get("valid", {}).get("auc")
    return run[key] if key in run else run.get(FALLBACK.get(key, ""))


def cell(runs: list[dict], key: str) -> str:
    values = [value(r, key) for r in runs]
    if any(v is None for v in values) or not values:
        return ""
    per_seed = " / ".join(f"{v:.4f}" for v in values)
    return f"{Stat.of(values).text()} ({per_seed})"


def table(columns: list[tuple[str, list[dict]]], keys: list[str]) -> str:
    header = ["metric"] + [label for label, _ in columns]
    rows = [[key] + [cell(runs, key) for _, runs in columns] for key in keys]
    return markdown_table(header, rows)


def parse_column(text: str) -> tuple[str, list[str]]:
    if "=" not in text:
        raise ValueError(f"--column={text!r}: expected LABEL=DIR[;DIR...]")
    label, dirs = text.split("=", 1)
    return label, [d for part in dirs.split(";") for d in expand(part)]


def load(directory: str) -> dict:
    path = os.path.join(directory, "eval.json")
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path} not found: run that job first")
    with open(path) as f:
        return json.load(f)


def main(argv):
    del argv
    try:
        columns = [parse_column(c) for c in FLAGS.column]
        loaded = [(label, [load(d) for d in dirs]) for label, dirs in columns]
    except (ValueError, FileNotFoundError) as e:
        raise app.UsageError(str(e)) from None
    text = table(loaded, FLAGS.keys) + "\n" + provenance() + "\n"
    if FLAGS.output:
        write_atomic(FLAGS.output, text)
    print(text, end="")


if __name__ == "__main__":
    flags.DEFINE_multi_string("column", [], "LABEL=DIR (with one {a,b,...} group) or "
                              "LABEL=DIR;DIR; one per column.")
    flags.DEFINE_list("keys", ["valid_auc", "auc", "auc_cosine", "auc_cosine_by_slot",
                               "auc_click_by_slot", "rank_auc_high", "action_alignment_low",
                               "action_alignment_high", "channel_hit_rate",
                               "channel_hit_rate_prior", "auc_q_item",
                               "item_cosine_within_channel"], "eval.json keys, one row each.")
    flags.DEFINE_string("output", "", "Markdown file to write (also printed).")
    app.run(main)
