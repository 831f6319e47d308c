"""The private Optuna names nnsearch uses still work (search/_optuna/).

If this fails after an Optuna upgrade, a private name moved: update it in
search/_optuna/, or let its public fallback do the work.
"""

import datetime
import warnings

import optuna
import pytest
import sqlalchemy
from optuna.trial import TrialState

from nnsearch.search import _optuna
from nnsearch.search._optuna import Param


@pytest.fixture
def rdb_storage():
    storage = optuna.storages.RDBStorage("sqlite:///:memory:", heartbeat_interval=60)
    yield storage
    storage.engine.dispose()


@pytest.fixture
def not_utc():
    """A local time 9 hours from UTC (a trial's start and end must agree on which)."""
    import os
    import time

    before = os.environ.get("TZ")
    os.environ["TZ"] = "Asia/Tokyo"
    time.tzset()
    yield
    if before is None:
        del os.environ["TZ"]
    else:
        os.environ["TZ"] = before
    time.tzset()


def test_a_whole_trial_is_written_in_one_transaction_as_optuna_stores_it(rdb_storage,
                                                                        not_utc):
    rdb = _optuna.rdb_of(rdb_storage)
    assert rdb is not None and _optuna.rdb_of(rdb_storage) is rdb, "built once"
    study = optuna.create_study(storage=rdb_storage)
    with warnings.catch_warnings():  # (a heartbeat storage outside optimize)
        warnings.simplefilter("ignore")
        trial_id = study.ask()._trial_id
    x = optuna.distributions.FloatDistribution(0.0, 2.0)
    y = optuna.distributions.IntDistribution(0, 3)
    rdb.write(trial_id, params=[Param("x", 1.5, x), Param("y", 2, y)],
              system_attrs={"s": [1]}, reports={2: 0.5}, beat=True)
    rdb.write(trial_id, user_attrs={"u": "v"}, state=TrialState.COMPLETE, values=[0.25])
    with rdb_storage.engine.connect() as connection:
        beats = connection.execute(sqlalchemy.text(
            "SELECT count(*) FROM trial_heartbeats")).scalar_one()
    (stored,) = study.trials
    assert stored.state == TrialState.COMPLETE and stored.values == [0.25]
    assert stored.params == {"x": 1.5, "y": 2} and stored.distributions == {"x": x, "y": y}
    assert stored.system_attrs == {"s": [1]} and stored.user_attrs == {"u": "v"}
    assert stored.intermediate_values == {2: 0.5} and beats == 1
    assert abs((stored.datetime_complete - datetime.datetime.now()).total_seconds()) < 60
    assert 0 <= (stored.datetime_complete - stored.datetime_start).total_seconds() < 60
    with pytest.raises(optuna.exceptions.UpdateFinishedTrialError):
        rdb.write(trial_id, user_attrs={"u": "w"})
    assert study.trials[0].user_attrs == {"u": "v"}


def test_the_trials_are_counted_by_state_in_one_query(rdb_storage):
    study = optuna.create_study(study_name="a", storage=rdb_storage)
    optuna.create_study(study_name="b", storage=rdb_storage).ask()  # another study's
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for _ in range(3):
            study.ask()
    study.tell(0, 1.0)
    study.tell(1, state=TrialState.PRUNED)
    study.add_trial(optuna.trial.create_trial(value=2.0, user_attrs={"skip": 1}))
    assert _optuna.rdb_of(rdb_storage).count_by_state("a", "skip") == {
        TrialState.COMPLETE: 1, TrialState.PRUNED: 1, TrialState.RUNNING: 1}


def test_an_rdb_storage_is_read_through_optuna_s_cache_and_a_new_trial_from_it(rdb_storage):
    cache = _optuna.cached_storage(rdb_storage)
    assert cache is not rdb_storage and getattr(cache, "_backend", None) is rdb_storage
    study_id = cache.create_new_study([optuna.study.StudyDirection.MINIMIZE], "s")
    trial_id = cache.create_new_trial(study_id)
    made = _optuna.created_trial(cache, study_id, trial_id)
    assert made.number == 0 and made.state == TrialState.RUNNING
    assert made is not cache.get_trial(trial_id), "from the cache: not read back"
    other = cache.create_new_study([optuna.study.StudyDirection.MINIMIZE], "t")
    assert _optuna.created_trial(cache, other, trial_id).number == 0, "the fallback reads"


