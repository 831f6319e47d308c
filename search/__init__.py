"""The Optuna side of nnsearch: study files, objective, workers, storage, export.

Modules are imported where used (``search.cli`` imports lazily), so that a quick
command such as ``nnsearch status`` does not pay for scikit-learn or matplotlib.
"""
