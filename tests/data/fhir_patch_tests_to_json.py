"""Convert the HL7 FHIRPath Patch test cases from FHIR XML to FHIR JSON, once.

https://hl7.org/fhir/R4/xml.html and https://hl7.org/fhir/R4/json.html

Source: fhir-patch-tests.xml is r4/patch/fhir-patch-tests.xml from https://github.com/FHIR/fhir-test-cases
(commit 2dee8a0f8fa0b948b4cd28f0edfc34a0322318fe), licensed Apache-2.0. This script writes
fhir-patch-tests.json next to it; the tests read the JSON. It converts only what FHIR XML needs
for these cases: repeating elements (from the fhir.resources R4B models), primitive types,
primitive extensions (`_name`), `id`/`url` attributes and the XHTML narrative.

Run from the repository root: .venv/bin/python -m tests.data.fhir_patch_tests_to_json
(or PYTHONPATH=. .venv/bin/python tests/data/fhir_patch_tests_to_json.py)
"""

from __future__ import annotations

import decimal
import pathlib
import types
import typing
import xml.etree.ElementTree as ET
from typing import Any

from fhir.resources.R4B import get_fhir_model_class

from fhir_server.fhir.json import dumps_pretty

FHIR = "{http://hl7.org/fhir}"
XHTML = "{http://www.w3.org/1999/xhtml}"
HERE = pathlib.Path(__file__).parent


def field_info(cls: type, name: str) -> tuple[bool, Any]:
    """(repeats, class or primitive base type) of element `name` of model `cls`."""
    ann: Any = cls.model_fields[name].annotation  # type: ignore[attr-defined]
    repeats = False
    while True:
        origin = typing.get_origin(ann)
        if origin in (typing.Union, types.UnionType):
            ann = next(a for a in typing.get_args(ann) if a is not type(None))
        elif origin is list:
            repeats, ann = True, typing.get_args(ann)[0]
        elif origin is typing.Annotated:
            ann = typing.get_args(ann)[0]
        else:
            return repeats, ann.get_model_klass() if hasattr(ann, "get_model_klass") else ann


def primitive(text: str, base: Any) -> Any:
    if base is bool:
        return text == "true"
    if base is int:
        return int(text)
    if base in (float, decimal.Decimal):
        return decimal.Decimal(text)
    return text


def xhtml(elem: ET.Element, top: bool = True) -> str:
    tag = elem.tag.replace(XHTML, "")
    attrs = "".join(f' {k}="{escape(v, True)}"' for k, v in elem.attrib.items())
    if top:
        attrs = ' xmlns="http://www.w3.org/1999/xhtml"' + attrs
    inner = escape(elem.text or "") + "".join(xhtml(c, False) + escape(c.tail or "") for c in elem)
    return f"<{tag}{attrs}>{inner}</{tag}>"


def escape(text: str, attr: bool = False) -> str:
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return text.replace('"', "&quot;") if attr else text


def element(elem: ET.Element, cls: type) -> dict[str, Any]:
    obj: dict[str, Any] = {}
    for attr in ("id", "url"):
        if attr in elem.attrib:
            obj[attr] = elem.attrib[attr]
    for child in elem:
        name = child.tag.replace(FHIR, "")
        if child.tag == XHTML + "div":
            obj["div"] = xhtml(child)
            continue
        repeats, kind = field_info(cls, name)
        if hasattr(kind, "model_fields"):
            # Resource-typed elements (contained, Parameters.parameter.resource) wrap a resource.
            value = resource(child[0]) if kind.__name__ == "Resource" else element(child, kind)
            ext = None
        else:
            value = primitive(child.attrib["value"], kind) if "value" in child.attrib else None
            extra = {k: v for k, v in child.attrib.items() if k == "id"}
            exts = [element(e, get_fhir_model_class("Extension")) for e in child]
            ext = {**extra, **({"extension": exts} if exts else {})} or None
        put(obj, name, value, ext, repeats)
    return obj


def put(obj: dict[str, Any], name: str, value: Any, ext: Any, repeats: bool) -> None:
    if not repeats:
        if value is not None:
            obj[name] = value
        if ext is not None:
            obj["_" + name] = ext
        return
    count = len(obj.get(name, obj.get("_" + name, [])))
    obj.setdefault(name, []).append(value)
    if ext is not None:
        obj.setdefault("_" + name, [None] * count).append(ext)
    elif "_" + name in obj:
        obj["_" + name].append(None)


def resource(elem: ET.Element) -> dict[str, Any]:
    rtype = elem.tag.replace(FHIR, "")
    return {"resourceType": rtype, **element(elem, get_fhir_model_class(rtype))}


def convert(path: pathlib.Path) -> list[dict[str, Any]]:
    cases = []
    for case in ET.parse(path).getroot().iter("case"):
        item: dict[str, Any] = {"name": case.attrib["name"], "mode": case.attrib.get("mode")}
        for part in ("input", "diff", "output"):
            node = case.find(part)
            if node is not None:
                item[part] = resource(node[0])
        error = case.find("error")
        if error is not None:
            item["error"] = error.attrib["msg"]
        cases.append(item)
    return cases


if __name__ == "__main__":
    cases = convert(HERE / "fhir-patch-tests.xml")
    doc = {
        "source": "https://github.com/FHIR/fhir-test-cases/blob/2dee8a0f8fa0b948b4cd28f0edfc34a0322318fe"
        "/r4/patch/fhir-patch-tests.xml",
        "licence": "Apache-2.0 (https://github.com/FHIR/fhir-test-cases/blob/master/LICENSE.txt)",
        "generatedBy": "tests/data/fhir_patch_tests_to_json.py",
        "cases": cases,
    }
    (HERE / "fhir-patch-tests.json").write_bytes(dumps_pretty(doc) + b"\n")
    print(f"{len(cases)} cases written")
