"""The two PATCH body formats: JSON Patch (RFC 6902) and FHIRPath Patch.

https://hl7.org/fhir/R4/http.html#patch and https://hl7.org/fhir/R4/fhirpatch.html

Both functions are pure: they return a new resource dict and never touch their arguments. A
malformed patch document is 400 (`invalid`); a well-formed patch that cannot be applied to this
resource (a failing `test`, a path that finds nothing) is 422 (`processing`). Finding the places a
FHIRPath Patch path selects is the job of patch_paths.py.
"""

from __future__ import annotations

import copy
import typing
from dataclasses import dataclass
from typing import Any

import jsonpatch
import jsonpointer

from fhir_server.errors import invalid, processing
from fhir_server.fhir.patch_paths import (
    Location,
    Locator,
    member_name,
    model_field,
    parse_path,
    resolve_name,
    unwrap,
)

__all__ = ["apply_fhirpath_patch", "apply_json_patch"]

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
    locator = Locator(doc)
    tree = parse_path(path, i)
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
        key, field = resolve_name(cls, sub["name"], _value_type(sub))
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


def _add(loc: Location, name: str, part: dict[str, Any], i: int) -> None:
    if not isinstance(loc.value, dict):
        raise processing(f"Operation {i} (add): the path points at a primitive, which has no child {name}")
    key, field = resolve_name(loc.cls, name, _value_type(part))
    if field is None and loc.cls is not None:
        raise processing(f"Operation {i} (add): {name} is not an element of {loc.cls.__name__}")
    value = _value(part, field.cls if field else None, i)
    if field.is_list if field else isinstance(loc.value.get(key), list):
        _insert(loc.value, key, value)
    elif key in loc.value:
        raise processing(f"Operation {i} (add): {key} already has a value; use replace")
    else:
        _put(loc.value, key, value)


def _replace(loc: Location, part: dict[str, Any], i: int) -> None:
    parent = typing.cast(dict[str, Any], loc.parent)
    value = _value(part, loc.cls, i)
    field = model_field(loc.owner, loc.key)
    if loc.index is not None:
        parent[loc.key][loc.index] = value.json
        exts = _exts(parent, loc.key, len(parent[loc.key]), value.ext is not None)
        if exts is not None:
            exts[loc.index] = value.ext
        return
    key = loc.key
    if field and field.choice_of and value.type_name:
        key, _ = resolve_name(loc.owner, field.choice_of, value.type_name)
        if key == field.choice_of:
            raise processing(f"Operation {i} (replace): {key} cannot be a {value.type_name}")
    del parent[loc.key]
    parent.pop("_" + loc.key, None)
    _put(parent, key, value)


def _remove(loc: Location) -> None:
    parent = typing.cast(dict[str, Any], loc.parent)
    if loc.index is None:
        del parent[loc.key]
        parent.pop("_" + loc.key, None)
        return
    exts = _exts(parent, loc.key, len(parent[loc.key]), False)
    del parent[loc.key][loc.index]
    if exts is not None:
        del exts[loc.index]


def _change_list(locator: Locator, tree: dict[str, Any], i: int, op: dict[str, Any]) -> None:
    """insert and move: the path names the list itself (`Patient.identifier`)."""
    kind, path = op["type"], op["path"]
    parent, key, owner = _list_slot(locator, tree, i, op)
    items = parent.get(key, [])
    field = model_field(owner, key)
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
    locator: Locator, tree: dict[str, Any], i: int, op: dict[str, Any]
) -> tuple[dict[str, Any], str, type | None]:
    node = unwrap(tree)
    children = node.get("children", [])
    name = member_name(children[-1]) if node.get("type") == "InvocationExpression" else None
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
