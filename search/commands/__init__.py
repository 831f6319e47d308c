"""The command table: name -> command class (its arguments next to its action)."""

from ._base import Command
from .study import Create, Export, Report, Run, Status, Worker
from .tools import Dashboard, Doctor, Predict, Proxy, Train

COMMANDS: dict[str, type[Command]] = {
    "create": Create,
    "run": Run,
    "worker": Worker,
    "status": Status,
    "export": Export,
    "train": Train,
    "doctor": Doctor,
    "dashboard": Dashboard,
    "report": Report,
    "proxy": Proxy,
    "predict": Predict,
}

__all__ = ["COMMANDS", "Command"]
