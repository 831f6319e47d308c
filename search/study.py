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
from ._optuna import cached_storage, note_saver, rdb_of
from .builtin import BUILTIN
from .cache import cache_dir, cached_data, store_cached
from .data import Dataset
from .enqueue import check_sizes, enqueue_all
from .errors import UsageError
from .reproducible import LaggedSampler, LaggedStorage
from .retry import with_retry
from .space import describe_condition
from .storage import dispose, open_storage
from .storage_url import StorageURL
from .studyfile import METRICS, StudySpec, definition_changes, load_study_file, parse_study
from .trial_cache import TrialCache
from .worker_storage import WINDOW_SECONDS, WorkerStorage

logger = logging.getLogger(__name__)

SPEC_ATTR = "nnsearch.spec"  # the validated study file, as a dict
BASE_ATTR = "nnsearch.base_dir"  # where relative data paths are resolved
DATA_ATTR = "nnsearch.data_fingerprint"  # of the data the study was created on
SUMMARY_ATTR = "nnsearch.data_summary"  # one line on the preprocessing
PREP_ATTR = "nnsearch.preprocessing"  # the fitted preprocessing, for exports
NOTE_ATTR = "nnsearch.note"  # False: the dashboard note is still to write; True: written


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
    # a worker's (and a supervisor's) study reads and writes its trials through this
    worker_storage: WorkerStorage | None = None
    # a reading command's (and ``run``'s supervisor's) study reads its trials through this
    reader: TrialCache | None = None


def target_from_args(study_file: str | None, study_name: str | None,
                     storage: str | None) -> Target:
    if study_file is None and study_name is None:
        raise UsageError("give a study file, or --study NAME with --storage URL.")
    spec = load_study_file(study_file) if study_file else None
    url = StorageURL.resolve(storage, Path(study_file) if study_file else None)
    name = study_name or (spec.name if spec else None)
    return Target(url=url, name=name, spec=spec)


def study_note(spec: StudySpec, summary: str = "") -> str:
    """A markdown summary of the dataset, split and search space (for the dashboard)."""
    data = spec.data
    if data.folds:
        split = (f"{data.test:.0%} held out as test (stratified for classification, seed "
                 f"{data.seed}); {data.folds}-fold cross-validation over the rest, standardised "
                 "on it")
        objective = f"the mean of `{spec.metric}` over {data.folds} folds"
        pruning = ("judging each fold but the last by its own value (step = fold)"
                   if spec.pruner == "wilcoxon" else
                   f"the folds trained side by side, judging their mean every "
                   f"{spec.report_every} epoch(s); the epoch kept is their mean's best")
    else:
        split = (f"split train/validation/test = {1 - data.validation - data.test:.0%}/"
                 f"{data.validation:.0%}/{data.test:.0%} (stratified for classification, seed "
                 f"{data.seed}), standardised on train")
        objective = f"`{spec.metric}` on the validation split"
        pruning = f"reporting every {spec.report_every} epoch(s)"
    costs = "".join(f", and minimise `{c}`" for c in spec.extra_metrics)
    if spec.multi:
        pruning = "none: Optuna cannot prune a multi-objective study (early stopping still " \
                  "ends a trial that stops improving)"
    bounds = ", ".join(f"`{k}` = {v:g}" for k, v in spec.constraints.items())
    lines = [f"# {spec.name}", "",
             f"**Objective:** {spec.direction} {objective}{costs}"
             + (" (the Pareto front)" if spec.multi else "") + ".", "",
             *([f"**Constraints:** {bounds}; an infeasible trial is never exported.", ""]
               if bounds else []),
             f"**Data:** `{data.source}`" + (f", target `{data.target}`" if data.target else "")
             + f"; {split}"
             + (f", with shifted copies of each training image (up to {data.shift} pixel(s) "
                "up, down, left and right)" if data.shift else "")
             + ". The test split is never used by the search.", "",
             *([f"**Preprocessing** (fitted on train): {summary}.", ""] if summary else []),
             f"**Sampler:** {spec.sampler} (seed {spec.seed}); **pruner:** {spec.pruner}, "
             f"{pruning}.", "",
             "| hyperparameter | search |", "|---|---|"]
    for name, p in spec.space.items():
        if p.kind == "choice":
            text = ", ".join(map(str, p.choices or ()))
        elif p.kind == "range":
            text = f"{p.low} – {p.high}" + (" (log)" if p.log else "")
        else:
            text = f"fixed: {p.fixed}"
        condition = describe_condition(name)
        lines.append(f"| {name} | {text}{f' ({condition})' if condition else ''} |")
    return "\n".join(lines) + "\n"