def test_a_storage_of_ours_runs_optuna_s_heartbeats_and_finds_stale_trials(rdb_storage):
    from optuna.storages._heartbeat import is_heartbeat_enabled

    from nnsearch.search.worker_storage import WorkerStorage

    assert _optuna.HeartbeatBase.__mro__[1] is not object
    ours = WorkerStorage(_optuna.cached_storage(rdb_storage), _optuna.rdb_of(rdb_storage))
    assert is_heartbeat_enabled(ours)
    study = optuna.create_study(storage=rdb_storage)
    trial_id = rdb_storage.create_new_trial(study._study_id)
    rdb_storage.record_heartbeat(trial_id)
    with rdb_storage.engine.begin() as connection:  # a heartbeat long gone
        connection.execute(sqlalchemy.text(
            "UPDATE trial_heartbeats SET heartbeat = '2000-01-01 00:00:00'"))
    assert _optuna.stale_trial_ids(rdb_storage, study._study_id) == [trial_id]
    assert ours._get_stale_trial_ids(study._study_id) == [trial_id]
    assert ours._get_stale_trial_ids(study._study_id) == [], "at most once a second"


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_the_running_trials_heartbeat_ages_are_read(kind, request):
    url = "sqlite:///:memory:" if kind == "sqlite" else request.getfixturevalue("pg_url")
    storage = optuna.storages.RDBStorage(url, heartbeat_interval=60)
    try:
        study = optuna.create_study(storage=storage)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            old, fresh, done = (study.ask() for _ in range(3))
        for trial in (old, fresh, done):
            storage.record_heartbeat(trial._trial_id)
        study.tell(done, 1.0)  # finished: not running, no age shown
        hour_ago = ("datetime(heartbeat, '-1 hour')" if kind == "sqlite"
                    else "heartbeat - interval '1 hour'")
        with storage.engine.begin() as connection:  # trial 0's beat, an hour before
            connection.execute(sqlalchemy.text(
                f"UPDATE trial_heartbeats SET heartbeat = {hour_ago} "
                f"WHERE trial_id = {old._trial_id}"))
        ages = _optuna.heartbeat_ages(storage, study._study_id)
        assert ages is not None and set(ages) == {old.number, fresh.number}
        assert 3590 <= ages[old.number] <= 3660 and 0 <= ages[fresh.number] <= 60
    finally:
        storage.engine.dispose()
    assert _optuna.heartbeat_ages(optuna.storages.InMemoryStorage(), 0) is None


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_the_trials_read_by_sql_are_the_trials_optuna_reads(kind, request, not_utc):
    """``RDB.read_trials`` builds what ``get_all_trials`` builds, field by field: every
    state, value kinds (inf, nan), parameters of each distribution, attributes, reports,
    times (stored in UTC, read in a local time that is not); ``after``, ``also`` and
    ``states`` select; another study's are left out."""
    url = "sqlite:///:memory:" if kind == "sqlite" else request.getfixturevalue("pg_url")
    storage = optuna.storages.RDBStorage(url)
    try:
        study = optuna.create_study(storage=storage, directions=["minimize", "maximize"])
        optuna.create_study(storage=storage).ask()  # another study's trial
        for i in range(4):
            trial = study.ask()
            trial.suggest_float("x", 1e-3, 1.0, log=True)
            trial.suggest_int("n", 1, 9, step=2)
            trial.suggest_categorical("c", ["a", None, 2.5])
            trial.set_user_attr("u", {"list": [i, 0.5], "text": "é"})
            trial.storage.set_trial_system_attr(trial._trial_id, "s", i)
            for step, value in ((5, float("inf") if i == 1 else 0.1 * i), (6, float("nan"))):
                storage.set_trial_intermediate_value(trial._trial_id, step, value)
            if i < 2:
                study.tell(trial, [float("inf"), -float("inf")] if i == 1 else [i, 2.0 * i])
            elif i == 2:
                study.tell(trial, state=TrialState.FAIL)
        rdb = _optuna.rdb_of(storage)
        study_id = study._study_id
        optunas = storage.get_all_trials(study_id, deepcopy=False)
        ours = rdb.read_trials(study_id)
        assert [tid for tid, _ in ours] == [t._trial_id for t in optunas]
        for mine, theirs in zip((t for _, t in ours), optunas, strict=True):
            assert repr(mine) == repr(theirs)  # (nan == nan is False: compared as text)
        first, *_, last = [tid for tid, _ in ours]
        assert [tid for tid, _ in rdb.read_trials(study_id, after=last - 1, also=[first])] \
            == [first, last]
        assert [t.number for _, t in rdb.read_trials(study_id, states=[TrialState.FAIL])] == [2]
    finally:
        storage.engine.dispose()


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_an_outline_reads_what_it_names_of_finished_trials_and_all_of_the_others(
        kind, request):
    """``RDB.read_outline``: a finished trial with its number, state, times, values,
    params and system attributes as Optuna reads them, only the user attributes named,
    no reports; a running or waiting trial whole."""
    url = "sqlite:///:memory:" if kind == "sqlite" else request.getfixturevalue("pg_url")
    storage = optuna.storages.RDBStorage(url)
    try:
        study = optuna.create_study(storage=storage)
        study.enqueue_trial({"x": 0.5})
        for i in range(3):
            trial = study.ask()
            trial.suggest_float("x", 0.0, 1.0)
            trial.set_user_attr("kept", i)
            trial.set_user_attr("marked", "x" * 100)
            trial.set_user_attr("other", i)
            trial.report(0.1 * i, 1)
            if i < 2:
                study.tell(trial, float(i))
        study.enqueue_trial({"x": 0.25}, user_attrs={"marked": "y"})  # waiting
        rdb = _optuna.rdb_of(storage)
        outline = _optuna.Outline(frozenset({"kept"}))
        optunas = storage.get_all_trials(study._study_id, deepcopy=False)
        ours = rdb.read_outline(study._study_id, outline)
        assert [tid for tid, _ in ours] == [t._trial_id for t in optunas]
        for (_, mine), theirs in zip(ours, optunas, strict=True):
            assert (mine.number, mine.state, mine.values, mine.datetime_start,
                    mine.datetime_complete, mine.system_attrs) == \
                (theirs.number, theirs.state, theirs.values, theirs.datetime_start,
                 theirs.datetime_complete, theirs.system_attrs)
        (_, queued), (_, sampled), (_, running), (_, waiting) = ours
        assert queued.params == {"x": 0.5} and sampled.params == optunas[1].params
        assert queued.user_attrs == {"kept": 0}
        assert queued.intermediate_values == {}
        assert repr(running) == repr(optunas[2])  # (unfinished: whole)
        assert waiting.state == TrialState.WAITING and repr(waiting) == repr(optunas[3])
    finally:
        storage.engine.dispose()


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
@pytest.mark.parametrize("direction", ["minimize", "maximize"])
def test_a_census_counts_what_a_read_of_every_trial_counts_and_shortlists_the_best(
        kind, direction, request, not_utc):
    """``_optuna.census``: the tally by SQL equals ``fleet.tally_of`` over every trial
    (retries as Optuna's retry callback marks them, failures and the last of them, a
    race's surplus, skipped trials, priors, the pace's window); the shortlist holds the
    best completed trials (infinities in Optuna's order, and every one tied with the
    last), the best of those holding the mark, the unfinished ones and those asked for."""
    from optuna.trial import FrozenTrial

    from nnsearch.search import record

    def create_trial(state=TrialState.COMPLETE, value=None, user_attrs=None,
                     system_attrs=None, datetime_start=None, datetime_complete=None):
        return FrozenTrial(number=0, state=state, value=value, params={}, distributions={},
                           user_attrs=user_attrs or {}, system_attrs=system_attrs or {},
                           intermediate_values={}, trial_id=0, datetime_start=datetime_start,
                           datetime_complete=datetime_complete)
    from nnsearch.search.fleet import tally_of

    url = "sqlite:///:memory:" if kind == "sqlite" else request.getfixturevalue("pg_url")
    storage = optuna.storages.RDBStorage(url)
    try:
        study = optuna.create_study(storage=storage, direction=direction)
        sign = 1 if direction == "minimize" else -1
        written = {key: 1 for key in record.RESULT_KEYS}
        now = datetime.datetime.now()
        def at(minutes):
            return now - datetime.timedelta(minutes=minutes)
        values = [3.0, 1.0, 2.0, 2.0, 5.0, float("inf"), -float("inf"), 4.0]
        for i, value in enumerate(values):
            study.add_trial(create_trial(
                value=value, user_attrs=written if i != 2 else {},
                system_attrs={"mark": 1} if i in (0, 4, 7) else None,
                datetime_start=at(9 - i), datetime_complete=at(8.5 - i)))
        study.add_trial(create_trial(state=TrialState.PRUNED, user_attrs=written,
                                     system_attrs={"failed_trial": 1},
                                     datetime_start=at(2), datetime_complete=at(1)))
        for minutes, extra in ((7, {}), (3, {record.FAIL_REASON: "gone"}),
                               (2, {record.SURPLUS: True})):
            study.add_trial(create_trial(state=TrialState.FAIL, user_attrs=extra,
                                         datetime_start=at(minutes + 1),
                                         datetime_complete=at(minutes)))
        study.add_trial(create_trial(value=4.5, user_attrs={record.PRIOR: "a#1"},
                                     datetime_start=at(1), datetime_complete=at(1)))
        study.add_trial(create_trial(state=TrialState.RUNNING, datetime_start=at(0.5)))
        study.add_trial(create_trial(state=TrialState.WAITING))
        rdb = _optuna.rdb_of(storage)
        study_id = study._study_id
        every = study.get_trials(deepcopy=False)
        since = at(5)
        assert _optuna.tally(rdb, study_id, since, record.RESULT_KEYS, record.SURPLUS,
                             record.PRIOR) == tally_of(every, since)
        counted = tally_of(every, since)
        assert (counted.retried, counted.failed, counted.last_failed, counted.skipped,
                counted.finished_since) == (1, 2, 10, [2], 6)
        short = _optuna.shortlist(rdb, study_id, sign, 2, "mark", [9])
        number = {tid: t.number for tid, t in short.trials}
        top = {6, 1} if sign > 0 else {5, 4}  # (-inf first when minimised)
        marked = {0, 7} if sign > 0 else {4, 7}
        assert set(number.values()) == {*top, *marked, 9, 13, 14} and short.cut
        assert {number[tid] for tid in short.best} == top
        assert {number[tid] for tid in short.marked} == marked
        for _, t in short.trials:  # whole, as Optuna reads them
            assert t == every[t.number]
        # the last of the top tied with others: all of them
        top = 3 if sign > 0 else 6  # (its last is trial 2, tied with trial 3)
        short = _optuna.shortlist(rdb, study_id, sign, top)
        assert {2, 3} <= {t.number for _, t in short.trials} and len(short.best) == top + 1
        assert not _optuna.shortlist(rdb, study_id, sign, 3, "mark").cut
    finally:
        storage.engine.dispose()


