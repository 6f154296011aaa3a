"""Locating FHIRPath Patch paths: the places (container, key, index) a path selects in a resource.

https://hl7.org/fhir/R4/fhirpatch.html

fhirpathpy evaluates FHIRPath to values, but a patch needs places. The locator walks the usual
path shapes itself (`a.b`, `a[0]`, `first()`, `last()`, `where(...)`), keeping (container, key,
index) for every result; any other expression is evaluated by fhirpathpy and its results are found
in the resource by object identity. Cardinality (is `Patient.contact` a list?) comes from the
fhir.resources R4B models.
"""

from __future__ import annotations

import functools
import re
import types
import typing
from dataclasses import dataclass
from typing import Any

from antlr4 import CommonTokenStream, InputStream
from antlr4.error.ErrorListener import ErrorListener
from antlr4.tree.Tree import ParseTreeWalker
from fhir.resources.R4B import get_fhir_model_class
from fhirpathpy import apply_parsed_path
from fhirpathpy.engine import do_eval
from fhirpathpy.engine.nodes import ResourceNode
from fhirpathpy.models import models as fhirpath_models
from fhirpathpy.parser.ASTPathListener import ASTPathListener
from fhirpathpy.parser.generated.FHIRPathLexer import FHIRPathLexer
from fhirpathpy.parser.generated.FHIRPathParser import FHIRPathParser

from fhir_server.errors import invalid

__all__ = [
    "Location",
    "Locator",
    "ModelField",
    "RaiseOnSyntaxError",
    "child_class",
    "choice_key",
    "index_places",
    "member_name",
    "model_field",
    "parse_path",
    "resolve_name",
    "unwrap",
]

_FHIRPATH_MODEL = fhirpath_models["r4"]


# --------------------------------------------------------------------------------------------
# Model knowledge


@dataclass(frozen=True)
class ModelField:
    is_list: bool
    cls: type | None  # None for primitives
    choice_of: str | None = None  # "deceased" for deceasedBoolean


@functools.lru_cache(maxsize=4096)
def model_field(cls: type | None, name: str) -> ModelField | None:
    fields = getattr(cls, "model_fields", None)
    info = fields.get(name) if fields else None
    extra = info.json_schema_extra if info is not None else None
    if info is None or not isinstance(extra, dict) or not extra.get("element_property"):
        return None
    ann: Any = info.annotation
    is_list = False
    while typing.get_origin(ann) in (typing.Union, types.UnionType, list):
        if typing.get_origin(ann) is list:
            is_list = True
        ann = next(a for a in typing.get_args(ann) if a is not type(None))
    klass = ann.get_model_klass() if hasattr(ann, "get_model_klass") else None
    choice = extra.get("one_of_many")
    return ModelField(is_list, klass, choice if isinstance(choice, str) else None)


def child_class(cls: type | None, key: str, value: Any) -> type | None:
    if isinstance(value, dict) and "resourceType" in value:
        try:
            return typing.cast(type, get_fhir_model_class(value["resourceType"]))
        except (KeyError, TypeError, ValueError):
            return None
    if key.startswith("_"):  # a primitive's id and extensions
        return typing.cast(type, get_fhir_model_class("Element"))
    field = model_field(cls, key)
    return field.cls if field else None


def resolve_name(cls: type | None, name: str, type_name: str | None) -> tuple[str, ModelField | None]:
    """`name` as a JSON key: a choice element takes the value's type as suffix (multipleBirthInteger)."""
    field = model_field(cls, name)
    if field is None and type_name:
        typed = name + type_name[:1].upper() + type_name[1:]
        if model_field(cls, typed) is not None:
            return typed, model_field(cls, typed)
    return name, field


# --------------------------------------------------------------------------------------------
# Locating elements


@dataclass
class Location:
    """A place in the resource: parent[key] or parent[key][index]; parent None is the root."""

    parent: dict[str, Any] | None
    key: str
    index: int | None
    cls: type | None  # model class of the value (None for primitives and unknowns)
    value: Any
    owner: type | None = None  # model class of the parent


def _root(resource: dict[str, Any]) -> Location:
    return Location(None, str(resource.get("resourceType", "")), None, child_class(None, "", resource), resource)


def member_name(node: dict[str, Any]) -> str | None:
    if node.get("type") == "InvocationTerm":
        node = node["children"][0]
    if node.get("type") == "MemberInvocation":
        return str(node["children"][0]["text"]).strip("`")
    return None


def unwrap(node: dict[str, Any]) -> dict[str, Any]:
    while node.get("type") in (None, "EntireExpression") and len(node.get("children", [])) == 1:
        node = node["children"][0]
    return node


