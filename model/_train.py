"""The trainer: mini-batches, clipping, schedules, early stopping and a history."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Protocol

import numpy as np

from ._clip import CLIP_TYPES, Clipper
from ._domains import Domain
from ._ensemble import Ensemble
from ._network import Network
from ._optimizers import OPTIMIZERS, load_array
from ._schedules import SCHEDULES

logger = logging.getLogger(__name__)


_POSITIVE = Domain("float", 0.0, low_open=True)
_NONNEGATIVE = Domain("float", 0.0)
_FRACTION = Domain("float", 0.0, 1.0, high_open=True)  # [0, 1)


def _field(default: Any, domain: Domain,
           when: tuple[str, tuple[str, ...]] | None = None) -> Any:
    """A TrainConfig field whose valid values are ``domain``; ``when = (field, values)``:
    it is used only when that other field takes one of those values."""
    return field(default=default, metadata={"domain": domain, "when": when})


_DECAYING = ("exponential", "step")


@dataclass(frozen=True)
class TrainConfig:
    """How to train a network. Field names match the study files and the export.

    Each field declares its valid values (a Domain, listed in TRAIN_DOMAINS);
    construction checks them.
    """

    epochs: int = _field(100, Domain("int", 1))
    # or "full": the article's full-batch gradient descent
    batch_size: int | str = _field(64, Domain("int", 1, extra=("full",)))
    learning_rate: float = _field(1e-3, _POSITIVE)
    optimizer: str = _field("adam", Domain("name", choices=tuple(sorted(OPTIMIZERS))))
    l2: float = _field(0.0, _NONNEGATIVE)  # adds 0.5*l2*||W||^2 to the loss (weights, not biases)
    # norm clips each tensor on its own (the article's); global_norm all at once
    clip_type: str = _field("none", Domain("name", choices=CLIP_TYPES))
    clip_value: float = _field(1.0, _POSITIVE,  # threshold for value / norm clipping
                               when=("clip_type", tuple(c for c in CLIP_TYPES if c != "none")))
    # the learning rate's schedule, stepped once per epoch
    schedule: str = _field("constant", Domain("name", choices=tuple(sorted(SCHEDULES))))
    # epochs without val-loss improvement; None: no early stopping
    patience: int | None = _field(10, Domain("int", 1, optional=True))
    min_delta: float = _field(0.0, _NONNEGATIVE)  # smallest val-loss drop that counts
    seed: int = _field(0, Domain("int"))  # shuffling and dropout
    momentum: float = _field(0.9, _FRACTION, when=("optimizer", ("momentum",)))
    nesterov: bool = _field(False, Domain("bool"), when=("optimizer", ("momentum",)))
    beta1: float = _field(0.9, _FRACTION, when=("optimizer", ("adam",)))
    beta2: float = _field(0.999, _FRACTION, when=("optimizer", ("adam",)))
    epsilon: float = _field(1e-8, _POSITIVE, when=("optimizer", ("adam",)))
    # exponential: lr*decay^epoch; step: lr*decay^(epoch//lr_step)
    lr_decay: float = _field(0.95, _POSITIVE, when=("schedule", _DECAYING))
    # step schedule: epochs between decays
    lr_step: int = _field(10, Domain("int", 1), when=("schedule", ("step",)))
    # floor of the decaying schedules; cosine's end
    min_lr: float = _field(0.0, _NONNEGATIVE, when=("schedule", (*_DECAYING, "cosine")))
    log_every: int = _field(50, Domain("int", 0))  # a logging line every N epochs (0: never)

    def __post_init__(self) -> None:
        for f in fields(self):
            f.metadata["domain"].check(f.name, getattr(self, f.name))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


TRAIN_DOMAINS: dict[str, Domain] = {f.name: f.metadata["domain"] for f in fields(TrainConfig)}
# A field that only matters for some values of another: name -> (that field, its values).
TRAIN_CONDITIONS: dict[str, tuple[str, tuple[str, ...]]] = {
    f.name: f.metadata["when"] for f in fields(TrainConfig) if f.metadata["when"]}


@dataclass
class History:
    """What happened, epoch by epoch. Lists are indexed by epoch (from 0)."""

    metric_name: str  # "accuracy" for classifiers, "rmse" for regressors
    train_loss: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    val_metric: list[float] = field(default_factory=list)
    learning_rate: list[float] = field(default_factory=list)
    # Per-layer (W and b together) gradient norm at the epoch's last step, before clipping.
    grad_norms: list[list[float]] = field(default_factory=list)
    clip_fraction: list[float] = field(default_factory=list)  # share of steps clipped
    best_epoch: int = -1  # the epoch whose weights the network holds at the end
    epochs_run: int = 0
    stopped_early: bool = False  # by early stopping (patience)
    stopped_by_callback: bool = False  # on_epoch_end asked to stop (e.g. pruning)
    diverged: bool = False  # a non-finite loss ended training
    max_grad_norm: float = 0.0  # largest global gradient norm measured, before clipping

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


EpochCallback = Callable[[int, dict[str, Any]], bool | None]


def evaluate(net: Network | Ensemble, X: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """(mean loss, metric) on (X, y): accuracy for classifiers, RMSE for regressors."""
    return evaluate_outputs(net, net.forward(X), y)


def evaluate_outputs(net: Network | Ensemble, P: np.ndarray, y: np.ndarray
                     ) -> tuple[float, float]:
    """(mean loss, metric) of head outputs ``P`` (``net.forward``'s, or an average of
    several) against ``y``, judged as ``net``'s head judges them."""
    Y = net.encode_targets(y)
    return net.loss_from_output(P, Y), _metric(net, P, Y)


