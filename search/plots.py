"""The learning-curve PNG drawn for every completed trial and by ``nnsearch train``."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from nnsearch.model import History


def learning_curve_png(history: History, path: Path, title: str) -> Path:
    """The article's plot: train vs validation loss per epoch."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
    # A fixed layout: tight_layout would double the cost, and workers draw one per trial.
    fig.subplots_adjust(left=0.12, right=0.97, bottom=0.13, top=0.91)
    epochs = np.arange(1, len(history.train_loss) + 1)
    ax.plot(epochs, history.train_loss, label="train loss")
    ax.plot(epochs, history.val_loss, label="validation loss")
    if 0 <= history.best_epoch < len(epochs):
        ax.axvline(history.best_epoch + 1, color="grey", linestyle=":", label="best epoch")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax.set_title(title)
    ax.legend()
    fig.savefig(path)
    plt.close(fig)
    return path
