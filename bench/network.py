"""Training throughput of model.Network against scikit-learn's MLPClassifier.

Same work on both sides: digits (60/20/20 stratified split, standardised on train,
float32), relu, adam, batch 64, glorot-uniform weights, no L2, 100 epochs, no
early stopping, BLAS pinned to one thread. Our time includes fit's validation
pass every epoch. The "floor" row runs only the matrix products (train and
validation) and the Adam step on our buffers: the best that equal work can do
here; "of floor" is a peer's speed against it, repeat by repeat (the peers are
timed round robin). Goal (issue #14): nnsearch at 90% of the floor or more.
The "bound" row adds to the floor, inlined, the steps no trainer of this network
can skip (shuffle, ReLUs and their derivatives, softmax, loss, the head's
gradient), each as the one NumPy call the network makes: how near NumPy's own
per-call cost lets any NumPy network come to the floor at this size.
Run: python bench/network.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import time
import warnings

import numpy as np
from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from nnsearch.model import Network, TrainConfig, fit

EPOCHS, BATCH = 100, 64
SHAPES = ([128, 128], [256, 256, 256])


def split() -> tuple[np.ndarray, ...]:
    X, y = load_digits(return_X_y=True)
    X_tmp, X_te, y_tmp, y_te = train_test_split(X, y, test_size=0.2, stratify=y, random_state=0)
    X_tr, X_va, y_tr, y_va = train_test_split(X_tmp, y_tmp, test_size=0.25, stratify=y_tmp,
                                              random_state=0)
    scaler = StandardScaler().fit(X_tr)
    return tuple(a for pair in ((scaler.transform(X_tr), y_tr), (scaler.transform(X_va), y_va),
                                (scaler.transform(X_te), y_te))
                 for a in (pair[0].astype(np.float32), pair[1]))


def flops_per_epoch(hidden: list[int], n_train: int, n_val: int) -> float:
    sizes = [64, *hidden, 10]
    macs = sum(a * b for a, b in itertools.pairwise(sizes))
    # forward + two backward products per layer on train; one forward on validation
    return 2 * macs * (3 * n_train + n_val)


def gemm_peak() -> float:
    a = np.random.default_rng(0).standard_normal((1024, 1024), dtype=np.float32)
    times = []
    for _ in range(7):
        t = time.perf_counter()
        a @ a
        times.append(time.perf_counter() - t)
    return 2 * 1024**3 / statistics.median(times) / 1e9


def time_ours(hidden: list[int], data: tuple[np.ndarray, ...], seed: int) -> tuple[float, float]:
    X_tr, y_tr, X_va, y_va, X_te, y_te = data
    net = Network([64, *hidden, 10], activation="relu", init="glorot_uniform", seed=seed)
    cfg = TrainConfig(epochs=EPOCHS, batch_size=BATCH, learning_rate=1e-3, optimizer="adam",
                      patience=None, seed=seed, log_every=0)
    t = time.perf_counter()
    fit(net, X_tr, y_tr, X_va, y_va, cfg)
    return time.perf_counter() - t, float(np.mean(net.predict(X_te) == y_te))


@np.errstate(all="ignore")  # its numbers are garbage (no loss, no activations): only time counts
def time_floor(hidden: list[int], data: tuple[np.ndarray, ...],
               seed: int) -> tuple[float, float]:
    """Only the matrix products (train and validation) and Adam: the ceiling for equal work."""
    from nnsearch.model._optimizers import Adam

    X_tr, _, X_va, _, _, _ = data
    net = Network([64, *hidden, 10], init="glorot_uniform", seed=seed)
    Xa, Xv = net.augment(X_tr), net.augment(X_va)
    opt = Adam(net.flat.size, net.dtype)
    blocks, grads, last = net.blocks, net.grad_blocks, len(net.blocks) - 1
    t = time.perf_counter()
    for _ in range(EPOCHS):
        for start in range(0, len(Xa), BATCH):
            xb = Xa[start:start + BATCH]
            ws = net._workspace(len(xb))
            a = xb
            for i in range(last):
                np.matmul(a, blocks[i], out=ws.outputs[i])
                a = ws.inputs[i]
            np.matmul(a, blocks[last], out=ws.outputs[last])
            delta = ws.outputs[last]
            for i in range(last, 0, -1):
                np.matmul(ws.inputs[i - 1].T, delta, out=grads[i])
                np.matmul(delta, blocks[i][:-1].T, out=ws.deltas[i - 1])
                delta = ws.deltas[i - 1]
            np.matmul(xb.T, delta, out=grads[0])
            opt.step(net.flat, net.grad, 1e-9)
        net.forward_augmented(Xv)
    return time.perf_counter() - t, float("nan")


@np.errstate(all="ignore")
def time_bound(hidden: list[int], data: tuple[np.ndarray, ...],
               seed: int) -> tuple[float, float]:
    """The floor plus each step a trainer of this network cannot skip, inlined.

    Per epoch a shuffle; per batch the hidden ReLUs and their derivatives, softmax,
    the loss and the head's gradient, each the NumPy call our network makes: what
    NumPy itself costs at this size, without our code's Python around it. A NumPy
    network passes this row's share of the floor only by noise, or by doing these
    steps in fewer or cheaper calls.
    """
    from nnsearch.model._functions import ACTIVATIONS, DERIVATIVES
    from nnsearch.model._optimizers import Adam

    X_tr, y_tr, X_va, _, _, _ = data
    net = Network([64, *hidden, 10], init="glorot_uniform", seed=seed)
    Xa, Xv, Y = net.augment(X_tr), net.augment(X_va), net.encode_targets(y_tr)
    opt = Adam(net.flat.size, net.dtype)
    relu, relu_grad, head = ACTIVATIONS["relu"], DERIVATIVES["relu"], net.head
    blocks, grads, last = net.blocks, net.grad_blocks, len(net.blocks) - 1
    rng = np.random.default_rng(seed)
    t = time.perf_counter()
    for _ in range(EPOCHS):
        perm = rng.permutation(len(Xa))
        Xs, Ys = Xa[perm], Y[perm]
        for start in range(0, len(Xa), BATCH):
            xb, yb = Xs[start:start + BATCH], Ys[start:start + BATCH]
            ws = net._workspace(len(xb))
            a = xb
            for i in range(last):
                np.matmul(a, blocks[i], out=ws.outputs[i])
                a = ws.inputs[i]
                relu(ws.outputs[i], a[:, :-1])
            P = ws.outputs[last]
            np.matmul(a, blocks[last], out=P)
            head.activate(P)
            head.loss(P, yb)
            P -= yb
            P *= 1.0 / len(xb)
            delta = P
            for i in range(last, 0, -1):
                np.matmul(ws.inputs[i - 1].T, delta, out=grads[i])
                np.matmul(delta, blocks[i][:-1].T, out=ws.deltas[i - 1])
                delta = ws.deltas[i - 1]
                relu_grad(ws.inputs[i - 1][:, :-1], delta)
            np.matmul(xb.T, delta, out=grads[0])
            opt.step(net.flat, net.grad, 1e-9)
        net.forward_augmented(Xv)
    return time.perf_counter() - t, float("nan")


def time_sklearn(hidden: list[int], data: tuple[np.ndarray, ...],
                 seed: int) -> tuple[float, float]:
    X_tr, y_tr, _, _, X_te, y_te = data
    clf = MLPClassifier(hidden_layer_sizes=hidden, activation="relu", solver="adam", alpha=0.0,
                        batch_size=BATCH, learning_rate_init=1e-3, max_iter=EPOCHS, tol=0.0,
                        n_iter_no_change=EPOCHS + 1, shuffle=True, random_state=seed)
    t = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(X_tr, y_tr)
    return time.perf_counter() - t, float(np.mean(clf.predict(X_te) == y_te))


def time_torch(hidden: list[int], data: tuple[np.ndarray, ...], seed: int) -> tuple[float, float]:
    import torch

    torch.set_num_threads(1)
    torch.manual_seed(seed)
    X_tr, y_tr, X_va, y_va, X_te, y_te = (torch.from_numpy(np.asarray(a)) for a in data)
    sizes = [64, *hidden, 10]
    layers: list[torch.nn.Module] = []
    for a, b in itertools.pairwise(sizes):
        layers += [torch.nn.Linear(a, b), torch.nn.ReLU()]
    model = torch.nn.Sequential(*layers[:-1])
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = torch.nn.CrossEntropyLoss()
    t = time.perf_counter()
    for _ in range(EPOCHS):
        perm = torch.randperm(len(X_tr))
        for i in range(0, len(X_tr), BATCH):
            idx = perm[i:i + BATCH]
            opt.zero_grad()
            loss_fn(model(X_tr[idx]), y_tr[idx]).backward()
            opt.step()
        with torch.no_grad():
            loss_fn(model(X_va), y_va)
    elapsed = time.perf_counter() - t
    with torch.no_grad():
        acc = float((model(X_te).argmax(1) == y_te).float().mean())
    return elapsed, acc


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="runs per row (median quoted)")
    args = parser.parse_args()
    data = split()
    n_train, n_val = len(data[0]), len(data[2])
    peers = {"nnsearch": time_ours, "sklearn MLPClassifier": time_sklearn,
             "floor: GEMMs + Adam only": time_floor,
             "bound: floor + NumPy steps": time_bound}
    try:
        import torch  # noqa: F401

        peers["torch"] = time_torch
    except ImportError:
        pass
    with threadpool_limits(1):
        peak = gemm_peak()
        print(f"single-thread float32 GEMM peak: {peak:.1f} GFLOP/s; train={n_train} "
              f"val={n_val}; {EPOCHS} epochs, batch {BATCH}; median of {args.repeats}\n")
        header = (f"{'shape':<16}{'peer':<26}{'samples/s':>12}{'vs sklearn':>12}"
                  f"{'of floor':>10}{'test acc':>10}{'GFLOP/s':>9}{'% peak':>8}")
        print(header)
        print("-" * len(header))
        floor_name = "floor: GEMMs + Adam only"
        for hidden in SHAPES:
            for run in peers.values():
                run(hidden, data, 0)  # warm-up
            times: dict[str, list[float]] = {name: [] for name in peers}
            accs: dict[str, list[float]] = {name: [] for name in peers}
            # Round robin: each repeat times every peer once, so the machine's drift
            # (a shared host's) falls on all of them alike; "of floor" is the median of
            # each repeat's floor time over the peer's.
            for seed in range(args.repeats):
                for name, run in peers.items():
                    elapsed, acc = run(hidden, data, seed)
                    times[name].append(elapsed)
                    accs[name].append(acc)
            base = statistics.median(times["sklearn MLPClassifier"])
            for name in peers:
                elapsed, acc = statistics.median(times[name]), statistics.mean(accs[name])
                of_floor = statistics.median(
                    f / t for f, t in zip(times[floor_name], times[name], strict=True))
                sps = n_train * EPOCHS / elapsed
                gflops = flops_per_epoch(hidden, n_train, n_val) * EPOCHS / elapsed / 1e9
                shown = "-" if acc != acc else f"{acc:.4f}"  # the floor trains nothing useful
                print(f"{hidden!s:<16}{name:<26}{sps:>12,.0f}{base / elapsed:>11.2f}x"
                      f"{100 * of_floor:>9.0f}%{shown:>10}{gflops:>9.1f}"
                      f"{100 * gflops / peak:>7.1f}%")


if __name__ == "__main__":
    main()
