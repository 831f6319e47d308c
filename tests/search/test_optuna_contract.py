"""The private Optuna names nnsearch uses still work (search/_optuna.py).

If this fails after an Optuna upgrade, a private name moved: update it in
search/_optuna.py, or let its public fallback do the work.
"""

import optuna
import pytest

from nnsearch.search import _optuna


def test_every_private_name_still_works_on_this_optuna():
    paths = _optuna.private_names_in_use()
    assert paths and all(paths.values()), (optuna.__version__, paths)


def test_expected_failures_are_quiet_and_others_are_not(caplog):
    _optuna.quiet_failed_trials(lambda message: "ExpectedInTest(" in message)

    class ExpectedInTest(Exception):
        pass

    def objective(trial):
        raise ExpectedInTest() if trial.number == 0 else RuntimeError("a real bug")

    study = optuna.create_study()
    with caplog.at_level("WARNING", logger="optuna"):
        study.optimize(objective, n_trials=2, catch=(Exception,))
    messages = [r.getMessage() for r in caplog.records]
    assert not any("ExpectedInTest(" in m for m in messages)
    assert any("a real bug" in m for m in messages)


def test_a_trial_failed_by_a_storage_error_is_one_line_without_traceback(caplog):
    import sqlalchemy

    from nnsearch.search.storage import is_transient

    _optuna.one_line_failures(is_transient)

    def objective(trial):
        if trial.number == 0:
            raise sqlalchemy.exc.OperationalError("SELECT 1", {}, Exception(
                "server closed the connection unexpectedly\n\tThis probably means ..."))
        raise RuntimeError("a real bug")

    study = optuna.create_study()
    with caplog.at_level("WARNING", logger="optuna"):
        study.optimize(objective, n_trials=2, catch=(Exception,))
    storage, bug = [r for r in caplog.records if "failed with parameters" in r.getMessage()]
    assert "server closed the connection" in storage.getMessage()
    assert storage.exc_info is None and "\n" not in storage.getMessage()
    assert bug.exc_info is not None  # any other failure keeps its traceback


PRIVATE_STRINGS = {"fixed_params"}


def test_no_other_module_names_a_private_optuna_module():
    import ast
    from pathlib import Path

    root = Path(_optuna.__file__).parent
    for path in root.rglob("*.py"):
        if path.name == "_optuna.py":
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
                # attribute) are named in _optuna.py alone
                assert node.value not in PRIVATE_STRINGS, (path.name, node.value)


def test_telling_a_trial_the_sweeper_ended_says_cannot_tell():
    """The worker goes on after a trial the sweeper failed meanwhile; Optuna's tell says
    so with this ValueError (worker.Worker.run matches its start)."""
    study = optuna.create_study()
    trial = study.ask()
    study.tell(trial, state=optuna.trial.TrialState.FAIL)  # as the sweeper does
    with pytest.raises(ValueError, match=r"^Cannot tell a FAIL trial"):
        study.tell(trial, 1.0)


def test_attributes_of_a_finished_trial_are_refused_as_optuna_refuses_them():
    # The sweeper may end a trial while its worker records it; the worker relies on this.
    from optuna.exceptions import UpdateFinishedTrialError

    storage = optuna.storages.RDBStorage("sqlite:///:memory:")
    study = optuna.create_study(storage=storage)
    trial = study.ask()
    _optuna.write_record(trial, {"a": 1, "b": [2.0]})
    assert study.trials[0].user_attrs == {"a": 1, "b": [2.0]}
    study.tell(trial, 1.0)
    with pytest.raises(UpdateFinishedTrialError):
        _optuna.write_record(trial, {"a": 2})
    assert study.trials[0].user_attrs == {"a": 1, "b": [2.0]}
    storage.engine.dispose()
