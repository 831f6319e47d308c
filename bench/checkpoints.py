"""What checkpoints cost (issue #28): the default study's trials trained with and without.

K trial configurations are sampled once from ``studies/digits.toml`` (a random sampler,
fixed seed) and each is trained as a worker trains it (``cross_validate``, the folds
side by side, one BLAS thread) three ways, round robin: without checkpoints, with the
default interval (``[artifacts] checkpoint_every``, 10 s) and with a save every second.
Each way must give the same value (checkpoints never change a result); the table gives
the training seconds, the median ratio against no checkpoints (the ways' order turns
with each configuration: the host drifts), the saves, the median save time, saving's
share of each trial's training (what the 2% bound is on), the file size, and how long
reading a checkpoint back takes.

Run: python bench/checkpoints.py [--trials 6] [--seed 123]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import optuna

from nnsearch.search.checkpoint import TrialCheckpoints, read
from nnsearch.search.data import load_data
from nnsearch.search.sections import CHECKPOINT_EVERY as EVERY
from nnsearch.search.space import build_configs, sample
from nnsearch.search.studyfile import load_study_file
from nnsearch.search.training import cross_validate

ROOT = Path(__file__).resolve().parents[1]


class Timed(TrialCheckpoints):
    """The worker's checkpoints, remembering each save's seconds."""

    def __init__(self, path: Path, every: float) -> None:
        super().__init__(path, {"bench": True}, every)
        self.times: list[float] = []

    def save(self, state):  # type: ignore[no-untyped-def]
        start = time.perf_counter()
        super().save(state)
        self.times.append(time.perf_counter() - start)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=6, help="trial configurations")
    parser.add_argument("--seed", type=int, default=123, help="the configurations' sampler")
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    spec = load_study_file(ROOT / "studies" / "digits.toml")
    data = load_data(spec.data, spec.base_dir)
    sampler = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=args.seed))
    ways = {"none": None, f"every {EVERY:g} s": EVERY, "every 1 s": 1.0}
    seconds: dict[str, list[float]] = {w: [] for w in ways}
    saves: dict[str, list[int]] = {w: [] for w in ways}
    save_times: dict[str, list[float]] = {w: [] for w in ways}
    shares: dict[str, list[float]] = {w: [] for w in ways}  # saving's share of the trial
    sizes, reads = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for k in range(args.trials):
            trial = sampler.ask()
            values = sample(spec.space, trial)
            sampler.tell(trial, 0.0)
            network, training = build_configs(values, data.n_features, data.n_outputs,
                                               data.task, seed=k)
            results = {}
            order = list(ways.items())
            order = order[k % len(order):] + order[:k % len(order)]  # (the host drifts)
            for way, every in order:
                path = Path(tmp) / f"{k}-{way.replace(' ', '_')}.npz"
                saver = Timed(path, every) if every is not None else None
                start = time.perf_counter()
                folds = cross_validate(network, training, data, spec.metric, together=True,
                                       checkpoints=saver)
                seconds[way].append(time.perf_counter() - start)
                results[way] = (folds.values, folds.stopped)
                if saver is not None:
                    saves[way].append(len(saver.times))
                    save_times[way] += saver.times
                    shares[way].append(sum(saver.times) / seconds[way][-1])
                    if path.is_file() and every == 1.0:
                        sizes.append(path.stat().st_size)
                        start = time.perf_counter()
                        read(path)
                        reads.append(time.perf_counter() - start)
            if len({repr(r) for r in results.values()}) != 1:
                print(f"config {k}: checkpoints changed the result: {results}")
                return 1
            print(f"config {k}: {values['widths']} {values['optimizer']}, "
                  + ", ".join(f"{w} {seconds[w][-1]:.1f} s" for w in ways), flush=True)
    base = seconds["none"]
    print(f"\n{args.trials} default-study trials (digits, 3 folds side by side), "
          "same value every way\n")
    print(f"{'checkpoints':<14}{'median s':>10}{'vs none':>10}{'saves/trial':>13}"
          f"{'median save s':>15}{'saving, % of trial: median, max':>34}")
    print("-" * 96)
    for way in ways:
        ratios = [s / b for s, b in zip(seconds[way], base, strict=True)]
        save = f"{statistics.median(save_times[way]):.3f}" if save_times[way] else "-"
        per = f"{statistics.mean(saves[way]):.1f}" if saves[way] else "-"
        share = (f"{100 * statistics.median(shares[way]):.2f}, {100 * max(shares[way]):.2f}"
                 if shares[way] else "-")
        print(f"{way:<14}{statistics.median(seconds[way]):>10.2f}"
              f"{statistics.median(ratios):>9.3f}x{per:>13}{save:>15}{share:>34}")
    worst = max((max(v) for v in shares.values() if v), default=0.0)
    print(f"goal (issue #28: saving <= 2% of the training time): "
          f"{'met' if worst <= 0.02 else 'NOT met'} (the most on one trial: "
          f"{100 * worst:.2f}%); 'vs none' is the wall time, as noisy as this host")
    if sizes:
        print(f"\na checkpoint file: median {statistics.median(sizes) / 1e6:.1f} MB "
              f"(largest {max(sizes) / 1e6:.1f} MB); read back in a median "
              f"{statistics.median(reads):.3f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
