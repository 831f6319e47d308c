"""train_trial: the same result whatever BLAS threading its caller set up."""

from threadpoolctl import threadpool_limits

from nnsearch.search.data import DataSpec, load_data
from nnsearch.search.training import train_trial


def test_train_trial_is_bit_identical_under_a_multithreaded_caller():
    # A worker runs BLAS on one thread; `nnsearch train` runs in a fresh process
    # whose BLAS would use every core. A GEMM split across threads sums in another
    # order, and the retrained network would drift from the trial it reproduces.
    data = load_data(DataSpec("digits", shift=1))
    network = {"layer_sizes": [64, 700, 10], "activation": "leaky_relu", "init": "glorot_uniform",
               "dropout": 0.3, "seed": 3}
    training = {"epochs": 3, "batch_size": 32, "learning_rate": 1e-3, "l2": 1e-4,
                "seed": 3, "log_every": 0}
    with threadpool_limits(1):
        one = train_trial(network, training, data)
    with threadpool_limits(2):
        two = train_trial(network, training, data)
    assert (one[0].flat == two[0].flat).all()
    assert one[2:4] == two[2:4]


def test_a_network_over_the_most_a_network_holds_ends_pruned_not_failed(tmp_path, monkeypatch):
    # Without [constraints] a space may still reach networks too big to build: such a
    # trial is not trained and ends pruned with the reason (it raised in Network and
    # every trial printed a traceback, five failures stopping the worker).
    import optuna
    from optuna.trial import TrialState

    from nnsearch.search import objective
    from nnsearch.search.study import open_study, target_from_args
    from nnsearch.search.worker import Worker
    from tests.helpers import run_cli, write_study

    path = write_study(tmp_path / "small.toml", trials=8, epochs=2)
    assert run_cli("create", str(path), cwd=tmp_path).returncode == 0
    monkeypatch.setattr(objective, "MAX_PARAMS", 300)  # iris: 67 to 1,315 parameters here
    with open_study(target_from_args(str(path), None, None), heartbeat=True,
                    sampler_offset=0) as opened:
        assert Worker(opened, 8, None).run() == 8
    trials = optuna.load_study(study_name="small", storage=f"sqlite:///{tmp_path / 'small.db'}"
                               ).trials
    over = [t for t in trials if t.user_attrs["n_params"] > 300]
    assert over and all(t.state == TrialState.PRUNED and "epochs_run" not in t.user_attrs
                        and t.user_attrs["pruned_reason"].startswith(
                            f"infeasible: {t.user_attrs['n_params']:,} parameters > the most "
                            "a network holds (300)") for t in over)
    assert not [t for t in trials if t.state == TrialState.FAIL]
