"""Job owners: which app process must finish a job, and whether that process is gone.

A job whose app process dies (killed, out of memory) before the job finishes takes its pool's
workers with it, so nobody will ever finish the job. Each job therefore records its owner, the
app process that created it: ``"<host>/<pid namespace>/<pid>/<start time>"``, the start time
so that a recycled pid is not taken for the owner. An owner on another host (or in another
pid namespace, e.g. another container) cannot be checked. Where there is no ``/proc`` (macOS)
the pid alone is checked; on Windows nothing is.
"""

from __future__ import annotations

import os
import socket
import sys

__all__ = ["owner_of_this_process", "owner_is_gone", "describe_owner"]

_HAS_PROC = os.path.isdir("/proc/self")
_current_owner: tuple[int, str] | None = None  # (pid, owner) of this process, cached per pid


def owner_of_this_process() -> str:
    """This process as a job owner: ``"<host>/<pid namespace>/<pid>/<start time>"``."""
    global _current_owner
    pid = os.getpid()
    if _current_owner is None or _current_owner[0] != pid:  # a fork is another owner
        _current_owner = (pid, f"{socket.gethostname()}/{_pid_namespace()}/{pid}/{_start_time(pid)}")
    return _current_owner[1]


def owner_is_gone(owner: str) -> bool:
    """Whether ``owner`` ran in this host's pid namespace and that process no longer exists.

    ``False`` whenever it cannot be told (another host or container, a malformed owner, Windows).
    """
    mine = owner_of_this_process()
    if owner == mine:
        return False
    host, namespace, pid_text, start = (owner.rsplit("/", 3) + ["", "", ""])[:4]
    my_host, my_namespace = mine.rsplit("/", 3)[:2]
    if (host, namespace) != (my_host, my_namespace) or not pid_text.isdigit():
        return False
    pid = int(pid_text)
    if _HAS_PROC:
        fields = _stat_fields(pid)
        # A zombie has exited (its parent has not reaped it yet); another start time is
        # another process that was given the same pid.
        return fields is None or fields[0] in ("Z", "X") or (start != "" and fields[19:20] != [start])
    if sys.platform == "win32":  # os.kill(pid, 0) would terminate the process there
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # it exists, as another user's process
        return False
    return False


def describe_owner(owner: str) -> str:
    """``owner`` for people: ``"the app process <pid> on <host>"``."""
    host, _, pid = owner.rsplit("/", 3)[:3]
    return f"the app process {pid} on {host}"


def _pid_namespace() -> str:
    """The inode of this process's pid namespace ("" without /proc): pids mean nothing outside it."""
    try:
        return os.readlink("/proc/self/ns/pid").partition("[")[2].rstrip("]")
    except OSError:
        return ""


def _stat_fields(pid: int) -> list[str] | None:
    """The fields of ``/proc/<pid>/stat`` after the command name, or ``None`` if no such process."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            text = stat.read().decode("ascii", "replace")
    except OSError:
        return None
    # The command name (field 2) is in parentheses and may itself hold spaces or ")".
    return text.rpartition(")")[2].split()


def _start_time(pid: int) -> str:
    """When ``pid`` started, in clock ticks after boot (field 22 of its stat; "" if unknown)."""
    fields = _stat_fields(pid) if _HAS_PROC else None
    return fields[19] if fields is not None and len(fields) > 19 else ""
