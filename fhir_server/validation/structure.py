"""Structural validation of an R4 resource: element names, cardinality, JSON types and primitive formats.

https://hl7.org/fhir/R4/json.html

fhir.resources has no R4 (4.0.1) models, only R4B (4.3) and R5. For the R4 types whose R4B model
accepts the same JSON (all but those in `r4b_divergent_types()`, computed when vendoring), the
R4B pydantic model checks required elements, list versus single values, choice exclusivity and
real calendar dates. The models coerce JSON kinds (`"true"` and `1` pass as booleans, `"1.5"` as
a decimal), ignore required-binding codes and accept their Python field names, so the official
R4 JSON schema's element names, JSON types, patterns and enums are checked after them (compiled
into plain functions, see `_LeafChecks`). The divergent types, and any resource that holds one (a
Bundle entry, a contained resource), are checked by the schema alone, with jsonschema.

`validate_structure` never raises: anything wrong comes back as OperationOutcome issues.
"""

from __future__ import annotations

import decimal
import re
from collections.abc import Callable, Iterator
from functools import cache
from typing import Any

from jsonschema import Draft6Validator, validators
from jsonschema import ValidationError as SchemaError
from pydantic import ValidationError

from fhir_server.definitions import r4_json_schema, r4b_divergent_types, resource_types
from fhir_server.errors import Issue, issue

__all__ = ["validate_structure"]

MAX_ISSUES = 100
# The schema checks the models do not make (JSON kinds, formats, required-binding codes).
_LEAF_KEYWORDS = frozenset({"type", "pattern", "enum", "const"})
_ELEMENT_NAME = re.compile(r"_?[A-Za-z][A-Za-z0-9]*")
_STRUCTURE_ERRORS = frozenset(
    {
        "list_type",
        "dict_type",
        "model_type",
        "model_attributes_type",
        "is_instance_of",
        "tuple_type",
    }
)
_MISSING_ERRORS = frozenset({"missing", "model_field_validation.missing"})


def validate_structure(resource: dict[str, Any]) -> list[Issue]:
    """Check `resource` against the R4 structure; return OperationOutcome issues, [] when valid."""
    try:
        issues = _validate(resource)
    except RecursionError:
        issues = [issue("The resource is nested too deeply to be validated", "structure")]
    except Exception as exc:  # noqa: BLE001 -- the contract is to report, never to raise
        issues = [issue(f"The resource could not be validated ({type(exc).__name__}: {exc})", "invalid")]
    if len(issues) > MAX_ISSUES:
        more = len(issues) - MAX_ISSUES
        issues = issues[:MAX_ISSUES] + [issue(f"{more} more issues not shown", "structure", "information")]
    return issues


def _validate(resource: Any) -> list[Issue]:
    if not isinstance(resource, dict):
        return [issue("A resource must be a JSON object", "structure")]
    rt = resource.get("resourceType")
    if rt is None:
        return [issue("The resource has no resourceType", "required", expression="resourceType")]
    if not isinstance(rt, str) or rt not in resource_types():
        return [issue(f"resourceType {rt!r} is not an R4 resource type", "not-supported", expression="resourceType")]
    shape = _Shape()
    shape.walk(resource, rt, "root")
    divergent = r4b_divergent_types()
    if rt in divergent or shape.nested_types & divergent or shape.unknown_nested:
        return shape.issues + _schema_issues(resource, rt)
    model_issues = _model_issues(resource, rt)
    leaf_issues: list[Issue] = []
    _leaf_checks().of(rt)(resource, rt, leaf_issues)
    seen = {i["expression"][0] for i in model_issues if i.get("expression")}
    return shape.issues + model_issues + [i for i in leaf_issues if i["expression"][0] not in seen]


# --- JSON shape rules the models and the schema both miss ------------------------------------------


