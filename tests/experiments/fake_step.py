"""A stand-in for a reproduce step: writes --out, prints a JSON line, or fails.

    python -m tests.experiments.fake_step --out=PATH [--fail_while=PATH] [--skip_output]
It appends one line to PATH.count (how often it ran), exits 3 while --fail_while exists, and
writes nothing with --skip_output (a tool that exits 0 without its file).
"""
import argparse
import os
import sys

parser = argparse.ArgumentParser()
parser.add_argument("--out", required=True)
parser.add_argument("--fail_while", default="")
parser.add_argument("--skip_output", action="store_true")
args = parser.parse_args()
os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
with open(args.out + ".count", "a") as f:
    f.write("ran\n")
print("progress on stderr", file=sys.stderr)
if args.fail_while and os.path.exists(args.fail_while):
    sys.exit(3)
if not args.skip_output:
    with open(args.out, "w") as f:
        f.write("table\n")
print('{"name": "x", "value": 1}')
