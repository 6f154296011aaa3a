"""The two PATCH body formats: JSON Patch (RFC 6902) and FHIRPath Patch.

https://hl7.org/fhir/R4/http.html#patch and https://hl7.org/fhir/R4/fhirpatch.html

Both functions are pure: they return a new resource dict and never touch their arguments. A
malformed patch document is 400 (`invalid`); a well-formed patch that cannot be applied to this
resource (a failing `test`, a path that finds nothing) is 422 (`processing`).

fhirpathpy evaluates FHIRPath to values, but a patch needs places. The locator walks the usual
path shapes itself (`a.b`, `a[0]`, `first()`, `last()`, `where(...)`), keeping (container, key,
index) for every result; any other expression is evaluated by fhirpathpy and its results are found
in the resource by object identity. Cardinality (is `Patient.contact` a list?) comes from the
fhir.resources R4B models.
"""

from __future__ import annotations

import copy
import functools
import re
import types
import typing
from dataclasses import dataclass
from typing import Any

import jsonpatch
import jsonpointer
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

from fhir_server.errors import invalid, processing

__all__ = ["apply_fhirpath_patch", "apply_json_patch"]

_FHIRPATH_MODEL = fhirpath_models["r4"]
_REQUIRED_PARTS = {
    "add": ("path", "name", "value"),
    "insert": ("path", "index", "value"),
    "delete": ("path",),
    "replace": ("path", "value"),
    "move": ("path", "source", "destination"),
}
_INTEGER_PARTS = ("index", "source", "destination")


# --------------------------------------------------------------------------------------------
# JSON Patch


def apply_json_patch(resource: dict[str, Any], operations: Any) -> dict[str, Any]:
    """Apply an RFC 6902 JSON Patch document to a copy of `resource`."""
    if not isinstance(operations, list):
        raise invalid("A JSON Patch document must be a JSON array of operations")
    doc: Any = copy.deepcopy(resource)
    for i, op in enumerate(operations):
        where = f"JSON Patch operation {i}"
        try:
            patch = jsonpatch.JsonPatch([op])
        except (jsonpatch.JsonPatchException, jsonpointer.JsonPointerException, TypeError) as exc:
            raise invalid(f"{where} is malformed: {exc}") from None
        try:
            doc = patch.apply(doc, in_place=True)
        except jsonpatch.InvalidJsonPatch as exc:  # some members are only checked when applied
            raise invalid(f"{where} is malformed: {exc}") from None
        except (jsonpatch.JsonPatchException, jsonpointer.JsonPointerException) as exc:
            raise processing(f"{where} ({op.get('op')}) failed at path {op.get('path')!r}: {exc}") from None
    _check_result(resource, doc)
    return typing.cast(dict[str, Any], doc)


def _check_result(before: dict[str, Any], after: Any) -> None:
    if not isinstance(after, dict) or after.get("resourceType") != before.get("resourceType"):
        raise processing("A patch cannot change the resource type or turn the resource into a non-resource")


# --------------------------------------------------------------------------------------------
# Model knowledge


@dataclass(frozen=True)
class _Field:
    is_list: bool
    cls: type | None  # None for primitives
    choice_of: str | None = None  # "deceased" for deceasedBoolean


@functools.lru_cache(maxsize=4096)
def _field(cls: type | None, name: str) -> _Field | None:
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
    return _Field(is_list, klass, choice if isinstance(choice, str) else None)


def _child_class(cls: type | None, key: str, value: Any) -> type | None:
    if isinstance(value, dict) and "resourceType" in value:
        try:
            return typing.cast(type, get_fhir_model_class(value["resourceType"]))
        except (KeyError, TypeError, ValueError):
            return None
    if key.startswith("_"):  # a primitive's id and extensions
        return typing.cast(type, get_fhir_model_class("Element"))
    field = _field(cls, key)
    return field.cls if field else None