class _Shape:
    """FHIR JSON rules of json.html: no null members, no empty arrays or objects, null only as a
    placeholder in an array that has its `_name` twin. Also finds nested resources (contained,
    Bundle entries, Parameters) and their types, which decide how the whole resource is checked."""

    def __init__(self) -> None:
        self.issues: list[Issue] = []
        self.nested_types: set[str] = set()
        self.unknown_nested = False

    def walk(self, value: Any, path: str, role: str = "element") -> None:
        """`role` is "root", "contained" (must be a resource) or "element" (a resource if it says so)."""
        if isinstance(value, dict):
            if not value:
                self._add(path, "Empty objects are not allowed in FHIR JSON")
            if role == "contained" or (role == "element" and "resourceType" in value):
                self._nested_resource(value.get("resourceType"), path)
            for key, item in value.items():
                self._member(value, str(key), item, f"{path}.{key}")
        elif isinstance(value, list):
            for index, item in enumerate(value):
                self.walk(item, f"{path}[{index}]")

    def _member(self, parent: dict[str, Any], key: str, item: Any, path: str) -> None:
        if item is None:
            self._add(path, f"'{key}' is null: omit an element that has no value")
        elif isinstance(item, list):
            if not item:
                self._add(path, f"'{key}' is an empty array: omit an element that has no value")
            twin = key[1:] if key.startswith("_") else "_" + key
            for index, element in enumerate(item):
                if element is None and twin not in parent:
                    self._add(f"{path}[{index}]", f"null in '{key}' is only allowed to line up with '{twin}'")
                elif isinstance(element, list):
                    self._add(f"{path}[{index}]", "Arrays of arrays are not allowed in FHIR JSON")
                else:
                    self.walk(element, f"{path}[{index}]", "contained" if key == "contained" else "element")
        else:
            self.walk(item, path)

    def _nested_resource(self, type_name: Any, path: str) -> None:
        if isinstance(type_name, str) and type_name in resource_types():
            self.nested_types.add(type_name)
            return
        self.unknown_nested = True
        if type_name is not None:
            message = f"resourceType {type_name!r} is not an R4 resource type"
            self.issues.append(issue(message, "not-supported", expression=f"{path}.resourceType"))

    def _add(self, path: str, message: str) -> None:
        self.issues.append(issue(f"{message} (at {path})", "structure", expression=path))


# --- R4B pydantic models ------------------------------------------------------------------------------


@cache
def _model(type_name: str) -> Any:
    from fhir.resources.R4B import get_fhir_model_class

    return get_fhir_model_class(type_name)


def _model_issues(resource: dict[str, Any], rt: str) -> list[Issue]:
    try:
        # strict=True stops pydantic's own coercions; fhir_core's primitive types still coerce some.
        _model(rt).model_validate(resource, strict=True)
    except ValidationError as exc:
        # Element names are R4's business: the leaf checks report unknown ones from the R4 schema,
        # and the model would wrongly reject R4-only names such as Extension.valueMeta.
        errors = [e for e in exc.errors(include_url=False) if e.get("type") != "extra_forbidden"]
        return [_pydantic_issue(rt, err) for err in errors]
    except (KeyError, ValueError, TypeError, AttributeError) as exc:
        return [issue(f"The resource does not fit the {rt} structure ({exc})", "structure", expression=rt)]
    return []


def _pydantic_issue(rt: str, err: Any) -> Issue:
    loc = tuple(err.get("loc", ()))
    path = _fhirpath(rt, loc)
    kind = str(err.get("type", ""))
    message = str(err.get("msg", "")).removeprefix("Value error, ")
    if kind in _MISSING_ERRORS and loc:
        name = loc[-1]
        return issue(f"Missing required element '{name}' in {_fhirpath(rt, loc[:-1])}", "required", expression=path)
    if kind in _STRUCTURE_ERRORS:
        return issue(f"{path}: {message}", "structure", expression=path)
    if not loc:
        return issue(f"{rt}: {message}", "invalid", expression=path)
    return issue(f"Invalid value {_short(err.get('input'))} at {path}: {message}", "value", expression=path)


def _fhirpath(rt: str, loc: tuple[Any, ...]) -> str:
    out = rt
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part == "resource_type":
            out += ".resourceType"
        elif isinstance(part, str) and _ELEMENT_NAME.fullmatch(part):
            out += "." + part
        # Anything else is a pydantic union or validator tag, not an element.
    return out


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


