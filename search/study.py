"""Creating and opening studies; the study file is stored with the study.

``open_study`` is a context manager: it opens the storage, finds the study and
its definition, and disposes of the storage's connections on the way out.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna

from . import record
from .data import load_data
from .errors import UsageError
from .readers import BUILTIN
from .storage import StorageURL, dispose, open_storage, with_retry
from .studyfile import METRICS, StudySpec, load_study_file, parse_study

logger = logging.getLogger(__name__)

SPEC_ATTR = "nnsearch.spec"  # the validated study file, as a dict
BASE_ATTR = "nnsearch.base_dir"  # where relative data paths are resolved


@dataclass
class Target:
    """A study as the CLI addressed it: by file, or by name and storage."""

    url: StorageURL
    name: str | None
    spec: StudySpec | None  # from the file, if one was given


@dataclass
class OpenStudy:
    """A study with its definition and the storage it was opened on."""

    study: optuna.Study
    spec: StudySpec
    storage: optuna.storages.BaseStorage
    url: StorageURL


def target_from_args(study_file: str | None, study_name: str | None,
                     storage: str | None) -> Target:
    if study_file is None and study_name is None:
        raise UsageError("give a study file, or --study NAME with --storage URL.")
    spec = load_study_file(study_file) if study_file else None
    url = StorageURL.resolve(storage, Path(study_file) if study_file else None)
    name = study_name or (spec.name if spec else None)
    return Target(url=url, name=name, spec=spec)


def study_note(spec: StudySpec) -> str:
    """A markdown summary of the dataset, split and search space (for the dashboard)."""
    data = spec.data
    lines = [f"# {spec.name}", "",
             f"**Objective:** {spec.direction} `{spec.metric}` on the validation split.", "",
             f"**Data:** `{data.source}`" + (f", target `{data.target}`" if data.target else "")
             + f"; split train/validation/test = {1 - data.validation - data.test:.0%}/"
             f"{data.validation:.0%}/{data.test:.0%} (stratified for classification, seed "
             f"{data.seed}), standardised on train"
             + (f", with shifted copies of each training image (up to {data.shift} pixel(s) "
                "up, down, left and right)" if data.shift else "")
             + ". The test split is never used by the search.", "",
             f"**Sampler:** {spec.sampler} (seed {spec.seed}); **pruner:** {spec.pruner}, "
             f"reporting every {spec.report_every} epoch(s).", "",
             "| hyperparameter | search |", "|---|---|"]
    for name, p in spec.space.items():
        if p.kind == "choice":
            text = ", ".join(map(str, p.choices or ()))
        elif p.kind == "range":
            text = f"{p.low} – {p.high}" + (" (log)" if p.log else "")
        else:
            text = f"fixed: {p.fixed}"
        lines.append(f"| {name} | {text} |")
    return "\n".join(lines) + "\n"


@contextmanager
def create(target: Target) -> Iterator[tuple[OpenStudy, bool]]:
    """Create the study from its file (once); yields (the open study, created)."""
    spec = target.spec
    if spec is None:
        raise UsageError("creating a study needs its study file.")
    check_data(spec)  # before anything is written: a bad dataset must not leave a study
    storage = open_storage(target.url)
    try:
        existing = with_retry(lambda: _study_names(storage), "list studies")
        created = spec.name not in existing
        if created:
            direction = optuna.study.StudyDirection[spec.direction.upper()]
            study = optuna.create_study(study_name=spec.name, storage=storage,
                                        direction=direction, sampler=spec.make_sampler(),
                                        pruner=spec.make_pruner(), load_if_exists=True)
            study.set_metric_names([spec.metric])
            study.set_user_attr(SPEC_ATTR, spec.to_dict())
            base = spec.base_dir
            if base is not None and spec.data.source not in BUILTIN:
                study.set_user_attr(BASE_ATTR, str(base))
            _set_note(study, spec)
        else:
            study = optuna.load_study(study_name=spec.name, storage=storage)
            stored = study.user_attrs.get(SPEC_ATTR)
            if stored is not None and stored != spec.to_dict():
                logger.warning("study %r already exists with a different study file; the "
                               "stored definition is kept (create a new study name to change "
                               "it)", spec.name)
        yield OpenStudy(study, spec, storage, target.url), created
    finally:
        dispose(storage)


def check_data(spec: StudySpec) -> None:
    """Load the study's data once and check that its metric fits the task."""
    data = load_data(spec.data, spec.base_dir)
    if data.task not in METRICS[spec.metric][1]:
        valid = ", ".join(m for m, (_, tasks) in METRICS.items() if data.task in tasks)
        where = spec.path or spec.name
        raise UsageError(f"{where}: study.metric: {spec.metric!r} does not apply to the "
                         f"{data.task} target of {spec.data.source}; valid: {valid}.")


def _set_note(study: optuna.Study, spec: StudySpec) -> None:
    try:
        from optuna_dashboard import save_note
        save_note(study, study_note(spec))
    except Exception as exc:  # the note is a nicety; never fail a create over it
        logger.debug("could not save the study note: %s", exc)


def _study_names(storage: optuna.storages.BaseStorage) -> list[str]:
    return [s.study_name for s in storage.get_all_studies()]


@contextmanager
def open_study(target: Target, heartbeat: bool = False,
               sampler_offset: int | None = None) -> Iterator[OpenStudy]:
    """The existing study and its definition (from the file, else from the storage).

    With ``sampler_offset`` (``record.seed_offset``), the study samples with the
    definition's sampler, seeded for this worker, and its pruner; without, it is for
    reading. The storage is disposed of on exit.
    """
    storage = open_storage(target.url, heartbeat=heartbeat, must_exist=True)
    try:
        names = with_retry(lambda: _study_names(storage), "list studies")
        if target.name not in names:
            known = ", ".join(names) if names else "none"
            raise UsageError(f"no study named {target.name!r} in {target.url} (studies "
                             f"there: {known}).")
        spec = target.spec or spec_from_storage(storage, target.name)
        kwargs: dict[str, Any] = {}
        if sampler_offset is not None:
            kwargs = {"sampler": spec.make_sampler(record.sampler_seed(spec.seed, sampler_offset)),
                      "pruner": spec.make_pruner()}
        study = optuna.load_study(study_name=target.name, storage=storage, **kwargs)
        yield OpenStudy(study, spec, storage, target.url)
    finally:
        dispose(storage)


def spec_from_storage(storage: optuna.storages.BaseStorage, name: str) -> StudySpec:
    attrs = storage.get_study_user_attrs(storage.get_study_id_from_name(name))
    stored: dict[str, Any] | None = attrs.get(SPEC_ATTR)
    if stored is None:
        raise UsageError(f"study {name!r} was not created by nnsearch (it has no stored "
                         "study file); address it by its study file instead.")
    base = attrs.get(BASE_ATTR)
    return parse_study(stored, f"study {name!r}", Path(base) / "study.toml" if base else None)