@contextmanager
def create(target: Target, note: bool = True) -> Iterator[tuple[OpenStudy, bool]]:
    """The study from its file, created once; yields (the open study, created).

    An existing study must have been created from the same definition and data:
    the stored study is the truth. Without a file, the existing study by name.
    Without ``note``, a new study's dashboard note is left to the caller
    (``save_note``): writing it imports optuna-dashboard, and with it scikit-learn and
    SciPy, a second or more that ``run`` keeps off its workers' start.
    """
    spec = target.spec
    if spec is None:
        with open_study(target, heartbeat=True) as opened:
            accepted_data(opened)  # the data must not have changed
            yield opened, False
        return
    # Before anything is written: bad data leaves no study, and a refused study no cache.
    data = check_data(spec, target.url)
    fingerprint = data.fingerprint
    storage = open_storage(target.url)
    # the study is read (by the supervisor, as trials end) through trial_cache.py
    reading = TrialCache(storage)
    try:
        existing = with_retry(lambda: _study_names(storage), "list studies")
        created = spec.name not in existing
        if created:
            study = optuna.create_study(study_name=spec.name, storage=reading,
                                        directions=[optuna.study.StudyDirection[d.upper()]
                                                    for d in spec.directions],
                                        sampler=spec.make_sampler(),
                                        pruner=spec.make_pruner(), load_if_exists=True)
            study.set_metric_names(list(spec.objectives))
            study.set_user_attr(SPEC_ATTR, spec.to_dict())
            study.set_user_attr(DATA_ATTR, fingerprint)
            study.set_user_attr(SUMMARY_ATTR, data.summary())
            study.set_user_attr(PREP_ATTR, data.preprocessing())
            base = spec.base_dir
            if base is not None and spec.data.source not in BUILTIN:
                study.set_user_attr(BASE_ATTR, str(base))
            if note:
                _set_note(study, spec, data.summary())
            else:
                study.set_user_attr(NOTE_ATTR, False)  # the caller's to write
            enqueue_all(study, spec.enqueued_params())
        else:
            study = optuna.load_study(study_name=spec.name, storage=reading)
            check_same_study(study.user_attrs, spec, target.url, fingerprint)
        store_cached(cache_dir(target.url), spec.data, data)  # accepted: for the workers
        yield OpenStudy(study, spec, storage, target.url, reader=reading), created
    finally:
        dispose(storage)


def check_same_study(attrs: dict[str, Any], spec: StudySpec, url: StorageURL,
                     fingerprint: str | None = None) -> None:
    """The study file (and its data) is what the stored study was created from, or
    UsageError naming what differs and the ways out."""
    where = spec.path or spec.name
    differs = _differs(attrs, spec, url)
    if differs:
        raise UsageError(f"{differs}; give the edited file a new [study] name, or run the "
                         f"stored one with --study {spec.name} instead of the file.")
    known = attrs.get(DATA_ATTR)
    if fingerprint is not None and known is not None and fingerprint != known:
        raise UsageError(f"{where}: the data {spec.data.source} changed since study "
                         f"{spec.name!r} was created (fingerprint {fingerprint}, was {known}); "
                         "restore it, or start a new study (a new [study] name).")


def _differs(attrs: dict[str, Any], spec: StudySpec, url: StorageURL) -> str:
    """'' if the stored definition is the file's, else a sentence naming what differs."""
    stored = attrs.get(SPEC_ATTR)
    changes = definition_changes(stored, spec.to_dict()) if stored is not None else []
    if not changes:
        return ""
    shown = "; ".join(changes[:3]) + (f"; and {len(changes) - 3} more"
                                      if len(changes) > 3 else "")
    return (f"{spec.path or spec.name}: study {spec.name!r} in {url} was created from "
            f"another definition ({shown})")


def accepted_data(opened: OpenStudy, notes: bool = True) -> Dataset:
    """The study's data, once the stored study accepts it (same definition, same data);
    only then are the processed arrays cached for the workers."""
    data = check_data(opened.spec, opened.url, notes)
    check_same_study(opened.study.user_attrs, opened.spec, opened.url, data.fingerprint)
    store_cached(cache_dir(opened.url), opened.spec.data, data)
    # a study created while one-hot inputs were standardised goes on with its own inputs
    return data.scaled_as(opened.study.user_attrs.get(PREP_ATTR))