def _resolve_name(cls: type | None, name: str, type_name: str | None) -> tuple[str, _Field | None]:
    """`name` as a JSON key: a choice element takes the value's type as suffix (multipleBirthInteger)."""
    field = _field(cls, name)
    if field is None and type_name:
        typed = name + type_name[:1].upper() + type_name[1:]
        if _field(cls, typed) is not None:
            return typed, _field(cls, typed)
    return name, field


# --------------------------------------------------------------------------------------------
# Locating elements


@dataclass
class _Loc:
    """A place in the resource: parent[key] or parent[key][index]; parent None is the root."""

    parent: dict[str, Any] | None
    key: str
    index: int | None
    cls: type | None  # model class of the value (None for primitives and unknowns)
    value: Any
    owner: type | None = None  # model class of the parent


def _root(resource: dict[str, Any]) -> _Loc:
    return _Loc(None, str(resource.get("resourceType", "")), None, _child_class(None, "", resource), resource)


def _member_name(node: dict[str, Any]) -> str | None:
    if node.get("type") == "InvocationTerm":
        node = node["children"][0]
    if node.get("type") == "MemberInvocation":
        return str(node["children"][0]["text"]).strip("`")
    return None


def _unwrap(node: dict[str, Any]) -> dict[str, Any]:
    while node.get("type") in (None, "EntireExpression") and len(node.get("children", [])) == 1:
        node = node["children"][0]
    return node


class _Locator:
    def __init__(self, resource: dict[str, Any]) -> None:
        self.root = resource
        self.vars = {"context": resource, "resource": resource, "rootResource": resource}

    def locate(self, node: dict[str, Any]) -> list[_Loc]:
        node = _unwrap(node)
        kind, children = node.get("type"), node.get("children", [])
        term = _member_name(children[0]) if kind == "TermExpression" else None
        if term is not None:
            root = _root(self.root)
            return [root] if term == root.key else self._members([root], term)
        if kind == "InvocationExpression":
            member = _member_name(children[1])
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

    def _members(self, locs: list[_Loc], name: str) -> list[_Loc]:
        out: list[_Loc] = []
        for loc in locs:
            data, cls = loc.value, loc.cls
            if not isinstance(data, dict) and loc.parent is not None:
                # Members of a primitive (id, extension) live in the sibling "_key" object.
                ext = loc.parent.get("_" + loc.key)
                data = ext[loc.index] if isinstance(ext, list) and loc.index is not None else ext
                cls = _child_class(None, "_", None)
            if not isinstance(data, dict):
                continue
            key = name if name in data else _choice_key(cls, data, name)
            if key is None:
                continue
            value = data[key]
            items = list(enumerate(value)) if isinstance(value, list) else [(None, value)]
            out.extend(_Loc(data, key, i, _child_class(cls, key, v), v, cls) for i, v in items)
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

    def _by_identity(self, node: dict[str, Any]) -> list[_Loc]:
        try:
            raw = apply_parsed_path(  # type: ignore[no-untyped-call]
                self.root, {"children": [node]}, self.vars, _FHIRPATH_MODEL, {"returnRawData": True}
            )
        except Exception as exc:  # fhirpathpy raises bare Exceptions for evaluation errors
            raise invalid(f"FHIRPath evaluation failed: {exc}") from None
        places = _index_places(self.root)
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


def _choice_key(cls: type | None, data: dict[str, Any], name: str) -> str | None:
    for key in data:
        if key.startswith(name) and key[len(name) : len(name) + 1].isupper():
            field = _field(cls, key)
            if field is None or field.choice_of == name:
                return key
    return None


def _index_places(root: dict[str, Any]) -> dict[int, _Loc]:
    places = {id(root): _root(root)}
    stack: list[tuple[dict[str, Any], type | None]] = [(root, places[id(root)].cls)]
    while stack:
        data, cls = stack.pop()
        for key, value in data.items():
            for i, item in list(enumerate(value)) if isinstance(value, list) else [(None, value)]:
                if isinstance(item, dict):
                    child = _child_class(cls, key, item)
                    places[id(item)] = _Loc(data, key, i, child, item, cls)
                    stack.append((item, child))
    return places


