"""A storage that hands every call of Optuna's ``BaseStorage`` to the storage it wraps,
heartbeats included, for the wrappers that change a few of them
(``worker_storage.WorkerStorage``, ``trial_cache.TrialCache``), as Optuna's own cache
wraps its RDB storage. Where the wrapped storage has no heartbeat, neither has this
(Optuna asks ``get_heartbeat_interval``, None)."""

from __future__ import annotations

from collections.abc import Callable, Container, Sequence
from typing import Any

import optuna
from optuna.distributions import BaseDistribution
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

from ._optuna import HeartbeatBase, stale_trial_ids


class Delegating(optuna.storages.BaseStorage, HeartbeatBase):
    def __init__(self, base: optuna.storages.BaseStorage) -> None:
        self.base = base

    def create_new_study(self, directions: Sequence[StudyDirection],
                         study_name: str | None = None) -> int:
        return self.base.create_new_study(directions, study_name)

    def delete_study(self, study_id: int) -> None:
        self.base.delete_study(study_id)

    def set_study_user_attr(self, study_id: int, key: str, value: Any) -> None:
        self.base.set_study_user_attr(study_id, key, value)

    def set_study_system_attr(self, study_id: int, key: str, value: Any) -> None:
        self.base.set_study_system_attr(study_id, key, value)

    def get_study_id_from_name(self, study_name: str) -> int:
        return self.base.get_study_id_from_name(study_name)

    def get_study_name_from_id(self, study_id: int) -> str:
        return self.base.get_study_name_from_id(study_id)

    def get_study_directions(self, study_id: int) -> list[StudyDirection]:
        return self.base.get_study_directions(study_id)

    def get_study_user_attrs(self, study_id: int) -> dict[str, Any]:
        return self.base.get_study_user_attrs(study_id)

    def get_study_system_attrs(self, study_id: int) -> dict[str, Any]:
        return self.base.get_study_system_attrs(study_id)

    def get_all_studies(self) -> list[Any]:
        return self.base.get_all_studies()

    def create_new_trial(self, study_id: int, template_trial: FrozenTrial | None = None) -> int:
        return self.base.create_new_trial(study_id, template_trial)

    def set_trial_param(self, trial_id: int, param_name: str, param_value_internal: float,
                        distribution: BaseDistribution) -> None:
        self.base.set_trial_param(trial_id, param_name, param_value_internal, distribution)

    def get_trial_id_from_study_id_trial_number(self, study_id: int, trial_number: int) -> int:
        return self.base.get_trial_id_from_study_id_trial_number(study_id, trial_number)

    def set_trial_state_values(self, trial_id: int, state: TrialState,
                               values: Sequence[float] | None = None) -> bool:
        return self.base.set_trial_state_values(trial_id, state, values)

    def set_trial_intermediate_value(self, trial_id: int, step: int,
                                     intermediate_value: float) -> None:
        self.base.set_trial_intermediate_value(trial_id, step, intermediate_value)

    def set_trial_user_attr(self, trial_id: int, key: str, value: Any) -> None:
        self.base.set_trial_user_attr(trial_id, key, value)

    def set_trial_system_attr(self, trial_id: int, key: str, value: Any) -> None:
        self.base.set_trial_system_attr(trial_id, key, value)

    def get_trial(self, trial_id: int) -> FrozenTrial:
        return self.base.get_trial(trial_id)

    def get_all_trials(self, study_id: int, deepcopy: bool = True,
                       states: Container[TrialState] | None = None) -> list[FrozenTrial]:
        return self.base.get_all_trials(study_id, deepcopy=deepcopy, states=states)

    def get_best_trial(self, study_id: int) -> FrozenTrial:
        return self.base.get_best_trial(study_id)

    def remove_session(self) -> None:
        self.base.remove_session()

    # ----- the heartbeat (Optuna's BaseHeartbeat, through _optuna.HeartbeatBase) ---------
    def record_heartbeat(self, trial_id: int) -> None:
        self.base.record_heartbeat(trial_id)  # type: ignore[attr-defined]

    def stale_trials(self, study_id: int) -> list[int]:
        return stale_trial_ids(self.base, study_id)

    def get_heartbeat_interval(self) -> int | None:
        interval = getattr(self.base, "get_heartbeat_interval", None)
        return interval() if interval is not None else None

    def get_heartbeat_stale_trial_callback(
            self) -> Callable[[optuna.Study, FrozenTrial], None] | None:
        callback = getattr(self.base, "get_heartbeat_stale_trial_callback", None)
        return callback() if callback is not None else None
