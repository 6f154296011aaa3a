"""The convention that makes the documentation's shell examples checkable."""

from __future__ import annotations

from pathlib import Path

from tests.docs.doc_commands import Check, extract

DOC = """# Title

```sh
B=http://127.0.0.1:8080/fhir
curl -s -X PUT $B/Patient/p1 -H "$J" -d '{"resourceType":"Patient",
  "id":"p1"}'                                   # -> 201 id=p1 @etag=W/"1"
# -> 404 issue.0.diagnostics~unknown
curl -s $B/Patient/nope
curl -s $B/Patient/p1 \\
  -H 'Accept: application/fhir+json'
```

<!-- docs-test: skip needs make -->
```sh
make serve
```

```json
{"not": "run"}
```

```console
$ fhir-server load examples/x   # -> exit 2
folder not found
```
"""


def test_commands_expectations_and_skips(tmp_path: Path) -> None:
    (tmp_path / "README.md").write_text(DOC)
    commands = extract(tmp_path / "README.md", tmp_path)
    assert [c.source for c in commands] == ["README.md:4", "README.md:5", "README.md:8", "README.md:9", "README.md:23"]
    assign, put, missing, read, load = commands
    assert assign.status is None and assign.exit_code == 0
    assert put.status == 201 and put.checks == [Check("id", "=", "p1"), Check("@etag", "=", 'W/"1"')]
    assert put.text.count("\n") == 1
    assert missing.status == 404 and missing.checks == [Check("issue.0.diagnostics", "~", "unknown")]
    assert read.status is None and "Accept" in read.text
    assert load.exit_code == 2 and load.text.startswith("fhir-server load")


LOOPS_AND_PROFILES = """
```bash
for f in a b; do
  echo "$f"
done
```

<!-- docs-test: validate https://example.org/StructureDefinition/p -->
```json
{"resourceType": "Patient", "id": "x"}
```

```json
{"resourceType": "Patient", "id": "not-checked"}
```
"""


def test_loops_stay_whole_and_marked_json_is_validated(tmp_path: Path) -> None:
    (tmp_path / "README.md").write_text(LOOPS_AND_PROFILES)
    loop, validate = extract(tmp_path / "README.md", tmp_path)
    assert loop.text.startswith("for f in a b; do") and loop.text.endswith("done")
    assert "/Patient/$validate?profile=https://example.org/StructureDefinition/p" in validate.text
    assert validate.status == 200 and validate.checks == [Check("issue", "!~", '"severity":"error"')]