def _metric(net: Network | Ensemble, P: np.ndarray, Y: np.ndarray) -> float:
    if net.head.task == "multiclass":
        return float(np.mean(P.argmax(axis=1) == Y.argmax(axis=1)))
    if net.head.task == "binary":
        return float(np.mean((P > 0.5) == (Y > 0.5)))
    return float(np.sqrt(np.mean((P.astype(np.float64) - Y) ** 2)))


def _evaluate_augmented(net: Network, Xa: np.ndarray, Y: np.ndarray) -> tuple[float, float]:
    P = net.forward_augmented(Xa)
    return net.loss_from_output(P, Y), _metric(net, P, Y)


class EarlyStopping:
    """The best monitored loss so far (by more than ``min_delta``), its epoch, and
    whether ``patience`` epochs have passed without a better one."""

    def __init__(self, config: TrainConfig) -> None:
        self.min_delta, self.patience = config.min_delta, config.patience
        self.best, self.best_epoch, self.waited = math.inf, -1, 0

    def improved(self, monitored: float, epoch: int) -> bool:
        if monitored < self.best - self.min_delta:
            self.best, self.best_epoch, self.waited = monitored, epoch, 0
            return True
        self.waited += 1
        return False

    @property
    def done(self) -> bool:
        return self.patience is not None and self.waited >= self.patience

    def state(self) -> dict[str, Any]:
        return {"best": self.best, "best_epoch": self.best_epoch, "waited": self.waited}

    def load_state(self, state: dict[str, Any]) -> None:
        try:
            self.best, self.best_epoch = float(state["best"]), int(state["best_epoch"])
            self.waited = int(state["waited"])
        except (KeyError, TypeError, ValueError) as exc:
            raise StateError(f"the early-stopping state does not fit: {exc!r}") from exc


class StateError(ValueError):
    """A saved training state that does not fit the training given it."""


class Checkpoints(Protocol):
    """Where a training saves its state now and then (``fit``'s ``checkpoints``): asked
    after every epoch whether a save is due (cheap), then handed the state."""

    def due(self) -> bool: ...

    def save(self, state: dict[str, Any]) -> None: ...


