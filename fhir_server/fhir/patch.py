"""The two PATCH body formats: JSON Patch (RFC 6902) and FHIRPath Patch.

https://hl7.org/fhir/R4/http.html#patch and https://hl7.org/fhir/R4/fhirpatch.html

Both functions are pure: they take a resource dict and a patch document, and return a new
resource dict without touching their arguments. Client mistakes in the patch document itself
are 400 (`invalid`); a patch that is well formed but cannot be applied to this resource (a
failing `test`, a path that finds nothing) is 422 (`processing`).

FHIRPath Patch paths are evaluated with fhirpathpy, but fhirpathpy returns values, not places.
The locator therefore walks the common path shapes itself (`a.b`, `a[0]`, `first()`, `last()`,
`where(...)`) keeping (container, key, index) for every result, and for any other expression
evaluates it with fhirpathpy and finds the resulting elements in the resource by identity.
Cardinality (is `Patient.contact` a list?) comes from the fhir.resources R4B models.
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
from fhir.resources.R4B import get_fhir_model_class
from fhirpathpy import apply_parsed_path
from fhirpathpy.engine import do_eval
from fhirpathpy.engine.nodes import ResourceNode
from fhirpathpy.models import models as fhirpath_models
from fhirpathpy.parser import parse as parse_fhirpath

from fhir_server.errors import FhirError, invalid, processing

__all__ = ["apply_fhirpath_patch", "apply_json_patch"]

_FHIRPATH_MODEL = fhirpath_models["r4"]


# --------------------------------------------------------------------------------------------
# JSON Patch


def apply_json_patch(resource: dict, operations: Any) -> dict:
    """Apply an RFC 6902 JSON Patch document to a copy of `resource`."""
    if not isinstance(operations, list):
        raise invalid("A JSON Patch document must be a JSON array of operations")
    doc: Any = copy.deepcopy(resource)
    for i, op in enumerate(operations):
        path = op.get("path") if isinstance(op, dict) else None
        try:
            patch = jsonpatch.JsonPatch([op])
        except (jsonpatch.JsonPatchException, jsonpointer.JsonPointerException, TypeError) as exc:
            raise invalid(f"JSON Patch operation {i} is malformed: {exc}") from None
        try:
            doc = patch.apply(doc, in_place=True)
        except jsonpatch.InvalidJsonPatch as exc:  # some members are only checked when applied
            raise invalid(f"JSON Patch operation {i} is malformed: {exc}") from None
        except jsonpatch.JsonPatchTestFailed as exc:
            raise processing(f"JSON Patch operation {i} (test) failed at path {path!r}: {exc}") from None
        except (jsonpatch.JsonPatchException, jsonpointer.JsonPointerException) as exc:
            kind = op.get("op")
            raise processing(f"JSON Patch operation {i} ({kind}) cannot apply at path {path!r}: {exc}") from None
    _check_result(resource, doc)
    return typing.cast(dict, doc)


def _check_result(before: dict, after: Any) -> None:
    if not isinstance(after, dict) or after.get("resourceType") != before.get("resourceType"):
        raise processing("A patch cannot change the resource type or replace the resource with a non-resource")


# --------------------------------------------------------------------------------------------
# Model knowledge: is a child element a list, and what class is it?


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
    while True:
        origin = typing.get_origin(ann)
        if origin in (typing.Union, types.UnionType):
            ann = next(a for a in typing.get_args(ann) if a is not type(None))
        elif origin is list:
            is_list, ann = True, typing.get_args(ann)[0]
        else:
            break
    klass = ann.get_model_klass() if hasattr(ann, "get_model_klass") else None
    choice = extra.get("one_of_many")
    return _Field(is_list, klass, choice if isinstance(choice, str) else None)


def _resource_class(data: Any) -> type | None:
    try:
        return typing.cast(type, get_fhir_model_class(data["resourceType"]))
    except (KeyError, TypeError, ValueError):
        return None


def _child_class(cls: type | None, key: str, value: Any) -> type | None:
    if isinstance(value, dict) and "resourceType" in value:
        return _resource_class(value)
    if key.startswith("_"):
        return typing.cast(type, get_fhir_model_class("Element"))
    field = _field(cls, key)
    return field.cls if field else None


# --------------------------------------------------------------------------------------------
# Locating elements


@dataclass
class _Loc:
    """A place in the resource: parent[key] or parent[key][index]; parent None is the root."""

    parent: dict | None
    key: str
    index: int | None
    cls: type | None  # model class of the value, None for primitives and unknowns
    value: Any
    owner: type | None = None  # model class of the parent


class _Locator:
    def __init__(self, resource: dict) -> None:
        self.root = resource
        self.context = {"resource": resource, "rootResource": resource}

    def locate(self, node: dict) -> list[_Loc]:
        kind = node.get("type")
        children = node.get("children", [])
        if kind in (None, "EntireExpression") and len(children) == 1:
            return self.locate(children[0])
        if kind == "TermExpression" and self._member_name(children[0]) is not None:
            name = typing.cast(str, self._member_name(children[0]))
            root = _Loc(None, self.root.get("resourceType", ""), None, _resource_class(self.root), self.root)
            return [root] if name == root.key else self._members([root], name)
        if kind == "InvocationExpression":
            name = self._member_name(children[1])
            if name is not None:
                return self._members(self.locate(children[0]), name)
            fn = self._function(children[1])
            if fn in ("first", "last", "where"):
                return self._filter(self.locate(children[0]), fn, children[1])
        if kind == "IndexerExpression":
            index = self._evaluate(self.root, children[1])
            items = self.locate(children[0])
            if len(index) != 1 or not isinstance(index[0], int) or isinstance(index[0], bool):
                raise invalid(f"The indexer in {node.get('text') or 'the path'} is not an integer")
            return items[index[0] : index[0] + 1] if index[0] >= 0 else []
        return self._by_identity(node)

    @staticmethod
    def _member_name(node: dict) -> str | None:
        if node.get("type") == "InvocationTerm":
            node = node["children"][0]
        if node.get("type") == "MemberInvocation":
            return str(node["children"][0]["text"]).strip("`")
        return None

    @staticmethod
    def _function(node: dict) -> str | None:
        if node.get("type") == "FunctionInvocation":
            return str(node["children"][0]["children"][0]["text"])
        return None

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
            if isinstance(value, list):
                out.extend(_Loc(data, key, i, _child_class(cls, key, v), v, cls) for i, v in enumerate(value))
            else:
                out.append(_Loc(data, key, None, _child_class(cls, key, value), value, cls))
        return out

    def _filter(self, locs: list[_Loc], fn: str, node: dict) -> list[_Loc]:
        if fn == "first":
            return locs[:1]
        if fn == "last":
            return locs[-1:]
        # where() run on a one-item collection keeps or drops that item, with $this set by fhirpathpy.
        return [loc for loc in locs if self._evaluate(loc.value, node, on_item=True)]

    def _evaluate(self, data: Any, node: dict, on_item: bool = False) -> list[Any]:
        try:
            if on_item:
                vars_ = {"context": self.root, "ucum": "http://unitsofmeasure.org", **self.context}
                ctx = {"dataRoot": [self.root], "vars": vars_, "model": _FHIRPATH_MODEL, "userInvocationTable": {}}
                return list(do_eval(ctx, [data], node))
            result = apply_parsed_path(data, {"children": [node]}, self.context, _FHIRPATH_MODEL, None)
        except Exception as exc:  # fhirpathpy raises bare Exceptions for evaluation errors
            raise invalid(f"FHIRPath evaluation failed: {exc}") from None
        return list(result)

    def _by_identity(self, node: dict) -> list[_Loc]:
        try:
            raw = apply_parsed_path(self.root, {"children": [node]}, self.context, _FHIRPATH_MODEL,
                                    {"returnRawData": True})
        except Exception as exc:  # fhirpathpy raises bare Exceptions for evaluation errors
            raise invalid(f"FHIRPath evaluation failed: {exc}") from None
        places = _index_places(self.root)
        out = []
        for item in raw:
            data = item.data if isinstance(item, ResourceNode) else item
            if not isinstance(data, dict) or id(data) not in places:
                raise invalid("This patch path selects values that cannot be located in the resource; "
                              "end the path with an element name, an indexer, first(), last() or where()")
            out.append(places[id(data)])
        return out


def _choice_key(cls: type | None, data: dict, name: str) -> str | None:
    for key in data:
        if key.startswith(name) and key[len(name) : len(name) + 1].isupper():
            field = _field(cls, key)
            if field is None or field.choice_of == name:
                return key
    return None


def _index_places(root: dict) -> dict[int, _Loc]:
    places = {id(root): _Loc(None, str(root.get("resourceType", "")), None, _resource_class(root), root)}
    stack: list[tuple[dict, type | None]] = [(root, _resource_class(root))]
    while stack:
        data, cls = stack.pop()
        for key, value in data.items():
            items = list(enumerate(value)) if isinstance(value, list) else [(None, value)]
            for i, item in items:
                if isinstance(item, dict):
                    child = _child_class(cls, key, item)
                    places[id(item)] = _Loc(data, key, i, child, item, cls)
                    stack.append((item, child))
    return places


# --------------------------------------------------------------------------------------------
# FHIRPath Patch

_REQUIRED_PARTS = {
    "add": ("path", "name", "value"),
    "insert": ("path", "index", "value"),
    "delete": ("path",),
    "replace": ("path", "value"),
    "move": ("path", "source", "destination"),
}


@dataclass(frozen=True)
class _Value:
    json: Any
    ext: Any  # the "_value[x]" sibling of a primitive (its id and extensions), or None
    type_name: str | None  # "Date", "CodeableConcept"; None for an anonymous (parts) value


def apply_fhirpath_patch(resource: dict, parameters: dict) -> dict:
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
        parts: dict[str, Any] = {}
        for part in param.get("part", []):
            name = part.get("name") if isinstance(part, dict) else None
            if not isinstance(name, str) or name in parts:
                raise invalid(f"{where} has a part without a name or a repeated part", expression=where)
            parts[name] = part
        op = {name: _scalar_part(parts, name, i) for name in ("type", "path", "name", "index", "source",
                                                             "destination") if name in parts}
        op["value"] = parts.get("value")
        if op["value"] is not None and not _is_value_part(op["value"]):
            raise invalid(f"Operation {i}: the value part needs exactly one value[x], a resource or nested parts",
                          expression=where)
        kind = op.get("type")
        if kind not in _REQUIRED_PARTS:
            raise invalid(f"Operation {i}: unknown or missing type {kind!r}", expression=where)
        missing = [name for name in _REQUIRED_PARTS[kind] if op.get(name) is None]
        if missing:
            raise invalid(f"Operation {i} ({kind}): missing part(s) {', '.join(missing)}", expression=where)
        operations.append(op)
    return operations


def _scalar_part(parts: dict[str, Any], name: str, i: int) -> Any:
    values = [v for k, v in parts[name].items() if k.startswith("value")]
    integer = name in ("index", "source", "destination")
    if len(values) != 1 or (integer != isinstance(values[0], int)) or isinstance(values[0], bool) \
            or (not integer and not isinstance(values[0], str)):
        expected = "an integer" if integer else "a string or code"
        raise invalid(f"Operation {i}: part {name!r} must have {expected} value")
    return values[0]


def _apply_operation(doc: dict, i: int, op: dict[str, Any]) -> None:
    kind, path = op["type"], op["path"]
    locator = _Locator(doc)
    tree = _parse_path(path, i)
    if kind in ("insert", "move"):
        _change_list(locator, tree, i, op)
        return
    locs = locator.locate(tree)
    if kind == "delete" and not locs:
        return
    verb = {"add": "adding", "replace": "replacing", "delete": "deleting"}[kind]
    if not locs:
        raise processing(f"No content found at {path} when {verb} (operation {i})")
    if len(locs) > 1:
        raise processing(f"Multiple elements ({len(locs)}) found at {path} when {verb} (operation {i})")
    loc = locs[0]
    if kind == "add":
        _add(loc, op["name"], op["value"], i)
    elif loc.parent is None:
        raise processing(f"Operation {i} ({kind}) cannot target the whole resource")
    elif kind == "replace":
        _replace(loc, op["value"], i)
    else:
        _remove(loc)


def _parse_path(path: str, i: int) -> dict:
    from antlr4 import CommonTokenStream, InputStream
    from antlr4.error.ErrorListener import ErrorListener
    from antlr4.tree.Tree import ParseTreeWalker
    from fhirpathpy.parser.ASTPathListener import ASTPathListener
    from fhirpathpy.parser.generated.FHIRPathLexer import FHIRPathLexer
    from fhirpathpy.parser.generated.FHIRPathParser import FHIRPathParser

    class Raise(ErrorListener):  # type: ignore[misc]
        # fhirpathpy's own parse() silently recovers from syntax errors; a patch must not.
        def syntaxError(self, recognizer: Any, symbol: Any, line: int, col: int, msg: str, e: Any) -> None:
            raise invalid(f"Operation {i}: invalid FHIRPath {path!r} at column {col}: {msg}")

    # `div` is a FHIRPath operator keyword, yet Narrative.div is a common patch target.
    lexer = FHIRPathLexer(InputStream(re.sub(r"\.div\b(?!\s*\()", ".`div`", path)))
    parser = FHIRPathParser(CommonTokenStream(lexer))
    for recognizer in (lexer, parser):
        recognizer.removeErrorListeners()
        recognizer.addErrorListener(Raise())
    listener = ASTPathListener()
    ParseTreeWalker().walk(listener, parser.entireExpression())
    return typing.cast(dict, listener.parentStack[0])


def _value_type(part: dict) -> str | None:
    keys = [k for k in part if k.startswith("value")]
    return keys[0][len("value"):] if len(keys) == 1 else None


def _is_value_part(part: Any) -> bool:
    if not isinstance(part, dict):
        return False
    shapes = [k for k in part if k.startswith("value")]
    shapes += [k for k in ("resource", "part") if k in part]
    return len(shapes) == 1 and (not isinstance(part.get("part"), list) or all(map(_is_named, part["part"])))


def _is_named(part: Any) -> bool:
    return isinstance(part, dict) and isinstance(part.get("name"), str) and _is_value_part(part)


def _value(part: dict, cls: type | None, i: int) -> _Value:
    """Turn a `value` part (already checked by _is_value_part) into JSON."""
    value_type = _value_type(part)
    if value_type is not None:
        key = "value" + value_type
        return _Value(part[key], part.get("_" + key), value_type)
    if isinstance(part.get("resource"), dict):
        return _Value(part["resource"], None, "Resource")
    if not isinstance(part.get("part"), list):
        raise invalid(f"Operation {i}: a value part needs a value[x], a resource or nested parts")
    obj: dict[str, Any] = {}
    for sub in part["part"]:
        name = sub["name"]
        key, field = _resolve_name(cls, name, _value_type(sub))
        value = _value(sub, field.cls if field else None, i)
        repeated = field.is_list if field else key in obj
        if repeated:
            _append(obj, key, value)
        elif key in obj:
            raise invalid(f"Operation {i}: element {key} appears twice but is not repeating")
        else:
            _put(obj, key, value)
    return _Value(obj, None, None)


def _resolve_name(cls: type | None, name: str, type_name: str | None) -> tuple[str, _Field | None]:
    field = _field(cls, name)
    if field is None and type_name:
        typed = name + type_name[:1].upper() + type_name[1:]
        if _field(cls, typed) is not None:
            return typed, _field(cls, typed)
    return name, field


def _put(obj: dict, key: str, value: _Value) -> None:
    obj[key] = value.json
    obj.pop("_" + key, None)
    if value.ext is not None:
        obj["_" + key] = value.ext


def _append(obj: dict, key: str, value: _Value, index: int | None = None) -> None:
    items = obj.get(key)
    if items is None:
        items = obj[key] = []
    elif not isinstance(items, list):
        items = obj[key] = [items]
    at = len(items) if index is None else index
    exts = _exts(obj, key, len(items), value.ext is not None)
    items.insert(at, value.json)
    if exts is not None:
        exts.insert(at, value.ext)


def _exts(obj: dict, key: str, length: int, create: bool) -> list[Any] | None:
    """The "_key" list parallel to a primitive list, padded to `length` (created if asked)."""
    exts = obj.get("_" + key)
    if not isinstance(exts, list):
        if not create:
            return None
        exts = obj["_" + key] = []
    exts.extend([None] * (length - len(exts)))
    return exts


def _add(loc: _Loc, name: str, part: Any, i: int) -> None:
    if not isinstance(loc.value, dict):
        raise processing(f"Operation {i} (add): the path points at a primitive, which has no child {name}")
    key, field = _resolve_name(loc.cls, name, _value_type(part) if isinstance(part, dict) else None)
    if field is None and loc.cls is not None:
        raise processing(f"Operation {i} (add): {name} is not an element of {loc.cls.__name__}")
    value = _value(part, field.cls if field else None, i)
    if field.is_list if field else isinstance(loc.value.get(key), list):
        _append(loc.value, key, value)
    elif key in loc.value:
        raise processing(f"Operation {i} (add): {key} already has a value; use replace")
    else:
        _put(loc.value, key, value)


def _replace(loc: _Loc, part: Any, i: int) -> None:
    parent = typing.cast(dict, loc.parent)
    value = _value(part, loc.cls, i)
    key = loc.key
    field = _field(loc.owner, key)
    if field and field.choice_of and value.type_name and loc.index is None:
        key = field.choice_of + value.type_name[:1].upper() + value.type_name[1:]
        if _field(loc.owner, key) is None:
            raise processing(f"Operation {i} (replace): {field.choice_of} cannot be a {value.type_name}")
        del parent[loc.key]
        parent.pop("_" + loc.key, None)
    if loc.index is None:
        _put(parent, key, value)
        return
    parent[key][loc.index] = value.json
    exts = _exts(parent, key, len(parent[key]), value.ext is not None)
    if exts is not None:
        exts[loc.index] = value.ext


def _remove(loc: _Loc) -> None:
    parent = typing.cast(dict, loc.parent)
    if loc.index is None:
        del parent[loc.key]
        parent.pop("_" + loc.key, None)
        return
    exts = _exts(parent, loc.key, len(parent[loc.key]), False)
    del parent[loc.key][loc.index]
    if exts is not None:
        del exts[loc.index]


def _change_list(locator: _Locator, tree: dict, i: int, op: dict[str, Any]) -> None:
    """insert and move: the path names the list itself (`Patient.identifier`)."""
    kind, path = op["type"], op["path"]
    parent, key, owner = _list_slot(locator, tree, i, op)
    items = parent.get(key, [])
    field = _field(owner, key)
    if (field is not None and not field.is_list) or not isinstance(items, list):
        raise processing(f"Operation {i} ({kind}): {path} is not a list")
    if kind == "insert":
        if not 0 <= op["index"] <= len(items):
            raise processing(f"Operation {i} (insert): index {op['index']} is outside 0..{len(items)} at {path}")
        _append(parent, key, _value(op["value"], field.cls if field else None, i), op["index"])
        return
    src, dst = op["source"], op["destination"]
    if not (0 <= src < len(items) and 0 <= dst < len(items)):
        raise processing(f"Operation {i} (move): source {src} or destination {dst} is outside "
                         f"0..{len(items) - 1} at {path}")
    items.insert(dst, items.pop(src))
    exts = _exts(parent, key, len(items), False)
    if exts is not None:
        exts.insert(dst, exts.pop(src))


def _list_slot(locator: _Locator, tree: dict, i: int, op: dict[str, Any]) -> tuple[dict, str, type | None]:
    node = tree
    while node.get("type") in (None, "EntireExpression") and len(node.get("children", [])) == 1:
        node = node["children"][0]
    children = node.get("children", [])
    name = locator._member_name(children[-1]) if node.get("type") == "InvocationExpression" else None
    if name is not None:
        owners = locator.locate(children[0])
        if len(owners) == 1 and isinstance(owners[0].value, dict):
            return owners[0].value, name, owners[0].cls
    else:
        locs = locator.locate(tree)
        slots = {(id(loc.parent), loc.key) for loc in locs}
        if len(slots) == 1 and locs[0].parent is not None and locs[0].index is not None:
            return locs[0].parent, locs[0].key, locs[0].owner
    raise processing(f"No single list found at {op['path']} when {op['type']}ing (operation {i})")


def _prune(node: Any) -> None:
    """Drop the empty objects and arrays that deletions leave behind (FHIR JSON forbids them)."""
    if isinstance(node, list):
        for item in node:
            _prune(item)
        return
    if not isinstance(node, dict):
        return
    for key in list(node):
        value = node[key]
        _prune(value)
        if isinstance(value, list) and not key.startswith("_"):
            value[:] = [v for v in value if v != {}]
        elif isinstance(value, list):
            value[:] = [None if v == {} else v for v in value]
        if value in ({}, []) or (isinstance(value, list) and all(v is None for v in value)):
            del node[key]
