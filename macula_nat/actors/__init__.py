"""OTP supervision trees on Trio: actors with mailboxes, monitors, subscriptions, supervisors.

Knows nothing of NATs. See ``supervision.md`` at the project root for the model and the table
mapping OTP's terms to these names.
"""

from .actor import NOREPLY, Actor, Fail, Stop
from .caller import Caller
from .child_spec import BRUTAL_KILL, INFINITY, ChildSpec, ChildType, Restart
from .dynamic_supervisor import DynamicSupervisor, DynamicSupervisorRef
from .embed import ROOT_SHUTDOWN, open_actor, run_actor
from .errors import (
    ActorError,
    ActorExited,
    AlreadyRegistered,
    CallingSelf,
    CallTimeout,
    ChildRunning,
    MailboxFull,
    MaxChildren,
    NoProc,
    NoSuchChild,
    RestartIntensityExceeded,
    StartFailed,
    UnexpectedMessage,
)
from .exit import Exit, is_normal
from .monitor import Down, Exited, MonitorRef
from .ref import ActorRef, ActorStatistics
from .registry import NamedRef, Registry
from .served import Served
from .supervisor import (
    ChildCounts,
    ChildInfo,
    Strategy,
    Supervisor,
    SupervisorRef,
    SupervisorStatistics,
)
from .topic import Subscription, Topic, TopicStatistics

__all__ = [
    "BRUTAL_KILL",
    "INFINITY",
    "NOREPLY",
    "ROOT_SHUTDOWN",
    "Actor",
    "ActorError",
    "ActorExited",
    "ActorRef",
    "ActorStatistics",
    "AlreadyRegistered",
    "CallTimeout",
    "Caller",
    "CallingSelf",
    "ChildCounts",
    "ChildInfo",
    "ChildRunning",
    "ChildSpec",
    "ChildType",
    "Down",
    "DynamicSupervisor",
    "DynamicSupervisorRef",
    "Exit",
    "Exited",
    "Fail",
    "MailboxFull",
    "MaxChildren",
    "MonitorRef",
    "NamedRef",
    "NoProc",
    "NoSuchChild",
    "Registry",
    "Restart",
    "RestartIntensityExceeded",
    "Served",
    "StartFailed",
    "Stop",
    "Strategy",
    "Subscription",
    "Supervisor",
    "SupervisorRef",
    "SupervisorStatistics",
    "Topic",
    "TopicStatistics",
    "UnexpectedMessage",
    "is_normal",
    "open_actor",
    "run_actor",
]
