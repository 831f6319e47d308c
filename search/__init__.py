"""The Optuna side of nnsearch: study files, objective, workers, storage, export."""

from .data import DataSpec, Dataset, load_data
from .errors import UsageError
from .studyfile import StudySpec, load_study_file

__all__ = ["DataSpec", "Dataset", "StudySpec", "UsageError", "load_data", "load_study_file"]