# --- The schema's names and leaf checks, compiled -------------------------------------------------------------
# The models miss JSON kinds, formats and required-binding codes: only the schema's leaves (type,
# pattern, enum, const) are needed for those. jsonschema re-resolves every $ref and takes ~0.9 ms on a
# 2 kB Patient, so those leaves are compiled once into plain functions; the tests hold them to
# jsonschema's verdicts. Wrong shapes (an object for a list...) are left to the models.

_Check = Callable[[Any, str, list[Issue]], None]
_NO_CONST = object()
_JSON_KINDS: dict[str, Callable[[Any], bool]] = {
    "string": lambda v: isinstance(v, str),
    "boolean": lambda v: isinstance(v, bool),
    "number": lambda v: isinstance(v, (int, float, decimal.Decimal)) and not isinstance(v, bool),
}


class _LeafChecks:
    def __init__(self, definitions: dict[str, Any]) -> None:
        self.definitions = definitions
        self.compiled: dict[str, _Check] = {}

    def of(self, name: str) -> _Check:
        check = self.compiled.get(name)
        if check is None:
            check = self.compiled[name] = self._definition(self.definitions[name])
        return check

    def _definition(self, schema: dict[str, Any]) -> _Check:
        if "oneOf" in schema:  # ResourceList: the nested resource's own type decides
            return self._resource
        if "properties" not in schema:
            return self._leaf(schema)
        properties = {name: self._property(sub) for name, sub in schema["properties"].items()}

        def check_object(value: Any, path: str, out: list[Issue]) -> None:
            if isinstance(value, dict):
                for key, item in value.items():
                    check = properties.get(key)
                    if check is not None:
                        check(item, f"{path}.{key}", out)
                    else:
                        # The models also accept their Python field names (`class_fhir`,
                        # `birthDate__ext`, `fhir_comments`): only the schema knows the JSON names.
                        out.append(_unknown_element(key, path))

        return check_object

    def _property(self, schema: dict[str, Any]) -> _Check:
        if "$ref" in schema:
            name = schema["$ref"].rsplit("/", 1)[1]
            # Resolved at call time: definitions refer to each other in cycles (Extension, Identifier...).
            return lambda value, path, out: self.of(name)(value, path, out)
        if schema.get("type") == "array":
            check_item = self._property(schema["items"])

            def check_array(value: Any, path: str, out: list[Issue]) -> None:
                if isinstance(value, list):
                    for index, item in enumerate(value):
                        check_item(item, f"{path}[{index}]", out)

            return check_array
        return self._leaf(schema)

    def _leaf(self, schema: dict[str, Any]) -> _Check:
        kind = schema.get("type")
        accepts = _JSON_KINDS.get(kind) if isinstance(kind, str) else None
        regex = _compiled(schema["pattern"]) if "pattern" in schema else None
        enum, const = schema.get("enum"), schema.get("const", _NO_CONST)

        def check_leaf(value: Any, path: str, out: list[Issue]) -> None:
            if value is None:
                return
            if accepts is not None and not accepts(value):
                out.append(_value_issue(value, path, f"expected a JSON {kind}"))
            elif regex is not None and isinstance(value, str) and regex.search(value) is None:
                out.append(_value_issue(value, path, _BAD_FORMAT))
            elif enum is not None and value not in enum:
                out.append(_value_issue(value, path, f"expected one of {', '.join(map(str, enum))}"))
            elif const is not _NO_CONST and value != const:
                out.append(_value_issue(value, path, f"expected {const!r}"))

        return check_leaf

    def _resource(self, value: Any, path: str, out: list[Issue]) -> None:
        type_name = value.get("resourceType") if isinstance(value, dict) else None
        if isinstance(type_name, str) and type_name in resource_types():
            self.of(type_name)(value, path, out)


@cache
def _leaf_checks() -> _LeafChecks:
    return _LeafChecks(r4_json_schema()["definitions"])