def test_dashboard_notes_are_saved_by_its_note_module_alone():
    from optuna_dashboard import get_note

    study = optuna.create_study(storage=optuna.storages.InMemoryStorage())
    body = "# a note\n" + "x" * 5000  # longer than one system attribute
    _optuna.note_saver()(study, body)
    assert get_note(study) == body
    assert "optuna_dashboard" not in getattr(_optuna.note_saver(), "__module__", "")


def test_constraints_are_named_as_optuna_names_them():
    study = optuna.create_study(storage=optuna.storages.InMemoryStorage())
    trial = study.ask()
    trial.set_constraint("max_params", 3.0)
    study.tell(trial, 1.0)
    made = optuna.trial.create_trial(value=1.0,
                                     system_attrs=_optuna.constraint_attrs({"a": 2.0}))
    assert made.constraints == {"a": 2.0}
    assert _optuna.without_constraints(study.trials[0].system_attrs) == {}
    assert study.trials[0].constraints == {"max_params": 3.0}


def test_an_enqueued_trial_s_parameters_are_found():
    study = optuna.create_study(storage=optuna.storages.InMemoryStorage())
    study.enqueue_trial({"x": 1.5})
    assert _optuna.enqueued_params(study.trials[0]) == {"x": 1.5}


PRIVATE_STRINGS = {"fixed_params", "failed_trial"}


