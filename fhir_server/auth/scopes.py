"""SMART scopes (v1 and v2), parsed once into an immutable, hashable value.

https://hl7.org/fhir/smart-app-launch/STU2.2/scopes-and-launch-context.html

`patient/Observation.rs?category=laboratory`, `user/*.cruds`, `system/Patient.r` (v2) and
`patient/*.read`, `user/Observation.write`, `system/*.*` (v1) become `ResourceScope` values;
`openid`, `fhirUser`, `launch`, `launch/patient`, `offline_access`, `online_access` and our
`btg` (break-the-glass) become flags. Anything else is refused by `parse_scopes`, so a typo
never widens nor silently narrows what a client asked for.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import parse_qsl

__all__ = ["INTERACTION_LETTERS", "ResourceScope", "ScopeError", "ScopeSet", "letter_for", "parse_scopes"]

INTERACTION_LETTERS = "cruds"
_CONTEXTS = ("patient", "user", "system")
_V1 = {"read": "rs", "write": "cud", "*": "cruds"}
_SCOPE = re.compile(r"^(patient|user|system)/(\*|[A-Z][A-Za-z]{1,63})\.([a-z*]+)(?:\?(.+))?$")
_FLAGS = frozenset({"openid", "fhirUser", "profile", "launch", "launch/patient", "launch/encounter",
                    "offline_access", "online_access", "btg"})


# The SMART v2 letter each FHIR interaction code (the route table's names) needs.
# https://hl7.org/fhir/smart-app-launch/STU2.2/scopes-and-launch-context.html#scopes-for-requesting-fhir-resources
_INTERACTION_LETTER = {
    "create": "c",
    "read": "r", "vread": "r", "history-instance": "r",
    "update": "u", "patch": "u",
    "delete": "d",
    "search-type": "s", "search-system": "s", "history-type": "s", "history-system": "s",
}


def letter_for(interaction: str) -> str:
    """The scope letter (c r u d s) a FHIR interaction code needs; KeyError for others."""
    return _INTERACTION_LETTER[interaction]


class ScopeError(ValueError):
    """A scope string that is not SMART v1 or v2 syntax (OAuth error `invalid_scope`)."""


@dataclass(frozen=True, slots=True)
class ResourceScope:
    """One resource scope: context, type (or '*'), the interactions it grants, its constraints."""

    context: str  # patient | user | system
    res_type: str  # a resource type or "*"
    letters: str  # subset of "cruds", in that order
    constraints: tuple[tuple[str, str], ...] = ()  # granular scope: ?param=value&...

    def __str__(self) -> str:
        query = "&".join(f"{k}={v}" for k, v in self.constraints)
        return f"{self.context}/{self.res_type}.{self.letters}" + (f"?{query}" if query else "")

    def covers(self, other: ResourceScope) -> bool:
        """Whether a client allowed `self` may be granted `other` (no escalation)."""
        return (
            self.context == other.context
            and self.res_type in ("*", other.res_type)
            and set(other.letters) <= set(self.letters)
            and set(self.constraints) <= set(other.constraints)
        )


def _parse_one(text: str) -> ResourceScope:
    m = _SCOPE.match(text)
    if m is None:
        raise ScopeError(f"'{text}' is not a SMART scope (context/Type.cruds)")
    context, res_type, action, query = m.groups()
    if action in _V1:
        letters = _V1[action]
        if query:
            raise ScopeError(f"'{text}': only SMART v2 scopes take ?param=value constraints")
    else:
        letters = action
        if letters not in _ordered_subsets():
            raise ScopeError(f"'{text}': interactions must be letters of 'cruds', in that order, each once")
    constraints: tuple[tuple[str, str], ...] = ()
    if query:
        pairs = parse_qsl(query, keep_blank_values=True, strict_parsing=False)
        if not pairs or any(not k or not v for k, v in pairs):
            raise ScopeError(f"'{text}': a constraint must be param=value")
        constraints = tuple(sorted(pairs))
    return ResourceScope(context, res_type, letters, constraints)


_SUBSETS: frozenset[str] | None = None


def _ordered_subsets() -> frozenset[str]:
    global _SUBSETS
    if _SUBSETS is None:
        out = set()
        for mask in range(1, 32):
            out.add("".join(ch for i, ch in enumerate(INTERACTION_LETTERS) if mask & (1 << i)))
        _SUBSETS = frozenset(out)
    return _SUBSETS


@dataclass(frozen=True, slots=True)
class ScopeSet:
    """The scopes of a token. Hashable, so per-scope-set work (SQL filters) can be cached by it."""

    resources: tuple[ResourceScope, ...] = ()
    flags: frozenset[str] = field(default_factory=frozenset)
    unrestricted: bool = False  # FHIR_AUTH=off and the administrator

    @classmethod
    def all(cls) -> ScopeSet:
        return cls((ResourceScope("system", "*", INTERACTION_LETTERS),), frozenset(), True)

    # -- questions interactions ask ------------------------------------------------------------
    def allows(self, res_type: str, letter: str) -> bool:
        """Whether some scope grants interaction `letter` (c r u d s) on `res_type`."""
        if self.unrestricted:
            return True
        return any(s.res_type in ("*", res_type) and letter in s.letters for s in self.resources)

    def constraints(self, res_type: str, letter: str) -> tuple[tuple[tuple[str, str], ...], ...] | None:
        """Granular limits for (`res_type`, `letter`).

        None: no constraint (some matching scope is unconstrained). Otherwise a tuple of
        alternatives (OR), each a tuple of (param, value) pairs (AND) to add to the query;
        an empty tuple means nothing is allowed (ask `allows` first).
        """
        if self.unrestricted:
            return None
        found = []
        for s in self.resources:
            if s.res_type in ("*", res_type) and letter in s.letters:
                if not s.constraints:
                    return None
                found.append(s.constraints)
        return tuple(dict.fromkeys(found))

    @property
    def contexts(self) -> frozenset[str]:
        return frozenset(s.context for s in self.resources)

    @property
    def context(self) -> str | None:
        """The narrowest context any resource scope has: patient, then user, then system."""
        have = self.contexts
        for ctx in _CONTEXTS:
            if ctx in have:
                return ctx
        return None

    def has(self, flag: str) -> bool:
        return flag in self.flags

    @property
    def btg(self) -> bool:
        return "btg" in self.flags

    # -- grants ------------------------------------------------------------------------------
    def covers(self, requested: ScopeSet) -> bool:
        """Whether every scope in `requested` is within this (allowed) set."""
        if self.unrestricted:
            return True
        return requested.flags <= self.flags and all(
            any(a.covers(r) for a in self.resources) for r in requested.resources
        )

    def excess(self, requested: ScopeSet) -> list[str]:
        """The requested scopes this (allowed) set does not cover, as text."""
        if self.unrestricted:
            return []
        out = sorted(requested.flags - self.flags)
        out += [str(r) for r in requested.resources if not any(a.covers(r) for a in self.resources)]
        return out

    def __str__(self) -> str:
        return " ".join([*(str(s) for s in self.resources), *sorted(self.flags)])


def parse_scopes(text: str | None) -> ScopeSet:
    """Parse a space-separated scope string; raises `ScopeError` on anything unknown."""
    resources: dict[ResourceScope, None] = {}
    flags: set[str] = set()
    for item in (text or "").split():
        if item in _FLAGS:
            flags.add(item)
        else:
            resources[_parse_one(item)] = None
    return ScopeSet(tuple(resources), frozenset(flags))
