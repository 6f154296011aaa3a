"""The search query as a typed tree that prints itself as an s-expression.

https://hl7.org/fhir/R4/search.html

`parse` builds it from the query string, rewrite passes return new trees, `compile` turns it
into SQL. Printing is for tests and `_explain`: `(and (token identifier 'sys|123') (date
birthdate ge '1970'))` reads better in a failing assertion than a dataclass repr.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Union

from fhir_server.search.access import Access

__all__ = [
    "And",
    "Chain",
    "Compartment",
    "Has",
    "Include",
    "Node",
    "Not",
    "Or",
    "Param",
    "Policy",
    "Query",
    "SortKey",
    "TypeSwitch",
    "Value",
    "conj",
]


def _q(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


@dataclass(frozen=True, slots=True)
class Value:
    """One comma-separated value; `prefix` only for number, date and quantity."""

    text: str
    prefix: str | None = None

    def __str__(self) -> str:
        return f"{self.prefix} {_q(self.text)}" if self.prefix else _q(self.text)


@dataclass(frozen=True, slots=True)
class Param:
    """`code[:modifier]=v1,v2`: any of the values (OR). `kind` is the registry strategy."""

    kind: str
    code: str
    values: tuple[Value, ...]
    modifier: str | None = None

    def __str__(self) -> str:
        head = f"{self.kind}:{self.modifier}" if self.modifier else self.kind
        return f"({head} {self.code} {' '.join(str(v) for v in self.values)})"


@dataclass(frozen=True, slots=True)
class Chain:
    """`code:target.rest`: resources whose `code` references a `target` matching `node`."""

    code: str
    target: str
    node: Node

    def __str__(self) -> str:
        return f"(chain {self.code} {self.target} {self.node})"


@dataclass(frozen=True, slots=True)
class Has:
    """`_has:source:code:rest`: resources referenced by a `source` (through `code`) matching `node`."""

    source: str
    code: str
    node: Node

    def __str__(self) -> str:
        return f"(has {self.source} {self.code} {self.node})"


@dataclass(frozen=True, slots=True)
class And:
    items: tuple[Node, ...]

    def __str__(self) -> str:
        return f"(and {' '.join(str(i) for i in self.items)})"


@dataclass(frozen=True, slots=True)
class Or:
    items: tuple[Node, ...]

    def __str__(self) -> str:
        return f"(or {' '.join(str(i) for i in self.items)})"


@dataclass(frozen=True, slots=True)
class Not:
    item: Node

    def __str__(self) -> str:
        return f"(not {self.item})"


@dataclass(frozen=True, slots=True)
class Compartment:
    """Resources in the compartment `comp_type/comp_id` (through any of `codes`)."""

    comp_type: str
    comp_id: str
    codes: tuple[str, ...]

    def __str__(self) -> str:
        return f"(compartment {self.comp_type}/{self.comp_id} {' '.join(self.codes)})"


@dataclass(frozen=True, slots=True)
class Policy:
    """The caller's access value as a term of the tree (see `search.access`).

    The planner ANDs it to the main query; chains, `_has` and includes apply the same access
    to their inner queries, so nothing is ever filtered after the fact. Plain data: a tree
    holding it stays hashable and its compiled form cacheable.
    """

    access: Access

    def __str__(self) -> str:
        return str(self.access)


@dataclass(frozen=True, slots=True)
class TypeSwitch:
    """A parameter of a system search over several types, compiled once per type."""

    cases: tuple[tuple[str, Node], ...]

    def __str__(self) -> str:
        return f"(types {' '.join(f'({t} {n})' for t, n in self.cases)})"


Node = Union[Param, Chain, Has, And, Or, Not, Compartment, Policy, TypeSwitch]  # noqa: UP007 - runtime alias


@dataclass(frozen=True, slots=True)
class SortKey:
    code: str
    descending: bool = False

    def __str__(self) -> str:
        return f"-{self.code}" if self.descending else self.code


@dataclass(frozen=True, slots=True)
class Include:
    """`_include=source:code[:target]` or, with `reverse`, `_revinclude`; `code` '*' = all."""

    source: str
    code: str
    target: str | None = None
    reverse: bool = False
    iterate: bool = False

    def __str__(self) -> str:
        name = "_revinclude" if self.reverse else "_include"
        mod = ":iterate" if self.iterate else ""
        tail = f":{self.target}" if self.target else ""
        return f"{name}{mod}={self.source}:{self.code}{tail}"


@dataclass(frozen=True, slots=True)
class Query:
    """A whole search: which types, the filter tree, and how to present the result."""

    types: tuple[str, ...]  # one for a type search; several (or none = all) for system search
    where: Node | None = None
    sort: tuple[SortKey, ...] = ()
    count: int = 20
    includes: tuple[Include, ...] = ()
    summary: str | None = None  # true | text | data | count | false
    elements: tuple[str, ...] = ()
    total: str = "none"  # none | estimate | accurate
    cursor: str | None = None
    explain: bool = False
    ignored: tuple[str, ...] = ()  # lenient mode: what was not understood, said in the Bundle
    echo: tuple[tuple[str, str], ...] = ()  # the understood parameters, for Bundle.link self

    def __str__(self) -> str:
        parts = [f"(query {','.join(self.types) or '*'}"]
        if self.where is not None:
            parts.append(str(self.where))
        parts += [f"(sort {' '.join(str(k) for k in self.sort)})"] if self.sort else []
        parts += [f"({inc})" for inc in self.includes]
        return " ".join(parts) + ")"


def conj(*nodes: Node | None) -> Node | None:
    """AND of the non-empty nodes, flattened."""
    items: list[Node] = []
    for n in nodes:
        if n is None:
            continue
        items.extend(n.items if isinstance(n, And) else (n,))
    if not items:
        return None
    return items[0] if len(items) == 1 else And(tuple(items))
