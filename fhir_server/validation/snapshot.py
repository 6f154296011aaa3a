"""Snapshot generation: a StructureDefinition's differential applied over its base's snapshot.

https://hl7.org/fhir/R4/profiling.html#snapshot

Element ids drive the merge (`Patient.identifier:INS-NIR.system`). A differential element whose id
is not in the snapshot yet is materialised first: a new slice is copied from its sliced element
(with that element's children), and a path below a complex datatype or an extension is expanded
from the datatype's (or the extension profile's) own snapshot. The base snapshot comes from the
resolver, so a profile on a profile is handled by recursion in the registry.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

from fhir_server.errors import FhirError, processing

__all__ = ["generate_snapshot", "strip_slices"]

Element = dict[str, Any]
# url -> that StructureDefinition's snapshot elements (generated if needed), or None if unknown.
SnapshotResolver = Callable[[str], list[Element] | None]

# Keys of a differential element that never overwrite the base (identity of the element).
_IDENTITY = {"id", "path"}


def strip_slices(element_id: str) -> str:
    """The element path of an element id: slice names removed from every segment."""
    return ".".join(part.split(":", 1)[0] for part in element_id.split("."))


def generate_snapshot(sd: dict[str, Any], resolve: SnapshotResolver) -> list[Element]:
    """The snapshot elements of `sd`; the base snapshot is not modified."""
    base_url = sd.get("baseDefinition")
    if not base_url:
        raise processing(f"StructureDefinition {sd.get('url')} has neither snapshot nor baseDefinition")
    base = resolve(base_url)
    if base is None:
        raise processing(f"Base definition {base_url} of {sd.get('url')} is not known")
    elements = [_rebase(dict(el), base[0]["id"], sd.get("type") or base[0]["id"]) for el in base]
    builder = _Builder(elements, resolve)
    for diff in sd.get("differential", {}).get("element", []):
        builder.apply(diff)
    return builder.elements


def _rebase(element: Element, old_root: str, new_root: str) -> Element:
    # A constraint on a type keeps the type's root name; only a different root needs renaming.
    if old_root != new_root:
        element["id"] = new_root + element["id"][len(old_root) :]
        element["path"] = new_root + element["path"][len(old_root) :]
    return element


class _Builder:
    def __init__(self, elements: list[Element], resolve: SnapshotResolver) -> None:
        self.elements = elements
        # A contentReference means the base's structure, not what this differential made of it.
        self.original = [dict(el) for el in elements]
        self.resolve = resolve

    def index(self, element_id: str) -> int | None:
        for i, el in enumerate(self.elements):
            if el["id"] == element_id:
                return i
        return None

    def apply(self, diff: Element) -> None:
        element_id, type_code = self._normalise_choice(_diff_id(diff))
        i = self.index(element_id)
        parent_id = element_id.rpartition(".")[0]
        if i is None and parent_id:
            # The parent may need materialising before a choice name below it can be recognised.
            if self.index(parent_id) is None:
                self.materialise(parent_id)
            if not self._has_children(parent_id):
                self._expand(parent_id)
            element_id, second = self._normalise_choice(element_id)
            type_code = second or type_code
            i = self.index(element_id)
        if i is None:
            i = self.materialise(element_id)
        target = self.elements[i]
        _merge(target, diff)
        if type_code and "type" not in diff:
            target["type"] = [t for t in target.get("type", []) if t.get("code") == type_code] or [
                {"code": type_code}
            ]

    def _normalise_choice(self, element_id: str) -> tuple[str, str | None]:
        """Map `value[x]:valueQuantity` and `valueQuantity` to `value[x]` restricted to Quantity."""
        parts = element_id.split(".")
        type_code = None
        for n, part in enumerate(parts):
            name, _, slice_name = part.partition(":")
            prefix = ".".join(parts[:n])
            if name.endswith("[x]") and slice_name.startswith(name[:-3]):
                parts[n], type_code = name, _type_from_suffix(slice_name[len(name) - 3 :])
            elif not name.endswith("[x]") and self.index(f"{prefix}.{name}" if prefix else name) is None:
                choice = self._choice_for(prefix, name)
                if choice:
                    parts[n] = choice[0] + (f":{slice_name}" if slice_name else "")
                    type_code = choice[1]
        return ".".join(parts), type_code

    def _choice_for(self, prefix: str, name: str) -> tuple[str, str] | None:
        for el in self.elements:
            el_id: str = el["id"]
            if not el_id.endswith("[x]") or el_id.rsplit(".", 1)[0] != prefix:
                continue
            stem = el_id.rsplit(".", 1)[1][:-3]
            if name.startswith(stem) and len(name) > len(stem) and name[len(stem)].isupper():
                return el_id.rsplit(".", 1)[1], _type_from_suffix(name[len(stem) :])
        return None

    def materialise(self, element_id: str) -> int:
        parent_id, _, last = element_id.rpartition(".")
        if not parent_id:
            raise _unknown(element_id)
        if self.index(parent_id) is None:
            self.materialise(parent_id)
        name, _, slice_name = last.partition(":")
        base_id = f"{parent_id}.{name}"
        if slice_name and self.index(base_id) is not None:
            return self._add_slice(base_id, slice_name.split("/")[-1], element_id)
        if not self._has_children(parent_id):
            self._expand(parent_id)
            found = self.index(element_id)
            if found is not None:
                return found
            if slice_name and self.index(base_id) is not None:
                return self._add_slice(base_id, slice_name, element_id)
        raise _unknown(element_id)

    def _has_children(self, element_id: str) -> bool:
        i = self.index(element_id)
        assert i is not None
        return i + 1 < len(self.elements) and self.elements[i + 1]["id"].startswith(element_id + ".")

    def _add_slice(self, base_id: str, slice_name: str, element_id: str) -> int:
        start = self.index(base_id)
        assert start is not None
        end = start + 1
        # The new slice goes after the sliced element, its children and every existing slice.
        while end < len(self.elements) and (
            self.elements[end]["id"].startswith(base_id + ".")
            or self.elements[end]["id"].startswith(base_id + ":")
        ):
            end += 1
        copies: list[Element] = []
        for el in self.elements[start:end]:
            if el["id"] != base_id and not el["id"].startswith(base_id + "."):
                continue
            new = dict(el)
            new["id"] = element_id + el["id"][len(base_id) :]
            new["path"] = strip_slices(new["id"])
            copies.append(new)
        copies[0]["sliceName"] = slice_name
        copies[0].pop("slicing", None)
        self.elements[end:end] = copies
        return end

    def _expand(self, element_id: str) -> None:
        i = self.index(element_id)
        assert i is not None
        element = self.elements[i]
        if element.get("contentReference"):
            children = self._referenced(element)
            # The element now carries its own copy of the structure it referred to.
            element = {k: v for k, v in element.items() if k != "contentReference"}
            element["type"] = [{"code": "BackboneElement"}]
            self.elements[i] = element
        else:
            children = self._type_children(element)
        if children is None:
            return
        root = children[0]["id"]
        copies = []
        for child in children[1:]:
            new = dict(child)
            new["id"] = element_id + child["id"][len(root) :]
            new["path"] = strip_slices(new["id"])
            copies.append(new)
        self.elements[i + 1 : i + 1] = copies

    def _referenced(self, element: Element) -> list[Element] | None:
        """`#Questionnaire.item`: that element and its descendants, as a datatype's snapshot would be."""
        target = str(element["contentReference"]).split("#")[-1]
        ids = [el["id"] for el in self.original]
        if target not in ids:
            return None
        start = end = ids.index(target)
        while end + 1 < len(ids) and ids[end + 1].startswith(target + "."):
            end += 1
        return self.original[start : end + 1]

    def _type_children(self, element: Element) -> list[Element] | None:
        types = element.get("type") or []
        if len(types) != 1:
            return None
        type_ = types[0]
        for url in type_.get("profile") or []:
            snap = self.resolve(url)
            if snap:
                return snap
        code = type_.get("code", "")
        if not code or "/" in code or code[0].islower():
            return None
        return self.resolve(f"http://hl7.org/fhir/StructureDefinition/{code}")


