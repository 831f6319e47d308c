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