class _RaiseOnSyntaxError(ErrorListener):  # type: ignore[misc]
    # fhirpathpy's own parse() silently recovers from syntax errors; a patch must not.
    def __init__(self, where: str) -> None:
        self.where = where

    def syntaxError(self, recognizer: Any, symbol: Any, line: int, col: int, msg: str, e: Any) -> None:
        raise invalid(f"{self.where}: invalid FHIRPath at column {col}: {msg}")


def _parse_path(path: str, i: int) -> dict[str, Any]:
    # `div` is a FHIRPath operator keyword, yet Narrative.div is a common patch target.
    lexer = FHIRPathLexer(InputStream(re.sub(r"\.div\b(?!\s*\()", ".`div`", path)))
    parser = FHIRPathParser(CommonTokenStream(lexer))
    for recognizer in (lexer, parser):
        recognizer.removeErrorListeners()
        recognizer.addErrorListener(_RaiseOnSyntaxError(f"Operation {i} path {path!r}"))
    listener = ASTPathListener()  # type: ignore[no-untyped-call]
    ParseTreeWalker().walk(listener, parser.entireExpression())  # type: ignore[no-untyped-call]
    tree: dict[str, Any] = listener.parentStack[0]
    return tree


# --------------------------------------------------------------------------------------------
# FHIRPath Patch


@dataclass(frozen=True)
class _Value:
    json: Any
    ext: Any  # the "_value[x]" sibling of a primitive (its id and extensions), or None
    type_name: str | None  # "Date", "CodeableConcept"; None for an anonymous (parts) value


def apply_fhirpath_patch(resource: dict[str, Any], parameters: dict[str, Any]) -> dict[str, Any]:
    """Apply a FHIRPath Patch (a Parameters resource) to a copy of `resource`."""
    operations = _read_operations(parameters)
    doc = copy.deepcopy(resource)
    for i, op in enumerate(operations):
        _apply_operation(doc, i, op)
    _prune(doc)
    _check_result(resource, doc)
    return doc


def _read_operations(parameters: Any) -> list[dict[str, Any]]:
    if not isinstance(parameters, dict) or parameters.get("resourceType") != "Parameters":
        raise invalid("A FHIRPath Patch body must be a Parameters resource")
    params = parameters.get("parameter", [])
    if not isinstance(params, list):
        raise invalid("Parameters.parameter must be an array")
    operations = []
    for i, param in enumerate(params):
        where = f"Parameters.parameter[{i}]"
        if not isinstance(param, dict) or param.get("name") != "operation":
            raise invalid(f"{where} is not an 'operation' parameter", expression=where)
        parts = {p.get("name"): p for p in param.get("part", []) if isinstance(p, dict)}
        if len(parts) != len(param.get("part", [])) or not all(isinstance(k, str) for k in parts):
            raise invalid(f"Operation {i}: a part has no name or is repeated", expression=where)
        scalars = ("type", "path", "name", *_INTEGER_PARTS)
        op = {k: _scalar_part(parts[k], k, i) for k in scalars if k in parts}
        op["value"] = parts.get("value")
        kind = op.get("type")
        if kind not in _REQUIRED_PARTS:
            raise invalid(f"Operation {i}: unknown or missing type {kind!r}", expression=where)
        missing = [name for name in _REQUIRED_PARTS[kind] if op.get(name) is None]
        if missing:
            raise invalid(f"Operation {i} ({kind}): missing part(s) {', '.join(missing)}", expression=where)
        if op["value"] is not None and not _is_value_part(op["value"]):
            raise invalid(
                f"Operation {i}: the value needs one value[x], a resource or named nested parts",
                expression=where,
            )
        operations.append(op)
    return operations


def _scalar_part(part: dict[str, Any], name: str, i: int) -> Any:
    values = [v for k, v in part.items() if k.startswith("value")]
    wanted: type = int if name in _INTEGER_PARTS else str
    if len(values) != 1 or not isinstance(values[0], wanted) or isinstance(values[0], bool):
        raise invalid(f"Operation {i}: part {name!r} must have one {wanted.__name__} value")
    return values[0]


