"""`_total=accurate`: a one-term filter is counted on its index, and the count stays exact."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine

from fhir_server.search import make_ctx, search
from fhir_server.search.access import EVERYTHING
from fhir_server.search.parse import parse_query
from fhir_server.search.plan import plan
from fhir_server.search.registry import registry
from tests.search.conftest import Loader

SYS = "http://example.org/count-codes"


def _cond(id_: str, *codes: str) -> dict[str, Any]:
    return {"resourceType": "Condition", "id": id_, "subject": {"reference": "Patient/count-p"},
            "code": {"coding": [{"system": SYS, "code": c} for c in codes]}}


def _total(engine: Engine, params: list[tuple[str, str]]) -> int | None:
    query = parse_query(registry(), ("Condition",), [*params, ("_total", "accurate")])
    with engine.connect() as conn:
        result, _ = search(conn, query, EVERYTHING)
    return result.total


def test_total_counts_each_resource_once_and_forgets_deleted_ones(engine: Engine, loader: Loader) -> None:
    # c1 carries the code twice (two codings): still one match
    loader.load([_cond("count-c1", "x1", "x1"), _cond("count-c2", "x1", "x2"), _cond("count-c3", "x2")])
    assert _total(engine, [("code", f"{SYS}|x1")]) == 2
    assert _total(engine, [("code", f"{SYS}|x1,{SYS}|x2")]) == 3
    with engine.begin() as conn:
        loader.delete(conn, "Condition", "count-c2")
    assert _total(engine, [("code", f"{SYS}|x1")]) == 1
    assert _total(engine, [("code:not", f"{SYS}|x1"), ("subject", "Patient/count-p")]) == 1


def test_one_term_count_reads_only_the_index(engine: Engine) -> None:
    query = parse_query(registry(), ("Condition",), [("code", f"{SYS}|x1"), ("_total", "accurate")])
    with engine.connect() as conn:
        counted = plan(query, make_ctx(conn, EVERYTHING)).count
    assert counted is not None
    assert "resource" not in {t.name for t in counted.get_final_froms()[0].element.get_final_froms()}
