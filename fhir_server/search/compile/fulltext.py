"""Full-text search, `_text` (narrative) and `_content` (every string in the resource).

https://hl7.org/fhir/R4/search.html#text

SQLite uses the FTS5 table `idx_fulltext_fts` (unicode61 tokenizer, diacritics removed);
PostgreSQL uses `tsvector` columns with GIN indexes and the `simple` configuration over
folded text, so neither depends on a language's stemmer and both fold accents the same way.
Words in one value must all occur; comma-separated values are alternatives.
"""

from __future__ import annotations

import html
import re
from typing import Any

from sqlalchemy import ColumnElement, func, literal_column, select, text

from fhir_server.indexing.normalize import fold
from fhir_server.search.ast import Param
from fhir_server.search.compile.common import Ctx, Probe, any_of, bad_value, unsupported_modifier
from fhir_server.search.registry import SearchParamImpl
from fhir_server.storage.index_schema import idx_fulltext

__all__ = ["content_text", "fulltext_row", "narrative_text", "predicate"]

_TAG = re.compile(r"<[^>]+>")
_WORD = re.compile(r"\w+", re.UNICODE)
_SKIP = frozenset({"div", "data", "resourceType", "id", "url", "system", "reference", "fullUrl"})
MAX_TEXT = 65536
# The text search configuration as SQL text, not a bound value: psycopg would send a bound one
# as an unknown-typed literal and `_explain` could not inline it.
_SIMPLE: Any = literal_column("'simple'")


def narrative_text(resource: dict[str, Any]) -> str:
    div = (resource.get("text") or {}).get("div")
    return html.unescape(_TAG.sub(" ", div))[:MAX_TEXT] if isinstance(div, str) else ""


def content_text(resource: Any) -> str:
    out: list[str] = []

    def visit(value: Any) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                if key not in _SKIP and not key.startswith("_"):
                    visit(item)
        elif isinstance(value, list):
            for item in value:
                visit(item)
        elif isinstance(value, str):
            out.append(value)

    visit(resource)
    return " ".join(out)[:MAX_TEXT]


def fulltext_row(resource: dict[str, Any], dialect: str) -> dict[str, Any]:
    narrative = fold(narrative_text(resource)) if dialect == "postgresql" else narrative_text(resource)
    content = content_text(resource)
    if dialect == "postgresql":
        return {"narrative": func.to_tsvector(_SIMPLE, narrative),
                "content": func.to_tsvector(_SIMPLE, fold_long(content))}
    return {"narrative": narrative, "content": content}


def fold_long(value: str) -> str:
    return fold.__wrapped__(value) if len(value) > 512 else fold(value)  # fold() truncates for keys


def _words(p: Param, raw: str) -> list[str]:
    words = _WORD.findall(fold_long(raw))
    if not words:
        raise bad_value(p, p.values[0], "no word to search for")
    return words


def _sqlite(column: str, words: list[str], r: Any) -> ColumnElement[bool]:
    query = " AND ".join(f'{column} : "{w}"' for w in words)
    fts: Any = literal_column("idx_fulltext_fts")
    sub: Any = select(literal_column("rowid")).select_from(text("idx_fulltext_fts")).where(fts.op("MATCH")(query))
    cond: ColumnElement[bool] = r.c.rid.in_(sub)
    return cond


def _postgres(column: str, words: list[str], r: Any) -> ColumnElement[bool]:
    t = idx_fulltext
    query = func.to_tsquery(_SIMPLE, " & ".join(words))
    if isinstance(r, Probe):  # a common word: test this row's vector (primary key) per row
        sub = select(t.c.rid).where(t.c.rid == r.r.c.rid, t.c[column].op("@@")(query)).offset(0)
        found: ColumnElement[bool] = sub.exists().correlate(r.r)
        return found
    cond: ColumnElement[bool] = r.c.rid.in_(select(t.c.rid).where(t.c[column].op("@@")(query)))
    return cond


def predicate(p: Param, impl: SearchParamImpl, r: Any, ctx: Ctx) -> ColumnElement[bool]:
    if p.modifier is not None:
        raise unsupported_modifier(p, impl)
    column = "narrative" if p.code == "_text" else "content"
    conds = []
    for v in p.values:
        words = _words(p, v.text)
        if ctx.dialect == "postgresql":
            conds.append(_postgres(column, words, r))
        else:
            conds.append(_sqlite(column, words, r))
    return any_of(conds)