def _diff_id(diff: Element) -> str:
    if diff.get("id"):
        return str(diff["id"])
    path = str(diff["path"])
    return f"{path}:{diff['sliceName']}" if diff.get("sliceName") else path


def _type_from_suffix(suffix: str) -> str:
    # valueString -> string; valueCodeableConcept -> CodeableConcept (primitive names are lower camel).
    primitive = suffix[0].lower() + suffix[1:]
    return primitive if primitive in _PRIMITIVES else suffix


_PRIMITIVES = {
    "base64Binary", "boolean", "canonical", "code", "date", "dateTime", "decimal", "id", "instant",
    "integer", "markdown", "oid", "positiveInt", "string", "time", "unsignedInt", "uri", "url", "uuid",
}  # fmt: skip


def _merge(target: Element, diff: Element) -> None:
    for key, value in diff.items():
        if key in _IDENTITY:
            continue
        if key == "constraint":
            keys = {c.get("key") for c in value}
            target["constraint"] = [c for c in target.get("constraint", []) if c.get("key") not in keys] + [
                copy.deepcopy(c) for c in value
            ]
        elif key.startswith(("fixed", "pattern")):
            inherited = target.get(key)
            if key.startswith("fixed") and inherited is not None and inherited != value:
                # A derived profile may narrow what its base allows, never contradict a fixed value.
                raise processing(f"{target['id']}: {key} {value!r} contradicts the inherited fixed value {inherited!r}")
            for old in [k for k in target if k.startswith(("fixed", "pattern"))]:
                del target[old]
            target[key] = copy.deepcopy(value)
        else:
            target[key] = copy.deepcopy(value)


def _unknown(element_id: str) -> FhirError:
    return processing(f"Differential element {element_id} matches no element of the base definition")
