"""The command table: name -> command class (its arguments next to its action)."""

from ._base import Command
from .studies import (
    CreateCommand,
    EnqueueCommand,
    ExportCommand,
    ReportCommand,
    RunCommand,
    StatusCommand,
    TrialsCommand,
    WorkerCommand,
)
from .tools import (
    DashboardCommand,
    DoctorCommand,
    InitCommand,
    PredictCommand,
    ProxyCommand,
    TrainCommand,
)

COMMANDS: dict[str, type[Command]] = {
    "init": InitCommand,
    "create": CreateCommand,
    "run": RunCommand,
    "worker": WorkerCommand,
    "status": StatusCommand,
    "export": ExportCommand,
    "enqueue": EnqueueCommand,
    "trials": TrialsCommand,
    "train": TrainCommand,
    "doctor": DoctorCommand,
    "dashboard": DashboardCommand,
    "report": ReportCommand,
    "proxy": ProxyCommand,
    "predict": PredictCommand,
}

__all__ = ["COMMANDS", "Command"]
