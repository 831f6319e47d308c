"""Loading a big table: parse, preprocess and split once, then a second worker's load.

Generates a CSV of N rows (default 1,000,000) with 20 feature columns, 5 of them
text (6 to 40 categories, a long tail pooled into <other>), 2% of the cells empty,
and a 3-class target. Each measurement runs in a fresh process, one after another:

- nnsearch, first load: ``cache.cached_data`` with an empty cache folder (what
  ``create`` does before any worker starts): parse, fit the preprocessing on the
  training split, transform all three splits to float32, write the cache;
- nnsearch, second worker: ``cache.cached_data`` again, now a hit (the arrays are
  mapped; ``+ touch`` also reads every byte once, as training will);
- peer: pandas' ``read_csv``, then scikit-learn's ``ColumnTransformer``
  (SimpleImputer with indicators + StandardScaler, OneHotEncoder with
  ``min_frequency``/``max_categories``) fitted on the same training rows and
  applied to all three splits, as float32.

Peak memory is the process's peak resident set above its resident set just
before loading (the imports are not the loading's); the final arrays' size is
the float32 matrices of the three splits. Medians over --repeats runs.

Run: python bench/data.py [--rows 1000000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

TEXT_CATEGORIES = (6, 12, 20, 30, 40)


def generate(path: Path, rows: int, seed: int = 0) -> None:
    """The table, written in blocks so the generator itself stays small."""
    rng = np.random.default_rng(seed)
    numeric = [f"n{i}" for i in range(15)]
    text = [f"t{i}" for i in range(5)]
    with path.open("w") as fh:
        fh.write(",".join([*numeric, *text, "label"]) + "\n")
        block = 100_000
        for start in range(0, rows, block):
            n = min(block, rows - start)
            nums = rng.normal(size=(n, 15)).round(4).astype(str)
            texts = np.stack([np.char.add("c", rng.zipf(1.6, n).clip(1, k).astype(str))
                              for k in TEXT_CATEGORIES], axis=1)
            cells = np.concatenate([nums, texts], axis=1)
            cells[rng.random(cells.shape) < 0.02] = ""
            label = (nums[:, 0].astype(float) > 0).astype(int) + (texts[:, 0] == "c1")
            lines = [",".join(row) + f",{y}" for row, y in zip(cells.tolist(), label.tolist(),
                                                               strict=True)]
            fh.write("\n".join(lines) + "\n")


CHILD = r"""
import json, os, sys, time
from pathlib import Path
import numpy as np

def status_mb(key):  # VmHWM, not ru_maxrss: that one keeps the parent's size across exec
    for line in open("/proc/self/status"):
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024

which, csv, cache = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
from nnsearch.search.cache import cached_data
from nnsearch.search.data import DataSpec, split_rows
import pandas, sklearn.compose, sklearn.preprocessing, sklearn.impute, sklearn.pipeline
spec = DataSpec(str(csv), target="label")
before = status_mb("VmRSS")
t0 = time.perf_counter()
if which in ("first", "second", "touch"):
    data = cached_data(spec, None, cache)
    if which == "touch":
        total = sum(float(np.asarray(getattr(data, a)).sum()) for a in
                    ("X_train", "X_val", "X_test"))
    arrays = [data.X_train, data.X_val, data.X_test]
else:
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler
    frame = pandas.read_csv(csv)
    y = frame.pop("label").to_numpy()
    train, val, test = split_rows(spec, len(frame), y)
    text = [c for c in frame.columns if c.startswith("t")]
    numeric = [c for c in frame.columns if c.startswith("n")]
    ct = ColumnTransformer([
        ("num", make_pipeline(SimpleImputer(strategy="median", add_indicator=True),
                              StandardScaler()), numeric),
        ("text", make_pipeline(SimpleImputer(strategy="constant", fill_value="<missing>"),
                               OneHotEncoder(min_frequency=5, max_categories=31,
                                             handle_unknown="infrequent_if_exist",
                                             sparse_output=False)), text),
    ])
    ct.fit(frame.iloc[train])
    arrays = [ct.transform(frame.iloc[rows]).astype(np.float32) for rows in (train, val, test)]
seconds = time.perf_counter() - t0
peak = status_mb("VmHWM")
final = sum(a.shape[0] * a.shape[1] * 4 for a in arrays) / 2**20
print(json.dumps({"seconds": seconds, "peak_mb": peak - before, "final_mb": final,
                  "inputs": arrays[0].shape[1]}))
"""


def measure(which: str, csv: Path, cache: Path) -> dict[str, float]:
    out = subprocess.run([sys.executable, "-c", CHILD, which, str(csv), str(cache)],
                         capture_output=True, text=True, check=True,
                         env={"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
                              "MKL_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"})
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-peer", action="store_true", help="skip scikit-learn's run")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        csv = Path(tmp) / "big.csv"
        t0 = time.perf_counter()
        generate(csv, args.rows)
        print(f"generated {args.rows:,} rows x 20 columns ({csv.stat().st_size / 2**20:.0f} MB)"
              f" in {time.perf_counter() - t0:.1f} s", flush=True)
        runs: dict[str, list[dict[str, float]]] = {}
        kinds = ["first", "second", "touch"] + ([] if args.no_peer else ["peer"])
        for r in range(args.repeats):
            cache = Path(tmp) / f"cache{r}"
            for which in kinds:
                runs.setdefault(which, []).append(measure(which, csv, cache))
    med = {k: {f: statistics.median(run[f] for run in v) for f in v[0]} for k, v in runs.items()}
    final = med["first"]["final_mb"]
    labels = {"first": "nnsearch: parse + preprocess + split (first load)",
              "second": "nnsearch: second worker (cache hit, mapped)",
              "touch": "nnsearch: second worker + every byte read once",
              "peer": "pandas + scikit-learn ColumnTransformer"}
    print(f"\n{'':50} {'seconds':>8} {'vs peer':>8} {'peak MB':>8} {'x final':>8} {'inputs':>7}")
    for which, m in med.items():
        ratio = m["seconds"] / med["peer"]["seconds"] if "peer" in med else float("nan")
        print(f"{labels[which]:50} {m['seconds']:8.2f} {ratio:8.2f} {m['peak_mb']:8.0f} "
              f"{m['peak_mb'] / final:8.2f} {int(m['inputs']):7d}")
    print(f"\nfinal float32 arrays: {final:.0f} MB. Goals: first load <= 10 s, its peak <= 3x "
          "final, a second worker <= 1 s.")
    ok = (med["first"]["seconds"] <= 10 and med["first"]["peak_mb"] <= 3 * final
          and med["second"]["seconds"] <= 1)
    print("goals met" if ok else "goals NOT met")


if __name__ == "__main__":
    main()