class Locator:
    def __init__(self, resource: dict[str, Any]) -> None:
        self.root = resource
        self.vars = {"context": resource, "resource": resource, "rootResource": resource}

    def locate(self, node: dict[str, Any]) -> list[Location]:
        node = unwrap(node)
        kind, children = node.get("type"), node.get("children", [])
        term = member_name(children[0]) if kind == "TermExpression" else None
        if term is not None:
            root = _root(self.root)
            return [root] if term == root.key else self._members([root], term)
        if kind == "InvocationExpression":
            member = member_name(children[1])
            if member is not None:
                return self._members(self.locate(children[0]), member)
            fn = (
                children[1]["children"][0]["children"][0].get("text")
                if children[1].get("type") == "FunctionInvocation"
                else None
            )
            if fn in ("first", "last"):
                locs = self.locate(children[0])
                return locs[:1] if fn == "first" else locs[-1:]
            if fn == "where":
                # where() on a one-item collection keeps or drops that item; fhirpathpy sets $this.
                return [loc for loc in self.locate(children[0]) if self._evaluate([loc.value], children[1])]
        if kind == "IndexerExpression":
            index = self._evaluate(self.root, children[1])
            if len(index) != 1 or not isinstance(index[0], int) or isinstance(index[0], bool):
                raise invalid(f"The indexer in {node.get('text') or 'the path'} is not an integer")
            return self.locate(children[0])[index[0] : index[0] + 1] if index[0] >= 0 else []
        return self._by_identity(node)

    def _members(self, locs: list[Location], name: str) -> list[Location]:
        out: list[Location] = []
        for loc in locs:
            data, cls = loc.value, loc.cls
            if not isinstance(data, dict) and loc.parent is not None:
                # Members of a primitive (id, extension) live in the sibling "_key" object.
                ext = loc.parent.get("_" + loc.key)
                data = ext[loc.index] if isinstance(ext, list) and loc.index is not None else ext
                cls = child_class(None, "_", None)
            if not isinstance(data, dict):
                continue
            key = name if name in data else choice_key(cls, data, name)
            if key is None:
                continue
            value = data[key]
            items = list(enumerate(value)) if isinstance(value, list) else [(None, value)]
            out.extend(Location(data, key, i, child_class(cls, key, v), v, cls) for i, v in items)
        return out

    def _evaluate(self, data: Any, node: dict[str, Any]) -> list[Any]:
        ctx = {
            "dataRoot": [self.root],
            "vars": {"ucum": "http://unitsofmeasure.org", **self.vars},
            "model": _FHIRPATH_MODEL,
            "userInvocationTable": {},
        }
        try:
            return list(do_eval(ctx, data if isinstance(data, list) else [data], node))  # type: ignore[no-untyped-call]
        except Exception as exc:  # fhirpathpy raises bare Exceptions for evaluation errors
            raise invalid(f"FHIRPath evaluation failed: {exc}") from None

    def _by_identity(self, node: dict[str, Any]) -> list[Location]:
        try:
            raw = apply_parsed_path(  # type: ignore[no-untyped-call]
                self.root, {"children": [node]}, self.vars, _FHIRPATH_MODEL, {"returnRawData": True}
            )
        except Exception as exc:  # fhirpathpy raises bare Exceptions for evaluation errors
            raise invalid(f"FHIRPath evaluation failed: {exc}") from None
        places = index_places(self.root)
        out = []
        for item in raw:
            data = item.data if isinstance(item, ResourceNode) else item
            if not isinstance(data, dict) or id(data) not in places:
                raise invalid(
                    "This patch path selects values that cannot be located in the resource; "
                    "end it with an element name, an indexer, first(), last() or where()"
                )
            out.append(places[id(data)])
        return out


def choice_key(cls: type | None, data: dict[str, Any], name: str) -> str | None:
    for key in data:
        if key.startswith(name) and key[len(name) : len(name) + 1].isupper():
            field = model_field(cls, key)
            if field is None or field.choice_of == name:
                return key
    return None


def index_places(root: dict[str, Any]) -> dict[int, Location]:
    places = {id(root): _root(root)}
    stack: list[tuple[dict[str, Any], type | None]] = [(root, places[id(root)].cls)]
    while stack:
        data, cls = stack.pop()
        for key, value in data.items():
            for i, item in list(enumerate(value)) if isinstance(value, list) else [(None, value)]:
                if isinstance(item, dict):
                    child = child_class(cls, key, item)
                    places[id(item)] = Location(data, key, i, child, item, cls)
                    stack.append((item, child))
    return places


class RaiseOnSyntaxError(ErrorListener):  # type: ignore[misc]
    # fhirpathpy's own parse() silently recovers from syntax errors; a patch must not.
    def __init__(self, where: str) -> None:
        self.where = where

    def syntaxError(self, recognizer: Any, symbol: Any, line: int, col: int, msg: str, e: Any) -> None:
        raise invalid(f"{self.where}: invalid FHIRPath at column {col}: {msg}")


def parse_path(path: str, i: int) -> dict[str, Any]:
    # `div` is a FHIRPath operator keyword, yet Narrative.div is a common patch target.
    lexer = FHIRPathLexer(InputStream(re.sub(r"\.div\b(?!\s*\()", ".`div`", path)))
    parser = FHIRPathParser(CommonTokenStream(lexer))
    for recognizer in (lexer, parser):
        recognizer.removeErrorListeners()
        recognizer.addErrorListener(RaiseOnSyntaxError(f"Operation {i} path {path!r}"))
    listener = ASTPathListener()  # type: ignore[no-untyped-call]
    ParseTreeWalker().walk(listener, parser.entireExpression())  # type: ignore[no-untyped-call]
    tree: dict[str, Any] = listener.parentStack[0]
    return tree
