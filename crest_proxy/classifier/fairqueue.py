"""Fair scheduling of windows: round-robin over tenants, then over each tenant's requests, one window a turn.

Issue 14: with a FIFO queue, one 300 KB prompt held the classifier for tens of seconds and every other
tenant waited behind it (or went unscreened under ``on_error: allow``). Here every pending job is cut into
windows and the worker takes one window per request per turn, so a one-sentence request from another
tenant waits for at most the model call in flight. Jobs whose caller gave up are dropped unscored.
Used by the worker thread only: no locking.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from crest_proxy.classifier.jobs import Job


@dataclass(eq=False)
class Task:
    """One job in progress: its windows (per text), the scores so far, and the next window to hand out."""

    job: Job
    windows: list[list[list[int]]]
    flat: list[list[int]] = field(init=False)
    scores: np.ndarray = field(init=False)
    handed: int = 0
    scored: int = 0
    closed: bool = False  # answered, failed or dropped: its remaining windows are never computed

    def __post_init__(self) -> None:
        self.flat = [w for text in self.windows for w in text]
        self.scores = np.zeros(len(self.flat))

    @property
    def finished(self) -> bool:
        """Every window has a score."""
        return self.scored == len(self.flat)

    @property
    def exhausted(self) -> bool:
        """Every window has been handed out (some may still be in the model call)."""
        return self.handed == len(self.flat)


@dataclass(frozen=True)
class Slot:
    """One window handed to a model call: whose, and which."""

    task: Task
    index: int

    @property
    def tokens(self) -> list[int]:
        """The window's token ids."""
        return self.task.flat[self.index]


class FairQueue:
    """Pending tasks by tenant, then by request (FIFO within a request); hands out windows round-robin."""

    def __init__(self) -> None:
        # tenant -> request -> tasks; OrderedDict order is the round-robin order (served ones move last).
        self._tenants: OrderedDict[str, OrderedDict[str, deque[Task]]] = OrderedDict()

    def __bool__(self) -> bool:
        return bool(self._tenants)

    def add(self, task: Task) -> None:
        """Queue ``task`` behind its request's earlier tasks; a new tenant or request takes the next turn.

        New flows first (as fq_codel does): a one-sentence request then waits only for the call in flight,
        and it gets one window before going to the back of the line like everyone else.
        """
        tenant, request = task.job.key
        if tenant not in self._tenants:
            self._tenants[tenant] = OrderedDict()
            self._tenants.move_to_end(tenant, last=False)
        requests = self._tenants[tenant]
        if request not in requests:
            requests[request] = deque()
            requests.move_to_end(request, last=False)
        requests[request].append(task)

    def take(self, max_rows: int, max_tokens: int) -> list[Slot]:
        """Up to ``max_rows`` windows and ``max_tokens`` tokens (one window at least), a request a turn."""
        slots: list[Slot] = []
        tokens = 0
        while self._tenants and len(slots) < max_rows:
            width = len(self._head().flat[self._head().handed])
            if slots and tokens + width > max_tokens:
                break  # the head keeps its turn: it opens the next call
            slots.append(self._advance())
            tokens += width
        return slots

    def remove(self, task: Task) -> None:
        """Take ``task`` out of the queue (no-op when it is no longer queued)."""
        tenant, request = task.job.key
        requests = self._tenants.get(tenant)
        tasks = requests.get(request) if requests is not None else None
        if tasks is not None and task in tasks:
            tasks.remove(task)
            self._set(tenant, request, tasks)

    def drop_cancelled(self) -> list[Task]:
        """Remove every task whose caller gave up; returns them (their windows are never computed)."""
        dropped = []
        for tenant in list(self._tenants):
            requests = self._tenants[tenant]
            for request in list(requests):
                kept = deque(t for t in requests[request] if not t.job.cancelled())
                dropped += [t for t in requests[request] if t not in kept]
                self._set(tenant, request, kept)
        return dropped

    def _head(self) -> Task:
        requests = next(iter(self._tenants.values()))
        return next(iter(requests.values()))[0]

    def _advance(self) -> Slot:
        """Hand out the head task's next window; its request and tenant go to the back of the line."""
        tenant, requests = next(iter(self._tenants.items()))
        request, tasks = next(iter(requests.items()))
        task = tasks[0]
        slot = Slot(task, task.handed)
        task.handed += 1
        if task.exhausted:  # queued tasks always have windows left to hand out
            tasks.popleft()
        requests.move_to_end(request)
        self._tenants.move_to_end(tenant)
        self._set(tenant, request, tasks)
        return slot

    def _set(self, tenant: str, request: str, tasks: deque[Task]) -> None:
        requests = self._tenants[tenant]
        if tasks:
            requests[request] = tasks
        else:
            requests.pop(request, None)
        if not requests:
            del self._tenants[tenant]


def finish_order(slots: Sequence[Slot]) -> list[Task]:
    """The distinct tasks among ``slots``, in first-seen order."""
    return list(dict.fromkeys(s.task for s in slots))
