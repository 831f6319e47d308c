"""Trade-offs end to end through the CLI: multi-objective studies (SQLite and
PostgreSQL), [constraints], and run --from-study; plus the front and the space's
distributions as units."""

import csv
import io
import json
import re

import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.study import StudyDirection
from optuna.trial import TrialState

from nnsearch.search import record
from nnsearch.search.front import dominates, pareto_front, signs
from nnsearch.search.report import OwnTrials
from nnsearch.search.space import parse_param
from tests.helpers import run_cli, write_study
from tests.search.test_workers import trials

MAX_PARAMS = 600  # iris, 1-2 layers of 8-32 units: 67 to 1,315 parameters


def multi_study(path, name, trials=12, metric='["val_accuracy", "n_params"]', extra=""):
    """The small iris study with several objectives (and so no [pruner])."""
    study = write_study(path, name=name, trials=trials)
    text = re.sub(r"\[pruner\]\n[^\[]*", "", study.read_text())
    study.write_text(text.replace('metric = "val_accuracy"', f"metric = {metric}") + extra)
    return study


def own_complete(ts):
    return [t for t in ts if t.state == TrialState.COMPLETE and record.written_by_worker(t)]


def check_front(front_json, ts, directions):
    """The front is exactly the non-dominated feasible completed trials."""
    sign = signs(directions)
    pool = [t for t in own_complete(ts) if all(v <= 0 for v in t.constraints.values())]
    numbers = [f["number"] for f in front_json]
    assert numbers, "an empty front"
    by_number = {t.number: t for t in pool}
    for n in numbers:
        assert n in by_number, f"trial {n} on the front is not a feasible completed trial"
        assert not any(dominates(o.values, by_number[n].values, sign) for o in pool), n
    for t in pool:
        if t.number not in numbers:
            assert any(dominates(by_number[n].values, t.values, sign) for n in numbers), \
                f"trial {t.number} is dominated by no front member, yet not on the front"


