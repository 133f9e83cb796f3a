"""A stand-in trainer for the grid tests: writes eval.json from its flags in milliseconds.

    python -m tests.experiments.fake_trainer --auc=0.7 [--fail] [--fingerprint=F]
        [--count_file=PATH] --seed=S --model_dir=DIR
eval.json's auc is --auc + seed / 1000, so each run's result is known to the test. With
FAKE_TRAINER_SLEEP=S in its environment it first writes its pid to MODEL_DIR/pid and sleeps S
seconds (a trainer still running when its grid is killed).
"""
import argparse
import json
import os
import sys
import time

parser = argparse.ArgumentParser()
parser.add_argument("--seed", type=int, required=True)
parser.add_argument("--model_dir", required=True)
parser.add_argument("--auc", type=float, default=0.7)
parser.add_argument("--fail", action="store_true")
parser.add_argument("--fingerprint", default="f00d")
parser.add_argument("--count_file")
args = parser.parse_args()
if args.count_file:
    with open(args.count_file, "a") as f:
        f.write(f"{args.model_dir}\n")
print(f"fake trainer, seed {args.seed}")
if os.environ.get("FAKE_TRAINER_SLEEP"):
    with open(os.path.join(args.model_dir, "pid"), "w") as f:
        f.write(str(os.getpid()))
    time.sleep(float(os.environ["FAKE_TRAINER_SLEEP"]))
if args.fail:
    print("boom: a bad flag", file=sys.stderr)
    sys.exit(3)
with open(os.path.join(args.model_dir, "eval.json"), "w") as f:
    json.dump({"auc": args.auc + args.seed / 1000, "data_fingerprint": args.fingerprint}, f)
