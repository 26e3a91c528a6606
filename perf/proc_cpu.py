"""CPU time of process trees from ``/proc``: what a whole running system spends, group by group.

A group is a set of root processes plus all their descendants. Its CPU at
one moment is the sum over its live processes of ``utime + stime + cutime +
cstime``: a child that exited and was reaped (a PostgreSQL backend that
disconnected) moved its time into its parent's ``cutime``/``cstime``, so
every process of the tree is counted exactly once, alive or reaped. The
difference of two snapshots is the group's CPU over that interval.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

__all__ = ["ProcessTable", "cpu_delta", "cpu_seconds"]

_TICK_S = 1.0 / os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class _Stat:
    ppid: int
    own_s: float
    """utime + stime."""
    reaped_s: float
    """cutime + cstime: the children this process waited for."""


class ProcessTable:
    """One reading of every process's parent and CPU times."""

    def __init__(self, proc: Path = Path("/proc")) -> None:
        self._proc = proc
        self.stats: dict[int, _Stat] = {}
        for entry in proc.iterdir():
            if entry.name.isdigit():
                stat = _read_stat(entry / "stat")
                if stat is not None:
                    self.stats[int(entry.name)] = stat
        self._children: dict[int, list[int]] = {}
        for pid, stat in self.stats.items():
            self._children.setdefault(stat.ppid, []).append(pid)

    def children(self, pid: int) -> list[int]:
        return list(self._children.get(pid, ()))

    def tree(self, root: int) -> list[int]:
        """``root`` and all its descendants that are alive (or not yet reaped)."""
        found, todo = [], [root]
        while todo:
            pid = todo.pop()
            if pid in self.stats:
                found.append(pid)
                todo.extend(self._children.get(pid, ()))
        return found

    def cmdline(self, pid: int) -> str:
        try:
            return (self._proc / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            return ""

    def own_seconds(self, pid: int) -> float:
        """CPU of ``pid`` alone (no children), 0 when it is gone."""
        stat = self.stats.get(pid)
        return stat.own_s if stat else 0.0

    def tree_seconds(self, root: int) -> float:
        """CPU of ``root``'s whole tree, reaped children included."""
        return sum(self.stats[p].own_s + self.stats[p].reaped_s for p in self.tree(root))


def cpu_seconds(table: ProcessTable, groups: Mapping[str, Iterable[int]], alone: Mapping[str, Iterable[int]] = {}
                ) -> dict[str, float]:
    """CPU seconds so far of each group: ``groups`` count whole trees, ``alone`` only the processes themselves.

    ``alone`` is for a parent whose other children belong to other groups (the supervisor:
    its components are groups of their own).
    """
    totals = {name: sum(table.tree_seconds(pid) for pid in roots) for name, roots in groups.items()}
    for name, pids in alone.items():
        totals[name] = totals.get(name, 0.0) + sum(table.own_seconds(pid) for pid in pids)
    return totals


def cpu_delta(before: Mapping[str, float], after: Mapping[str, float]) -> dict[str, float]:
    """CPU seconds each group spent between two :func:`cpu_seconds` readings."""
    return {name: after[name] - before.get(name, 0.0) for name in after}


def _read_stat(path: Path) -> _Stat | None:
    try:
        text = path.read_text()
    except OSError:
        return None  # it exited meanwhile
    fields = text[text.rfind(")") + 2:].split()  # the name may hold spaces and parentheses
    return _Stat(int(fields[1]), (int(fields[11]) + int(fields[12])) * _TICK_S,
                 (int(fields[13]) + int(fields[14])) * _TICK_S)