def _unknown_element(name: Any, path: str) -> Issue:
    return issue(f"Unknown element '{name}' in {path}", "structure", expression=f"{path}.{name}")


def _value_issue(value: Any, path: str, message: str) -> Issue:
    return issue(f"Invalid value {_short(value)} at {path}: {message}", "value", expression=path)


_BAD_FORMAT = "not a valid FHIR primitive value of that type"


# --- R4 JSON schema ------------------------------------------------------------------------------------


def _schema_issues(resource: dict[str, Any], rt: str) -> list[Issue]:
    found: list[Issue] = []
    for error in _schema_validator(rt).iter_errors(resource):
        if error.instance is None:
            continue  # _Shape reports nulls, with the rule that allows some
        found.extend(_schema_issue(rt, error))
    return found


def _schema_issue(rt: str, error: SchemaError) -> Iterator[Issue]:
    path = _fhirpath(rt, tuple(error.absolute_path))
    keyword = error.validator
    if keyword == "additionalProperties" and isinstance(error.instance, dict):
        known = error.schema.get("properties", {}) if isinstance(error.schema, dict) else {}
        for name in error.instance:
            if name not in known:
                yield _unknown_element(name, path)
    elif keyword == "required" and isinstance(error.instance, dict):
        for name in error.validator_value:
            if name not in error.instance:
                yield issue(f"Missing required element '{name}' in {path}", "required", expression=f"{path}.{name}")
    elif keyword == "type" and isinstance(error.instance, (dict, list)):
        yield issue(f"{path}: {error.message}", "structure", expression=path)
    elif keyword in _LEAF_KEYWORDS:
        yield _value_issue(error.instance, path, _schema_message(error))
    else:
        yield issue(f"{path}: {error.message}", "structure" if keyword == "resource" else "invalid", expression=path)


def _schema_message(error: SchemaError) -> str:
    if error.validator == "pattern":
        return _BAD_FORMAT
    if error.validator == "type":
        return f"expected a JSON {error.validator_value}"
    if error.validator == "enum":
        return f"expected one of {', '.join(map(str, error.validator_value))}"
    if error.validator == "const":
        return f"expected {error.validator_value!r}"
    return str(error.message)


@cache
def _schema_validator(type_name: str) -> Any:
    """One validator per resource type, sharing the schema's definitions (compiled lazily, once)."""
    schema = r4_json_schema()
    return _validator_class()({"$ref": f"#/definitions/{type_name}", "definitions": schema["definitions"]})


@cache
def _validator_class() -> Any:
    resource_list = r4_json_schema()["definitions"]["ResourceList"]["oneOf"]
    one_of = Draft6Validator.VALIDATORS["oneOf"]

    def dispatch_one_of(validator: Any, value: Any, instance: Any, schema: Any) -> Iterator[SchemaError]:
        # A nested resource (contained, Bundle.entry.resource) is a oneOf over all 146 types: trying
        # each is slow and its error says nothing. Its resourceType says which one to check.
        if value is not resource_list:
            yield from one_of(validator, value, instance, schema)
            return
        type_name = instance.get("resourceType") if isinstance(instance, dict) else None
        if isinstance(type_name, str) and type_name in resource_types():
            yield from validator.descend(instance, {"$ref": f"#/definitions/{type_name}"})
        elif type_name is None:
            yield SchemaError("a resource (an object with a resourceType) is expected here", validator="resource")
        # An unknown resourceType is reported by _Shape, with its path.

    return validators.extend(Draft6Validator, {"oneOf": dispatch_one_of, "pattern": _xsd_pattern})


def _xsd_pattern(validator: Any, pattern: str, instance: Any, schema: Any) -> Iterator[SchemaError]:
    # The schema's patterns are XML Schema regexes, where \s is ASCII whitespace only: with Python's
    # Unicode \S a no-break space in a string would be rejected. re.ASCII gives XML's meaning.
    if isinstance(instance, str) and _compiled(pattern).search(instance) is None:
        yield SchemaError(f"{instance!r} does not match {pattern!r}")


@cache
def _compiled(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern, re.ASCII)
