"""The Optuna side of nnsearch: study files, objective, workers, storage, export.

Modules are imported where used (the commands import lazily), so that a quick
command such as ``nnsearch status`` does not pay for scikit-learn or matplotlib.
"""

import warnings

from optuna.exceptions import ExperimentalWarning

# We rely on Optuna's heartbeat, stale-trial sweeper and metric names knowingly;
# users need not read that they are "experimental" on every start.
warnings.filterwarnings("ignore", category=ExperimentalWarning, module=r"(nnsearch|optuna)\b")
