"""Per-trial artifacts: the learning-curve PNG and the exported config JSON.

They go to Optuna's artifact store (a folder) and are linked to the trial, so
optuna-dashboard shows them next to the trial.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import optuna
from optuna.artifacts import FileSystemArtifactStore, upload_artifact

from nnsearch.model import History

from .plots import learning_curve_png
from .sidecars import artifact_folder
from .storage_url import StorageURL

ENV_ARTIFACTS = "NNSEARCH_ARTIFACTS"


def artifact_dir(url: StorageURL) -> Path:
    """Where trial artifacts live: $NNSEARCH_ARTIFACTS, else beside a file storage.

    Workers and the dashboard must see the same folder; for PostgreSQL across
    machines, point NNSEARCH_ARTIFACTS at a shared volume.
    """
    if os.environ.get(ENV_ARTIFACTS):
        return Path(os.environ[ENV_ARTIFACTS])
    if url.path is not None:
        return artifact_folder(url.path)
    return Path.cwd() / "nnsearch-artifacts"


def artifact_store(url: StorageURL, create: bool = True) -> FileSystemArtifactStore | None:
    path = artifact_dir(url)
    if create:
        path.mkdir(parents=True, exist_ok=True)
    elif not path.is_dir():
        return None
    return FileSystemArtifactStore(str(path))


def upload_trial_artifacts(trial: optuna.Trial, store: FileSystemArtifactStore,
                           export: dict[str, Any], history: History | None = None) -> None:
    """Attach the trial's exported config to it, and its learning curve if ``history``."""
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / f"trial-{trial.number}.json"
        config.write_text(json.dumps(export, indent=2) + "\n", encoding="utf-8")
        files = [(config, "application/json")]
        if history is not None:
            png = learning_curve_png(history, Path(tmp) / f"trial-{trial.number}-curve.png",
                                     f"trial {trial.number}")
            files.insert(0, (png, "image/png"))
        for path, mimetype in files:
            upload_artifact(artifact_store=store, file_path=str(path), study_or_trial=trial,
                            mimetype=mimetype)
