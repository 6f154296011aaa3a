"""Memo of compiled filters: a repeated query skips building its SQLAlchemy condition.

https://hl7.org/fhir/R4/search.html

Building the condition (and counting index rows to choose the driving term) costs more CPU
than running the resulting SQL for most queries, and clients repeat the same filters. The
condition depends only on the filter tree, the type, the dialect, the base URL and the
registry, so it is kept per such key. Row counts steer the plan but not the result, so a
remembered plan can only be slower, never wrong; entries expire after `TTL` seconds so a
plan follows the data as it grows. Filters that read the clock (`ap` prefix) or the database
(`:in` / `:not-in` ValueSets) are never kept. An access value is plain data and part of the
key, so each caller's policy is compiled once per filter, not once per request.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from typing import Any

from fhir_server.search.ast import And, Chain, Has, Node, Not, Or, Param, TypeSwitch
from fhir_server.search.registry import Registry

__all__ = ["MAX_ENTRIES", "TTL", "WhereCache", "cacheable"]

TTL = 60.0
MAX_ENTRIES = 2048


def cacheable(node: Node | None) -> bool:
    """Whether the condition compiled from `node` depends on nothing but the node itself."""
    match node:
        case None:
            return True
        case Param(kind=kind, modifier=mod, values=values):
            # ValueSets and code-system hierarchies change under a query: they are read each time
            reads_terminology = mod in ("in", "not-in") or (kind == "token" and mod in ("above", "below"))
            return not reads_terminology and all(v.prefix != "ap" for v in values)
        case And(items) | Or(items):
            return all(cacheable(i) for i in items)
        case Not(item):
            return cacheable(item)
        case Chain(node=inner) | Has(node=inner):
            return cacheable(inner)
        case TypeSwitch(cases):
            return all(cacheable(n) for _t, n in cases)
    return True  # Compartment, Policy (an access value): plain data


class WhereCache:
    """A thread-safe LRU of compiled conditions, tied to the registry state they came from."""

    def __init__(self, max_entries: int = MAX_ENTRIES, ttl: float = TTL) -> None:
        self._entries: OrderedDict[Any, tuple[Registry, int, float, Any]] = OrderedDict()
        self._lock = threading.Lock()
        self.max_entries = max_entries
        self.ttl = ttl

    def get(self, key: Any, reg: Registry) -> Any | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            owner, generation, stored, value = entry
            if owner is not reg or generation != reg.generation or time.monotonic() - stored > self.ttl:
                del self._entries[key]
                return None
            self._entries.move_to_end(key)
            return value

    def put(self, key: Any, reg: Registry, value: Any) -> None:
        with self._lock:
            self._entries[key] = (reg, reg.generation, time.monotonic(), value)
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)

    def size(self) -> int:
        return len(self._entries)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
