"""Versioned object storage with etcd-like semantics.

One global revision counter gives every write its resourceVersion. The change
log since the last compaction lets lists be served at an exact older revision
(pagination snapshots, resourceVersionMatch=Exact) and watches resume from any
revision after the compaction point; older revisions are "Expired" (410).
"""

from __future__ import annotations

import collections
import copy
import itertools
import threading
import time
from dataclasses import dataclass, field

StorageKey = tuple[str, str]          # (group, plural)
ObjectKey = tuple[str, str]           # (namespace or "", name)


class Expired(Exception):
    """The requested revision was compacted away (HTTP 410)."""


class TooLarge(Exception):
    """The requested revision is newer than anything the store has seen."""


@dataclass
class Event:
    rv: int
    storage_key: StorageKey
    key: ObjectKey
    type: str            # ADDED | MODIFIED | DELETED
    obj: dict            # the object after the change (for DELETED: last state, stamped with the delete's RV)
    old: dict | None     # the object before the change


_watch_ids = itertools.count(1)


@dataclass(eq=False)  # identity semantics: watchers live in a set
class Watcher:
    storage_key: StorageKey
    namespace: str | None
    matches: object            # callable(obj) -> bool
    description: dict
    id: int = field(default_factory=lambda: next(_watch_ids))
    cond: threading.Condition = field(default_factory=threading.Condition)
    queue: collections.deque = field(default_factory=collections.deque)
    stalled: bool = False
    drop: str | None = None     # None | "graceful" | "abrupt"
    started: float = field(default_factory=time.time)
    sent: int = 0

    def _selected(self, obj: dict | None) -> bool:
        if obj is None:
            return False
        if self.namespace is not None and obj.get("metadata", {}).get("namespace") != self.namespace:
            return False
        return bool(self.matches(obj))

    def offer(self, event: Event) -> None:
        """Queues what this watcher sees of `event`: an object moving into the
        selection is ADDED, moving out of it is DELETED (as kube-apiserver)."""
        now, before = self._selected(event.obj), self._selected(event.old)
        kind = event.type
        if kind == "MODIFIED":
            if now and not before:
                kind = "ADDED"
            elif before and not now:
                kind = "DELETED"
            elif not now:
                return
        elif not now:
            return
        with self.cond:
            self.queue.append((kind, event.obj))
            self.cond.notify_all()

    def push(self, kind: str, obj: dict) -> None:
        with self.cond:
            self.queue.append((kind, obj))
            self.cond.notify_all()

    def wake(self) -> None:
        with self.cond:
            self.cond.notify_all()


class Store:
    def __init__(self, start_rv: int = 1000):
        self.lock = threading.RLock()
        self.changed = threading.Condition(self.lock)
        self.rv = start_rv
        self.compacted_rv = start_rv
        self.objects: dict[StorageKey, dict[ObjectKey, dict]] = {}
        self.log: list[Event] = []
        self.watchers: set[Watcher] = set()

    # Reads

    def get(self, skey: StorageKey, key: ObjectKey) -> dict | None:
        with self.lock:
            obj = self.objects.get(skey, {}).get(key)
            return copy.deepcopy(obj) if obj is not None else None

    def snapshot(self, skey: StorageKey, at_rv: int | None = None) -> tuple[int, dict[ObjectKey, dict]]:
        """The objects of one type at revision `at_rv` (default: now)."""
        with self.lock:
            current = dict(self.objects.get(skey, {}))
            if at_rv is None or at_rv >= self.rv:
                if at_rv is not None and at_rv > self.rv:
                    raise TooLarge()
                return self.rv, copy.deepcopy(current)
            if at_rv < self.compacted_rv:
                raise Expired()
            for event in reversed(self.log):
                if event.rv <= at_rv:
                    break
                if event.storage_key != skey:
                    continue
                if event.old is None:
                    current.pop(event.key, None)
                else:
                    current[event.key] = event.old
            return at_rv, copy.deepcopy(current)

    def wait_for_rv(self, rv: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self.changed:
            while self.rv < rv:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self.changed.wait(left)
            return True

    # Writes (callers hold self.lock across read-modify-write)

    def commit(self, skey: StorageKey, key: ObjectKey, kind: str, obj: dict | None) -> dict:
        """Writes one change at a new revision and tells the watchers.
        `obj` is the new state (for DELETED, None: the last state is used)."""
        with self.lock:
            bucket = self.objects.setdefault(skey, {})
            old = bucket.get(key)
            self.rv += 1
            if kind == "DELETED":
                new = copy.deepcopy(old)
                new["metadata"]["resourceVersion"] = str(self.rv)
                del bucket[key]
            else:
                new = copy.deepcopy(obj)
                new["metadata"]["resourceVersion"] = str(self.rv)
                bucket[key] = new
            event = Event(self.rv, skey, key, kind, new, old)
            self.log.append(event)
            for watcher in list(self.watchers):
                if watcher.storage_key == skey:
                    watcher.offer(event)
            self.changed.notify_all()
            return copy.deepcopy(new)

    def compact(self, rv: int | None = None) -> int:
        with self.lock:
            target = self.rv if rv is None else min(max(rv, self.compacted_rv), self.rv)
            self.compacted_rv = target
            self.log = [e for e in self.log if e.rv > target]
            return target

    # Persistence across a restart of the server process (like etcd's data
    # surviving a kube-apiserver restart): objects, revision and history.

    def dump(self) -> dict:
        with self.lock:
            return {"rv": self.rv, "compactedRv": self.compacted_rv,
                    "objects": [[list(skey), list(key), obj] for skey, bucket in self.objects.items()
                                for key, obj in bucket.items()],
                    "log": [[e.rv, list(e.storage_key), list(e.key), e.type, e.obj, e.old] for e in self.log]}

    def load(self, state: dict) -> None:
        with self.lock:
            self.rv, self.compacted_rv = state["rv"], state["compactedRv"]
            self.objects = {}
            for skey, key, obj in state["objects"]:
                self.objects.setdefault(tuple(skey), {})[tuple(key)] = obj
            self.log = [Event(rv, tuple(skey), tuple(key), kind, obj, old)
                        for rv, skey, key, kind, obj, old in state["log"]]

    # Watches

    def start_watch(self, watcher: Watcher, from_rv: int | None, initial_events: bool) -> int:
        """Registers `watcher`. With `initial_events`, the current state is
        queued as synthetic ADDED events; otherwise every change after
        `from_rv` is replayed. Returns the revision the watch starts at."""
        with self.lock:
            if initial_events:
                for key, obj in sorted(self.objects.get(watcher.storage_key, {}).items()):
                    if watcher._selected(obj):
                        watcher.push("ADDED", copy.deepcopy(obj))
                start = self.rv
            else:
                if from_rv < self.compacted_rv:
                    raise Expired()
                for event in self.log:
                    if event.rv > from_rv and event.storage_key == watcher.storage_key:
                        watcher.offer(event)
                start = from_rv
            self.watchers.add(watcher)
            return start

    def stop_watch(self, watcher: Watcher) -> None:
        with self.lock:
            self.watchers.discard(watcher)
