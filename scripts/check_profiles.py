"""Check the conformance resources in profiles/ and regenerate the ImplementationGuide listing.

FHIR R4 ImplementationGuide: https://hl7.org/fhir/R4/implementationguide.html

Usage:
    python scripts/check_profiles.py            # report problems, exit 1 if any
    python scripts/check_profiles.py --write-ig # rewrite ImplementationGuide-coordination.json definition.resource

The IG lists every other resource of profiles/, so integrators can fetch the whole set from
GET /fhir/ImplementationGuide/coordination. Run --write-ig after adding or removing a file.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROFILES = ROOT / "profiles"
IG_FILE = PROFILES / "ImplementationGuide-coordination.json"


def load_all() -> dict[Path, dict]:
    """Every JSON resource of profiles/, keyed by file path."""
    return {p: json.loads(p.read_text(encoding="utf-8")) for p in sorted(PROFILES.glob("*.json"))}


def problems(resources: dict[Path, dict]) -> list[str]:
    """File-name, id and url consistency problems, plus resources missing from the IG."""
    found: list[str] = []
    for path, res in resources.items():
        expected = f"{res.get('resourceType')}-{res.get('id')}.json"
        if path.name != expected:
            found.append(f"{path.name}: file name should be {expected}")
        url = res.get("url")
        if (
            url is not None
            and not url.endswith(f"/{res['resourceType']}/{res['id']}")
            and res["resourceType"] not in ("CodeSystem", "ValueSet")
        ):
            found.append(f"{path.name}: url {url} does not end with /{res['resourceType']}/{res['id']}")
    ig = resources.get(IG_FILE)
    if ig is None:
        return found + ["ImplementationGuide-coordination.json is missing"]
    listed = {r["reference"]["reference"] for r in ig.get("definition", {}).get("resource", [])}
    for path, res in resources.items():
        key = f"{res['resourceType']}/{res['id']}"
        if path != IG_FILE and key not in listed:
            found.append(f"{key} is not listed in the ImplementationGuide")
    return found


def ig_entries(resources: dict[Path, dict]) -> list[dict]:
    """definition.resource entries for every resource except the IG itself."""
    entries = []
    for path, res in resources.items():
        if path == IG_FILE:
            continue
        entry = {
            "reference": {"reference": f"{res['resourceType']}/{res['id']}"},
            "name": res.get("title") or res.get("name") or res["id"],
        }
        if res.get("description"):
            # Keep the listing readable: the full text stays in the resource itself.
            entry["description"] = res["description"].split(". ")[0].rstrip(".") + "."
        entry["exampleBoolean"] = False
        entries.append(entry)
    return entries


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write-ig", action="store_true", help="rewrite the IG resource listing")
    args = parser.parse_args(argv)
    resources = load_all()
    if args.write_ig:
        ig = json.loads(IG_FILE.read_text(encoding="utf-8"))
        ig["definition"]["resource"] = ig_entries(resources)
        IG_FILE.write_text(json.dumps(ig, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        resources = load_all()
    found = problems(resources)
    for line in found:
        print(line)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
