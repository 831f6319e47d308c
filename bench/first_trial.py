"""One configuration trained the user's way against the MLP defaults, on a real table.

For each outer split of ``bench/tables.py``, the study ``nnsearch init`` writes is
restricted to its first enqueued trial (scikit-learn's MLP defaults: one layer of 100
ReLU units, Adam 1e-3, L2 1e-4; ``[selection] ensemble = 1``), edited as ``--edit``
says, run for that one trial, then ``train`` and ``predict`` as a user would; (b), the
MLP defaults in their pipeline, is fitted on the same rows. It separates what the
search picks from how a picked configuration is trained (issue #24).

Run: python bench/first_trial.py --table hitters [--seeds 0,1,2,3,4]
     [--edit 'PATTERN=>REPLACEMENT;;...'] (regular expressions on the study file's lines)
e.g. --edit '^epochs = .*$=>epochs = 200;;^patience = .*$=>patience = "none"'
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import tables as T


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--table", default="hitters", choices=sorted(T.TABLES))
    parser.add_argument("--seeds", default="0,1,2,3,4", help="outer split seeds")
    parser.add_argument("--edit", default="", help="PATTERN=>REPLACEMENT;;... on the study")
    args = parser.parse_args()
    table = T.TABLES[args.table]
    frame = table.load()
    ours, peer = [], []
    for seed in map(int, args.seeds.split(",")):
        split = T.outer_split(frame, table, seed)
        folder = Path(tempfile.mkdtemp(prefix="first-trial-"))
        split.train.to_csv(folder / "train.csv", index=False)
        split.test.drop(columns=[table.target]).to_csv(folder / "test.csv", index=False)
        res = T._cli(["-q", "init", "train.csv", "--target", table.target, "-o", "train.toml"],
                     folder)
        if res.returncode:
            print(f"init failed: {res.stderr}")
            return 1
        text = (folder / "train.toml").read_text().replace(
            "[budget]", "[selection]\nensemble = 1\n\n[budget]")
        for rule in filter(None, args.edit.split(";;")):
            pattern, replacement = rule.split("=>")
            text, n = re.subn(pattern, replacement, text, flags=re.M)
            if not n:
                print(f"--edit: {pattern!r} matches no line of the study")
                return 2
        (folder / "train.toml").write_text(text)
        res = T._cli(["-q", "run", "train.toml", "--workers", "1", "--trials", "1"], folder)
        if res.returncode:
            print(f"run failed: {res.stderr}")
            return 1
        out = T.train_and_predict(split, table, folder, {}, argparse.Namespace(train_args=""))
        X, y, X_test = T.features(split, table, out.get("drop", []))
        b = T.run_default("b", X, y, X_test, split.test[table.target], table.task)
        ours.append(out["test"])
        peer.append(b["test"])
        print(f"split {seed}: nnsearch {out['test']:.4g}  (b) {b['test']:.4g}", flush=True)
    wins = sum(T.better(table.task, o, p) > 0 for o, p in zip(ours, peer, strict=True))
    print(f"{args.table}: nnsearch {np.mean(ours):.4g} ± {np.std(ours, ddof=1):.3g}, "
          f"(b) MLP defaults {np.mean(peer):.4g} ± {np.std(peer, ddof=1):.3g}; "
          f"nnsearch better on {wins} of {len(ours)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