class Trainer:
    """One network's training, an epoch at a time: ``fit`` runs one to its end, and
    cross-validation runs one per fold side by side (their early stopping decided on
    the folds' mean curve). ``epoch()`` trains one epoch and records it in ``history``;
    ``keep()`` copies the weights as they are, ``restore()`` puts that copy back."""

    def __init__(self, net: Network, X_train: np.ndarray, y_train: np.ndarray,
                 X_val: np.ndarray | None, y_val: np.ndarray | None,
                 config: TrainConfig) -> None:
        if not isinstance(config, TrainConfig):
            raise ValueError(f"config must be a TrainConfig, but got {type(config).__name__}.")
        X = net.check_input(X_train, "X_train")
        Y = net.encode_targets(y_train, "y_train")
        if len(X) != len(Y) or len(X) == 0:
            raise ValueError(f"X_train and y_train must hold the same number (>= 1) of "
                             f"samples, but got {len(X)} and {len(Y)}.")
        self.Xa_val: np.ndarray | None = None
        self.Y_val: np.ndarray | None = None
        if X_val is not None and y_val is not None:
            self.Xa_val = net.augment(net.check_input(X_val, "X_val"))
            self.Y_val = net.encode_targets(y_val, "y_val")
            if len(self.Xa_val) != len(self.Y_val):
                raise ValueError(f"X_val and y_val must hold the same number of samples, "
                                 f"but got {len(self.Xa_val)} and {len(self.Y_val)}.")
        self.net, self.config = net, config
        self.n = n = len(X)
        self.batch = n if config.batch_size == "full" else min(int(config.batch_size), n)
        self.rng = np.random.default_rng(config.seed)
        self.Xa, self.Y = net.augment(X), Y
        opt_args = {k: getattr(config, k) for k in
                    ("momentum", "nesterov", "beta1", "beta2", "epsilon")}
        self.optimizer = OPTIMIZERS[config.optimizer](net.flat.size, net.dtype, **opt_args)
        self.schedule = SCHEDULES[config.schedule]
        self.clipper = Clipper(net, config.clip_type, config.clip_value) \
            if config.clip_type != "none" else None
        self.decay = (config.l2 * net.weight_mask).astype(net.dtype) if config.l2 else None
        self.sq_tmp = np.empty_like(net.flat)
        # Per-tensor squared gradient norms (W1, b1, W2, b2, ...). Norm clipping needs
        # them at every step; otherwise the history samples the epoch's last step.
        self.tensor_sq = np.zeros(len(net.tensor_starts), np.float64)
        self.norms_every_step = config.clip_type in ("norm", "global_norm")
        self.steps = [(start, min(start + self.batch, n)) for start in range(0, n, self.batch)]
        self.dropout_rng = self.rng if net.dropout > 0 else None
        self.history = History(metric_name="accuracy" if net.is_classifier else "rmse")
        self.kept = net.flat.copy()

    # A diverging run overflows on its way to NaN: it is reported (History.diverged),
    # not warned about.
    @np.errstate(over="ignore", invalid="ignore", divide="ignore")
    def epoch(self) -> dict[str, Any]:
        """Train one more epoch; its metrics (``monitored``: the validation loss, else
        the training loss). A non-finite loss sets ``history.diverged``."""
        net, config, history = self.net, self.config, self.history
        epoch = history.epochs_run
        flat, grad, sq_tmp, tensor_sq = net.flat, net.grad, self.sq_tmp, self.tensor_sq
        lr = self.schedule(epoch, config.learning_rate, config.epochs, config.lr_decay,
                           config.lr_step, config.min_lr)
        if self.batch < self.n:
            perm = self.rng.permutation(self.n)
            Xs, Ys = self.Xa[perm], self.Y[perm]
        else:
            Xs, Ys = self.Xa, self.Y
        loss_sum, clipped = 0.0, 0
        last_step = len(self.steps) - 1
        for step, (start, stop) in enumerate(self.steps):
            loss_sum += net.backprop(Xs[start:stop], Ys[start:stop], self.dropout_rng)
            if self.decay is not None:
                np.multiply(flat, self.decay, out=sq_tmp)
                grad += sq_tmp
            if self.norms_every_step or step == last_step:
                np.square(grad, out=sq_tmp)
                np.add.reduceat(sq_tmp, net.tensor_starts, out=tensor_sq)
                history.max_grad_norm = max(history.max_grad_norm,
                                            math.sqrt(float(tensor_sq.sum())))
            if self.clipper is not None and self.clipper(grad, tensor_sq):
                clipped += 1
            self.optimizer.step(flat, grad, lr)

        train_loss = loss_sum / self.n + (net.l2_penalty(config.l2) if config.l2 else 0.0)
        layer_norms = np.sqrt(tensor_sq[0::2] + tensor_sq[1::2])
        if self.Xa_val is not None and self.Y_val is not None:
            val_loss, val_metric = _evaluate_augmented(net, self.Xa_val, self.Y_val)
        else:
            val_loss, val_metric = math.nan, math.nan
        history.train_loss.append(train_loss)
        history.val_loss.append(val_loss)
        history.val_metric.append(val_metric)
        history.learning_rate.append(lr)
        history.grad_norms.append(layer_norms.tolist())
        history.clip_fraction.append(clipped / len(self.steps))
        history.epochs_run = epoch + 1
        monitored = val_loss if self.Xa_val is not None else train_loss
        if not (math.isfinite(train_loss) and math.isfinite(monitored)):
            history.diverged = True
            logger.info("epoch %d: the loss is not finite (train_loss=%s, val_loss=%s); "
                        "stopping as diverged", epoch, train_loss, val_loss)
        if config.log_every and (epoch + 1) % config.log_every == 0:
            logger.info("epoch %d: train_loss=%.4f val_loss=%.4f val_%s=%.4f lr=%.3g",
                        epoch + 1, train_loss, val_loss, history.metric_name, val_metric, lr)
        return {"train_loss": train_loss, "val_loss": val_loss, "val_metric": val_metric,
                "learning_rate": lr, "grad_norms": history.grad_norms[-1],
                "clip_fraction": history.clip_fraction[-1], "monitored": monitored}

    def state(self) -> dict[str, Any]:
        """Everything the next epoch depends on: the weights, the copy ``keep`` made,
        the generator's state (shuffles, dropout), the optimizer's and the history. The
        arrays are the trainer's own (a saver writes them before the next epoch)."""
        return {"flat": self.net.flat, "kept": self.kept,
                "rng": self.rng.bit_generator.state, "optimizer": self.optimizer.state(),
                "history": self.history.to_dict()}

    def load_state(self, state: dict[str, Any]) -> None:
        """Continue from ``state`` (``state()`` of a trainer of the same network, data
        and config): the next epoch is the one that trainer would have run next.
        ``StateError`` when it does not fit (the trainer is then not to be used)."""
        try:
            for name, into in (("flat", self.net.flat), ("kept", self.kept)):
                load_array(into, state[name], name)
            self.rng.bit_generator.state = state["rng"]
            self.optimizer.load_state(state["optimizer"])
            history = History(**state["history"])
        except (KeyError, TypeError, ValueError) as exc:
            raise StateError(f"the training state does not fit: {exc!r}") from exc
        if not 0 < history.epochs_run < self.config.epochs or any(
                len(getattr(history, name)) != history.epochs_run for name in
                ("train_loss", "val_loss", "val_metric", "learning_rate")):
            raise StateError(f"the training state's history does not fit: "
                             f"{history.epochs_run} epochs of {self.config.epochs}")
        self.history = history

    def keep(self) -> None:
        np.copyto(self.kept, self.net.flat)

    def restore(self, epoch: int) -> None:
        """Put back the weights ``keep`` copied, those of ``epoch``."""
        np.copyto(self.net.flat, self.kept)
        self.history.best_epoch = epoch