def test_no_other_module_names_a_private_optuna_module():
    import ast
    from pathlib import Path

    package = Path(_optuna.__file__).parent
    for path in package.parent.rglob("*.py"):
        if path.is_relative_to(package):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("optuna"):
                assert "._" not in node.module and not any(
                    a.name.startswith("_") for a in node.names), (path, node.module)
            if isinstance(node, ast.Attribute) and node.attr.startswith("_") \
                    and not node.attr.startswith("__"):
                owner = ast.unparse(node.value)
                assert owner in ("self", "cls") or owner.startswith("self."), \
                    f"{path.name}: {owner}.{node.attr}"
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                assert not node.value.startswith("optuna.") or "._" not in node.value, path
                # Optuna's private string conventions (an enqueued trial's system
                # attribute) are named in _optuna/ alone
                assert node.value not in PRIVATE_STRINGS, (path.name, node.value)


def test_no_method_of_an_optuna_object_is_replaced_at_run_time():
    """setattr only on our own objects; no method assigned over an instance's."""
    import ast
    from pathlib import Path

    root = Path(_optuna.__file__).parents[2]
    for path in [*root.glob("search/**/*.py"), *root.glob("model/**/*.py")]:
        text = path.read_text()
        assert "method-assign" not in text, path.name
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "setattr":
                owner = ast.unparse(node.args[0])
                assert owner in ("self", "sys"), f"{path.name}: setattr({owner}, ...)"
            if isinstance(node, ast.Attribute) and node.attr == "__dict__":
                assert ast.unparse(node.value) == "self", f"{path.name}: {ast.unparse(node)}"


def test_telling_a_trial_the_sweeper_ended_says_cannot_tell():
    """The worker goes on after a trial the sweeper failed meanwhile; Optuna's tell says
    so with this ValueError (worker.Worker.run matches its start)."""
    study = optuna.create_study()
    trial = study.ask()
    study.tell(trial, state=optuna.trial.TrialState.FAIL)  # as the sweeper does
    with pytest.raises(ValueError, match=r"^Cannot tell a FAIL trial"):
        study.tell(trial, 1.0)