def _is_value_part(part: Any) -> bool:
    if not isinstance(part, dict):
        return False
    shapes = [k for k in part if k.startswith("value")] + [k for k in ("resource", "part") if k in part]
    nested = part.get("part")
    return len(shapes) == 1 and (
        nested is None
        or isinstance(nested, list)
        and all(isinstance(p, dict) and isinstance(p.get("name"), str) and _is_value_part(p) for p in nested)
    )


def _apply_operation(doc: dict[str, Any], i: int, op: dict[str, Any]) -> None:
    kind, path = op["type"], op["path"]
    locator = _Locator(doc)
    tree = _parse_path(path, i)
    if kind in ("insert", "move"):
        _change_list(locator, tree, i, op)
        return
    locs = locator.locate(tree)
    verb = {"add": "adding", "replace": "replacing", "delete": "deleting"}[kind]
    if not locs and kind != "delete":
        raise processing(f"No content found at {path} when {verb} (operation {i})")
    if len(locs) > 1:
        raise processing(f"Multiple elements ({len(locs)}) found at {path} when {verb} (operation {i})")
    if not locs:
        return  # deleting nothing is not an error
    if kind == "add":
        _add(locs[0], op["name"], op["value"], i)
    elif locs[0].parent is None:
        raise processing(f"Operation {i} ({kind}) cannot target the whole resource")
    elif kind == "replace":
        _replace(locs[0], op["value"], i)
    else:
        _remove(locs[0])


def _value_type(part: dict[str, Any]) -> str | None:
    keys = [k for k in part if k.startswith("value")]
    return keys[0][len("value") :] if len(keys) == 1 else None


def _value(part: dict[str, Any], cls: type | None, i: int) -> _Value:
    """A `value` part (already checked by _is_value_part) as JSON; anonymous types come as parts."""
    type_name = _value_type(part)
    if type_name is not None:
        return _Value(part["value" + type_name], part.get("_value" + type_name), type_name)
    if "resource" in part:
        return _Value(part["resource"], None, "Resource")
    obj: dict[str, Any] = {}
    for sub in part["part"]:
        key, field = _resolve_name(cls, sub["name"], _value_type(sub))
        value = _value(sub, field.cls if field else None, i)
        if field.is_list if field else key in obj:
            _insert(obj, key, value)
        elif key in obj:
            raise invalid(f"Operation {i}: element {key} appears twice but does not repeat")
        else:
            _put(obj, key, value)
    return _Value(obj, None, None)


def _put(obj: dict[str, Any], key: str, value: _Value) -> None:
    obj[key] = value.json
    obj.pop("_" + key, None)
    if value.ext is not None:
        obj["_" + key] = value.ext


def _insert(obj: dict[str, Any], key: str, value: _Value, index: int | None = None) -> None:
    items = obj.get(key)
    if not isinstance(items, list):
        items = obj[key] = [] if items is None else [items]
    at = len(items) if index is None else index
    exts = _exts(obj, key, len(items), value.ext is not None)
    items.insert(at, value.json)
    if exts is not None:
        exts.insert(at, value.ext)


def _exts(obj: dict[str, Any], key: str, length: int, create: bool) -> list[Any] | None:
    """The "_key" list parallel to a primitive list, padded to `length` (created if asked)."""
    exts = obj.get("_" + key)
    if not isinstance(exts, list):
        if not create:
            return None
        exts = obj["_" + key] = []
    exts.extend([None] * (length - len(exts)))
    return exts


def _add(loc: _Loc, name: str, part: dict[str, Any], i: int) -> None:
    if not isinstance(loc.value, dict):
        raise processing(f"Operation {i} (add): the path points at a primitive, which has no child {name}")
    key, field = _resolve_name(loc.cls, name, _value_type(part))
    if field is None and loc.cls is not None:
        raise processing(f"Operation {i} (add): {name} is not an element of {loc.cls.__name__}")
    value = _value(part, field.cls if field else None, i)
    if field.is_list if field else isinstance(loc.value.get(key), list):
        _insert(loc.value, key, value)
    elif key in loc.value:
        raise processing(f"Operation {i} (add): {key} already has a value; use replace")
    else:
        _put(loc.value, key, value)