def fit(
    net: Network,
    X_train: np.ndarray,
    y_train: np.ndarray,
    X_val: np.ndarray | None,
    y_val: np.ndarray | None,
    config: TrainConfig,
    on_epoch_end: EpochCallback | None = None,
    checkpoints: Checkpoints | None = None,
    resume: dict[str, Any] | None = None,
) -> History:
    """Train ``net`` in place and return its history.

    Early stopping watches the validation loss (the training loss when no
    validation set is given) and, when it ends training or training diverges,
    puts back a copy of the best epoch's parameters. ``on_epoch_end(epoch,
    metrics)`` is called after every epoch; a truthy return stops training.

    ``checkpoints``: after an epoch that does not end training, the state is saved
    when a save is due; ``resume`` (such a state, of the same network, data and
    config) continues from it, bit for bit as the run that saved it would have.
    """
    run = Trainer(net, X_train, y_train, X_val, y_val, config)
    stopping = EarlyStopping(config)
    if resume is not None:
        try:
            trainer, stopped = resume["trainer"], resume["stopping"]
        except (KeyError, TypeError) as exc:
            raise StateError(f"the training state does not fit: {exc!r}") from exc
        run.load_state(trainer)
        stopping.load_state(stopped)
    history = run.history
    for epoch in range(history.epochs_run, config.epochs):
        metrics = run.epoch()
        monitored = metrics.pop("monitored")
        if history.diverged:
            break
        if stopping.improved(monitored, epoch):
            run.keep()
        if on_epoch_end is not None and on_epoch_end(epoch, metrics):
            history.stopped_by_callback = True
            break
        if stopping.done:
            history.stopped_early = True
            break
        if checkpoints is not None and epoch + 1 < config.epochs and checkpoints.due():
            checkpoints.save({"trainer": run.state(), "stopping": stopping.state()})

    # Early stopping keeps the best epoch; so does divergence, when any epoch was finite.
    if stopping.best_epoch >= 0 and (config.patience is not None or history.diverged):
        run.restore(stopping.best_epoch)
    else:
        history.best_epoch = history.epochs_run - 1
    return history