@pytest.fixture(scope="module")
def multi(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("multi")
    study = multi_study(tmp / "mo.toml", "mo",
                        extra=f"\n[constraints]\nmax_params = {MAX_PARAMS}\n")
    res = run_cli("run", str(study), "--workers", "2", cwd=tmp)
    assert res.returncode == 0, res.stderr
    return tmp, study, res


def test_a_multi_objective_run_ends_with_its_pareto_front(multi):
    tmp, study, res = multi
    assert "Pareto front" in res.stdout and "the front's best trial" in res.stdout
    status = json.loads(run_cli("status", str(study), "--json", cwd=tmp).stdout)
    ts = trials(f"sqlite:///{tmp / 'mo.db'}", "mo")
    assert status["complete"] + status["pruned"] == 12
    check_front(status["front"], ts, [StudyDirection.MAXIMIZE, StudyDirection.MINIMIZE])
    for member in status["front"]:
        assert set(member["values"]) == {"val_accuracy", "n_params"}
        assert member["values"]["n_params"] <= MAX_PARAMS
    # A multi-objective trial reports nothing per epoch (Optuna cannot prune it).
    assert all(not t.intermediate_values for t in ts)


def test_the_constraint_is_recorded_and_an_oversized_network_is_not_trained(multi):
    tmp, _study, _res = multi
    ts = trials(f"sqlite:///{tmp / 'mo.db'}", "mo")
    for t in ts:
        n = t.user_attrs["n_params"]
        assert t.constraints == {"max_params": n - MAX_PARAMS}
        if n > MAX_PARAMS:
            assert t.state == TrialState.PRUNED and "epochs_run" not in t.user_attrs
            assert t.user_attrs["pruned_reason"].startswith(
                f"infeasible: {n:,} parameters > constraints.max_params {MAX_PARAMS:,}")


def test_export_takes_any_front_member_and_only_feasible_ones(multi):
    tmp, study, _res = multi
    status = json.loads(run_cli("status", str(study), "--json", cwd=tmp).stdout)
    default = json.loads((tmp / "mo-best.json").read_text())
    assert default["trial"]["number"] == status["front"][0]["number"]  # best accuracy first
    for member in status["front"]:
        res = run_cli("export", str(study), "--trial", str(member["number"]), cwd=tmp)
        assert res.returncode == 0, res.stderr
        assert json.loads(res.stdout)["trial"]["values"] == member["values"]
    pruned = [t for t in trials(f"sqlite:///{tmp / 'mo.db'}", "mo")
              if t.state == TrialState.PRUNED]
    for t in pruned[:1]:  # over max_params (never trained): it says which bound
        res = run_cli("export", str(study), "--trial", str(t.number), cwd=tmp)
        assert res.returncode == 2 and "is infeasible (max_params: " in res.stderr


def test_trials_csv_and_the_report_of_a_multi_objective_study(multi):
    tmp, study, _res = multi
    res = run_cli("trials", str(study), "--format", "csv", cwd=tmp)
    rows = list(csv.DictReader(io.StringIO(res.stdout)))
    ts = trials(f"sqlite:///{tmp / 'mo.db'}", "mo")
    assert len(rows) == len(ts)
    for row, t in zip(rows, ts, strict=True):
        assert row["feasible"] == str(t.user_attrs["n_params"] <= MAX_PARAMS)
        if t.state == TrialState.COMPLETE:
            assert float(row["value"]) == t.values[0]
    res = run_cli("report", str(study), "--out", str(tmp / "report"), cwd=tmp)
    assert res.returncode == 0, res.stderr
    assert (tmp / "report" / "pareto_front.png").stat().st_size > 10_000


def test_a_prior_leaves_out_never_trained_trials_and_no_plot_counts_it(multi):
    tmp, _study, _res = multi
    db = f"sqlite:///{tmp / 'mo.db'}"
    free = multi_study(tmp / "free.toml", "free", trials=2)  # mo's objectives, no bound
    res = run_cli("run", str(free), "--storage", db, "--from-study", "mo", cwd=tmp)
    assert res.returncode == 0, res.stderr
    trained = {f"mo#{t.number}" for t in trials(db, "mo") if "epochs_run" in t.user_attrs}
    ts = trials(db, "free")
    priors = [t for t in ts if record.is_prior(t)]
    assert {t.user_attrs[record.PRIOR] for t in priors} == trained  # not the oversized ones
    res = run_cli("export", str(free), "--storage", db, "--trial", str(priors[0].number),
                  cwd=tmp)
    assert res.returncode == 2 and "is a prior, mo#" in res.stderr
    own = OwnTrials(study_name="free", storage=db)  # what the report plots: numbers kept
    assert [t.number for t in own.trials] == [t.number for t in ts if not record.is_prior(t)]
    assert len(own.trials) == 2 and len(own.get_trials(states=(TrialState.COMPLETE,))) <= 2


def test_latency_with_folds(tmp_path):
    # With folds there is no validation split: latency is timed on a training row.
    study = multi_study(tmp_path / "lf.toml", "lf", trials=3,
                        metric='["val_accuracy", "latency_ms"]')
    study.write_text(study.read_text().replace('source = "iris"', 'source = "iris"\nfolds = 3'))
    res = run_cli("run", str(study), cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    ts = trials(f"sqlite:///{tmp_path / 'lf.db'}", "lf")
    assert [t.state for t in ts] == [TrialState.COMPLETE] * 3
    assert all(t.values[1] == t.user_attrs["latency_ms"] > 0 for t in ts)


def test_a_constrained_single_objective_study_keeps_its_pruning(tmp_path):
    study = write_study(tmp_path / "c.toml", name="c", trials=10, epochs=20)
    study.write_text(study.read_text() + f"\n[constraints]\nmax_params = {MAX_PARAMS}\n")
    res = run_cli("run", str(study), "--workers", "2", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    ts = trials(f"sqlite:///{tmp_path / 'c.db'}", "c")
    trained = [t for t in ts if "epochs_run" in t.user_attrs]
    assert trained and all(t.intermediate_values for t in trained)  # it reports, to prune
    export = json.loads((tmp_path / "c-best.json").read_text())
    # one network: an ensemble would cost the sum of its members' parameters
    assert export["format"] == "nnsearch.trial/1"
    assert export["trial"]["user_attrs"]["n_params"] <= MAX_PARAMS


def test_no_infeasible_trial_is_ever_exported(tmp_path):
    # Every network predicts one row in more than a nanosecond: all trials infeasible.
    study = write_study(tmp_path / "l.toml", name="l", trials=3, epochs=5)
    study.write_text(study.read_text() + "\n[constraints]\nmax_latency_ms = 1e-6\n")
    res = run_cli("run", str(study), cwd=tmp_path)
    assert res.returncode == 1, res.stderr
    assert "all infeasible" in res.stderr and not (tmp_path / "l-best.json").exists()
    ts = trials(f"sqlite:///{tmp_path / 'l.db'}", "l")
    complete = [t for t in ts if t.state == TrialState.COMPLETE]
    assert complete and all(t.constraints["max_latency_ms"] > 0 for t in complete)
    res = run_cli("export", str(study), "--trial", str(complete[0].number), cwd=tmp_path)
    assert res.returncode == 2
    assert re.search(r"is infeasible \(max_latency_ms: [0-9.e-]+ > 1e-06\)", res.stderr)


def test_a_multi_objective_study_on_postgres(tmp_path, pg_url):
    study = multi_study(tmp_path / "pg.toml", "pgmo", trials=8,
                        metric='["val_accuracy", "latency_ms"]')
    res = run_cli("run", str(study), "--workers", "2", "--storage", pg_url, cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    status = json.loads(run_cli("status", str(study), "--storage", pg_url, "--json",
                                cwd=tmp_path).stdout)
    ts = trials(pg_url, "pgmo")
    assert len(own_complete(ts)) == 8
    assert all(t.user_attrs["latency_ms"] > 0 for t in ts)
    check_front(status["front"], ts, [StudyDirection.MAXIMIZE, StudyDirection.MINIMIZE])


def test_from_study_adds_a_prior_once_and_counts_it_in_no_budget(tmp_path):
    source = write_study(tmp_path / "src.toml", name="src", trials=8)
    assert run_cli("run", str(source), "--workers", "2", cwd=tmp_path).returncode == 0
    db = f"sqlite:///{tmp_path / 'src.db'}"
    # A narrower space: one layer only, so the source's 2-layer trials are left out.
    target = write_study(tmp_path / "dst.toml", name="dst", trials=4)
    target.write_text(target.read_text().replace("n_layers = { low = 1, high = 2 }",
                                                 "n_layers = 1"))
    fitting = [t for t in trials(db, "src") if t.state in (TrialState.COMPLETE,
               TrialState.PRUNED) and t.params["n_layers"] == 1]
    for _ in range(2):  # twice: the prior is added once
        res = run_cli("run", str(target), "--storage", db, "--from-study", "src", cwd=tmp_path)
        assert res.returncode == 0, res.stderr
    ts = trials(db, "dst")
    priors = [t for t in ts if record.is_prior(t)]
    assert sorted(t.user_attrs[record.PRIOR] for t in priors) == sorted(
        f"src#{t.number}" for t in fitting)
    assert {t.user_attrs[record.PRIOR]: t.values for t in priors} == {
        f"src#{t.number}": t.values for t in fitting}
    own = [t for t in ts if not record.is_prior(t)]
    assert sum(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in own) == 4
    export = json.loads(run_cli("export", str(target), "--storage", db, cwd=tmp_path).stdout)
    assert export["trial"]["number"] in {t.number for t in own}
    # The same space but other fixed settings (20 epochs there, 10 here): nothing fits.
    shorter = write_study(tmp_path / "short.toml", name="short", trials=2, epochs=10)
    res = run_cli("run", str(shorter), "--storage", db, "--from-study", "src", cwd=tmp_path)
    assert res.returncode == 2 and "none of its 8 finished trial(s) fits" in res.stderr
    # Other objectives: refused, and the study it would have created is not there.
    other = multi_study(tmp_path / "mo.toml", "mo")
    res = run_cli("run", str(other), "--storage", db, "--from-study", "src", cwd=tmp_path)
    assert res.returncode == 2 and "a prior must have the same objectives" in res.stderr
    assert {"mo", "short"}.isdisjoint(optuna.get_all_study_names(db))


def test_priors_do_not_take_the_pruners_warm_up_from_a_studys_own_first_trials(tmp_path):
    """With priors, a small budget's own trials were all pruned at epoch 0 (the priors
    counted as the median pruner's startup trials) and run exited 1."""
    source = write_study(tmp_path / "old.toml", name="old", trials=15)
    assert run_cli("run", str(source), "--workers", "2", cwd=tmp_path).returncode == 0
    db = f"sqlite:///{tmp_path / 'old.db'}"
    chain = write_study(tmp_path / "chain.toml", name="chain", trials=2)  # startup: 2
    res = run_cli("run", str(chain), "--storage", db, "--workers", "1", "--from-study", "old",
                  cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    own = [t for t in trials(db, "chain") if not record.is_prior(t)]
    assert [t.state for t in own] == [TrialState.COMPLETE] * 2


# ----- units -----------------------------------------------------------------------------
def test_no_trial_to_export_counts_priors_as_priors():
    from nnsearch.search.errors import UsageError
    from nnsearch.search.export import pick_trial

    study = optuna.create_study(study_name="chain", direction="maximize")
    dist = {"x": optuna.distributions.FloatDistribution(0, 1)}
    study.add_trial(optuna.trial.create_trial(params={"x": 0.5}, distributions=dist,
                                              value=0.9, user_attrs={record.PRIOR: "old#1"}))
    study.add_trial(optuna.trial.create_trial(state=TrialState.PRUNED, params={"x": 0.1},
                                              distributions=dist, value=0.2))
    with pytest.raises(UsageError, match=r"\(1 trial\(s\) of its own, none complete; and 1 "
                       r"prior\(s\) from another study, which are never exported\)"):
        pick_trial(study, None)


def test_the_front_is_the_non_dominated_feasible_trials_best_first():
    directions = [StudyDirection.MAXIMIZE, StudyDirection.MINIMIZE]
    study = optuna.create_study(directions=directions)
    for values, excess in [([0.9, 500], 0), ([0.8, 100], 0), ([0.8, 200], 0), ([0.95, 900], 0),
                           ([0.99, 50], 10.0),  # the best, but infeasible
                           ([0.9, 500], -5.0)]:
        trial = study.ask()
        trial.set_constraint("max_params", excess)  # as the objective records it
        study.tell(trial, values)
    front = pareto_front(study.trials, directions)
    assert [t.number for t in front] == [3, 0, 5, 1]
    assert dominates([0.8, 100], [0.8, 200], signs(directions))
    assert not dominates([0.9, 500], [0.9, 500], signs(directions))


def test_a_retried_trial_records_its_own_constraints():
    from nnsearch.search.record import RETRY

    study = optuna.create_study()
    trial = study.ask({"x": optuna.distributions.FloatDistribution(0, 1)})
    trial.set_constraint("max_params", 5.0)
    study.tell(trial, state=TrialState.FAIL)
    RETRY(study, study.trials[0])
    retry = study.trials[-1]
    assert retry.state == TrialState.WAITING and retry.constraints == {}
    assert retry.system_attrs["failed_trial"] == 0  # a retry, not a new trial


@pytest.mark.parametrize("raw", [[1, 2, 3], ["relu", "tanh"], {"low": 8, "high": 64},
                                 {"low": 8, "high": 64, "step": 8},
                                 {"low": 1e-4, "high": 1e-1, "log": True}])
def test_a_params_distribution_is_the_one_its_sample_suggests(raw):
    name = {1: "n_layers", "relu": "activation"}.get(raw[0], "width") \
        if isinstance(raw, list) else ("learning_rate" if raw.get("log") else "width")
    param = parse_param(name, raw, "test")
    study = optuna.create_study()
    trial = study.ask()
    param.sample(trial)
    assert trial.distributions[name] == param.distribution()
    assert isinstance(param.distribution(), (CategoricalDistribution, IntDistribution,
                                             FloatDistribution))