def check_data(spec: StudySpec, url: StorageURL, notes: bool = True) -> Dataset:
    """Load the study's data (from the cache if it is there, never storing it: a refused
    study leaves none), check that its metric fits the task, and say what was inferred."""
    data = cached_data(spec.data, spec.base_dir, cache_dir(url), store=False)
    if data.task not in METRICS[spec.metric][1]:
        valid = ", ".join(m for m, (_, tasks) in METRICS.items() if data.task in tasks)
        where = spec.path or spec.name
        raise UsageError(f"{where}: study.metric: {spec.metric!r} does not apply to the "
                         f"{data.task} target of {spec.data.source}; valid: {valid}.")
    check_sizes(spec.enqueued_params(), spec.space, spec.max_params, data.n_features,
                data.n_outputs, str(spec.path or spec.name))
    for note in data.notes if notes else ():
        logger.info("%s", note)
    return data


def save_note(opened: OpenStudy) -> None:
    """The study's dashboard note (its definition and data), as ``create`` writes it."""
    _set_note(opened.study, opened.spec, opened.study.user_attrs.get(SUMMARY_ATTR, ""))


def needs_note(opened: OpenStudy) -> bool:
    """Whether the study's dashboard note is still to write: a run created it without
    one, and was stopped (or failed to write it) before. A study from before the note
    was tracked keeps whatever note it has (a user may have edited it)."""
    return opened.study.user_attrs.get(NOTE_ATTR) is False


def _set_note(study: optuna.Study, spec: StudySpec, summary: str) -> None:
    try:
        note_saver()(study, study_note(spec, summary))
        study.set_user_attr(NOTE_ATTR, True)
    except Exception as exc:  # the note is a nicety; never fail a create over it
        logger.info("could not save the study's dashboard note: %s", exc)


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
        spec = _definition(storage, target, strict=sampler_offset is not None)
        if not heartbeat:  # for reading: finished trials read once, by SQL (trial_cache.py)
            reader = TrialCache(storage)
            study = optuna.load_study(study_name=target.name, storage=reader)
            yield OpenStudy(study, spec, storage, target.url, reader=reader)
            return
        # a worker's (or its supervisor's, which shares no reads): see worker_storage.py
        lagged = spec.reproducible and sampler_offset is not None  # (reproducible.py)
        rdb = rdb_of(storage)
        ours = (LaggedStorage if lagged else WorkerStorage)(
            cached_storage(storage), rdb,
            window=WINDOW_SECONDS if sampler_offset is not None else 0.0,
            reader=TrialCache(storage) if rdb is not None else None)
        kwargs: dict[str, Any] = {}
        if sampler_offset is not None:
            sampler = LaggedSampler(spec.make_sampler, spec.seed, ours) \
                if isinstance(ours, LaggedStorage) else \
                spec.make_sampler(record.sampler_seed(spec.seed, sampler_offset))
            kwargs = {"sampler": sampler, "pruner": spec.make_pruner()}
        study = optuna.load_study(study_name=target.name, storage=ours, **kwargs)
        yield OpenStudy(study, spec, storage, target.url, ours)
    finally:
        dispose(storage)


def _definition(storage: optuna.storages.BaseStorage, target: Target,
                strict: bool) -> StudySpec:
    """The stored definition, or the file's when it says the same. A worker (``strict``)
    refuses a file that says otherwise; a reader goes on with the stored one."""
    assert target.name is not None
    attrs = storage.get_study_user_attrs(storage.get_study_id_from_name(target.name))
    if target.spec is None:
        return spec_from_attrs(attrs, target.name)
    if SPEC_ATTR not in attrs:
        return target.spec
    if strict:
        check_same_study(attrs, target.spec, target.url)
    elif differs := _differs(attrs, target.spec, target.url):
        logger.warning("%s; using the stored one", differs)
        return spec_from_attrs(attrs, target.name)
    return target.spec


def spec_from_attrs(attrs: dict[str, Any], name: str) -> StudySpec:
    """The definition stored with study ``name`` (its user attributes)."""
    stored: dict[str, Any] | None = attrs.get(SPEC_ATTR)
    if stored is None:
        raise UsageError(f"study {name!r} was not created by nnsearch (it has no stored "
                         "study file); address it by its study file instead.")
    base = attrs.get(BASE_ATTR)
    return parse_study(stored, f"study {name!r}", Path(base) / "study.toml" if base else None)