def _replace(loc: _Loc, part: dict[str, Any], i: int) -> None:
    parent = typing.cast(dict[str, Any], loc.parent)
    value = _value(part, loc.cls, i)
    field = _field(loc.owner, loc.key)
    if loc.index is not None:
        parent[loc.key][loc.index] = value.json
        exts = _exts(parent, loc.key, len(parent[loc.key]), value.ext is not None)
        if exts is not None:
            exts[loc.index] = value.ext
        return
    key = loc.key
    if field and field.choice_of and value.type_name:
        key, _ = _resolve_name(loc.owner, field.choice_of, value.type_name)
        if key == field.choice_of:
            raise processing(f"Operation {i} (replace): {key} cannot be a {value.type_name}")
    del parent[loc.key]
    parent.pop("_" + loc.key, None)
    _put(parent, key, value)


def _remove(loc: _Loc) -> None:
    parent = typing.cast(dict[str, Any], loc.parent)
    if loc.index is None:
        del parent[loc.key]
        parent.pop("_" + loc.key, None)
        return
    exts = _exts(parent, loc.key, len(parent[loc.key]), False)
    del parent[loc.key][loc.index]
    if exts is not None:
        del exts[loc.index]


def _change_list(locator: _Locator, tree: dict[str, Any], i: int, op: dict[str, Any]) -> None:
    """insert and move: the path names the list itself (`Patient.identifier`)."""
    kind, path = op["type"], op["path"]
    parent, key, owner = _list_slot(locator, tree, i, op)
    items = parent.get(key, [])
    field = _field(owner, key)
    if (field is not None and not field.is_list) or not isinstance(items, list):
        raise processing(f"Operation {i} ({kind}): {path} is not a list")
    if kind == "insert":
        if not 0 <= op["index"] <= len(items):
            raise processing(
                f"Operation {i} (insert): index {op['index']} is outside 0..{len(items)} at {path}"
            )
        _insert(parent, key, _value(op["value"], field.cls if field else None, i), op["index"])
        return
    src, dst = op["source"], op["destination"]
    if not (0 <= src < len(items) and 0 <= dst < len(items)):
        raise processing(
            f"Operation {i} (move): source {src} or destination {dst} is outside "
            f"0..{len(items) - 1} at {path}"
        )
    items.insert(dst, items.pop(src))
    exts = _exts(parent, key, len(items), False)
    if exts is not None:
        exts.insert(dst, exts.pop(src))


def _list_slot(
    locator: _Locator, tree: dict[str, Any], i: int, op: dict[str, Any]
) -> tuple[dict[str, Any], str, type | None]:
    node = _unwrap(tree)
    children = node.get("children", [])
    name = _member_name(children[-1]) if node.get("type") == "InvocationExpression" else None
    if name is not None:  # `X.name`: the list may be empty or absent, so find its owner instead
        owners = locator.locate(children[0])
        if len(owners) == 1 and isinstance(owners[0].value, dict):
            return owners[0].value, name, owners[0].cls
    else:
        locs = locator.locate(tree)
        if locs and len({(id(loc.parent), loc.key) for loc in locs}) == 1 and locs[0].index is not None:
            return typing.cast(dict[str, Any], locs[0].parent), locs[0].key, locs[0].owner
    raise processing(f"No single list found at {op['path']} when {op['type']}ing (operation {i})")


def _prune(node: Any) -> None:
    """Drop the empty objects and arrays that deletions leave behind (FHIR JSON forbids them)."""
    if isinstance(node, list):
        for item in node:
            _prune(item)
    if not isinstance(node, dict):
        return
    for key in list(node):
        value = node[key]
        _prune(value)
        if isinstance(value, list):
            # In a "_key" list, null keeps the positions of the primitives aligned.
            value[:] = (
                [None if v == {} else v for v in value]
                if key.startswith("_")
                else [v for v in value if v != {}]
            )
        if value in ({}, []) or (isinstance(value, list) and all(v is None for v in value)):
            del node[key]
