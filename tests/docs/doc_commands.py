"""Shell examples of the documentation, extracted with the result each one states.

https://hl7.org/fhir/R4/http.html (what the examples exercise)

The convention, documented in docs/contributing.md:

- Every fenced block tagged `sh`, `bash` or `console` in README.md, docs/*.md and
  examples/*/README.md is run, in that order, against one server on a fresh database.
- A command's expected result is a comment on its last line (or on a line of its own just
  above it): `# -> 201`, optionally followed by checks on the JSON answer, `path=value` (equal)
  or `path~text` (contains), the path dotted with list indices (`entry.0.resource.id=x`), or
  `@header=value` for a response header (`@etag=W/"2"`). `# -> exit 1` expects an exit status.
- Without a comment, a command must exit 0 and every HTTP answer it receives must be 2xx.
- In `console` blocks, commands start with `$ `; the other lines are output and are not checked.
- A block preceded by `<!-- docs-test: skip: REASON -->` is not run (it needs another context:
  make, Docker, minutes of benchmark).
- A `json` block preceded by `<!-- docs-test: validate PROFILE-URL -->` is a resource that must
  meet that profile: it is sent to `$validate` and the answer must hold no error.
- A block preceded by `<!-- docs-test: auth=on -->` runs against a second server, with
  authentication on (the default of `fhir-server serve`) and a database of its own, so the
  OAuth examples are checked too; `fhir-server` commands there act on that server's database.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["Check", "Command", "doc_files", "extract"]

_FENCE = re.compile(r"^(\s*)```(\w*)\s*$")
_SKIP = re.compile(r"<!--\s*docs-test:\s*skip\b(.*?)-->")
_VALIDATE = re.compile(r"<!--\s*docs-test:\s*validate\s+(\S+)\s*-->")
_AUTH = re.compile(r"<!--\s*docs-test:\s*auth=on\s*-->")
VALIDATE_BASE = "http://127.0.0.1:8080/fhir"
_EXPECT = re.compile(r"#\s*->\s*(exit\s+\d+|\d{3})(.*)$")
_CHECK = re.compile(r"^(@?[\w.\-\[\]]+)(=|!~|~)(.*)$")
RUN_LANGUAGES = ("sh", "bash", "console")


@dataclass(frozen=True)
class Check:
    path: str  # dotted JSON path, or "@name" for a header
    op: str  # "=", "~" (contains) or "!~" (does not contain)
    value: str


@dataclass
class Command:
    source: str  # file:line
    text: str
    status: int | None = None  # expected HTTP status of every answer
    exit_code: int = 0
    checks: list[Check] = field(default_factory=list)
    auth: bool = False  # run against the server with authentication on

    def __str__(self) -> str:
        return f"{self.source}: {self.text}"


def doc_files(root: Path) -> list[Path]:
    """The documents, in the order their commands run."""
    return [root / "README.md", *sorted((root / "docs").glob("*.md")), *sorted(root.glob("examples/*/README.md"))]


def _complete(text: str) -> bool:
    """A whole shell command: quotes closed, no trailing backslash, loops and ifs ended (bash -n)."""
    if text.rstrip().endswith("\\"):
        return False
    try:
        shlex.split(text, comments=True)
    except ValueError:
        return False
    return subprocess.run(["bash", "-n", "-c", text], capture_output=True).returncode == 0


def _expectation(line: str) -> tuple[str, str] | None:
    match = _EXPECT.search(line)
    return (match.group(1), match.group(2)) if match else None


def _apply(command: Command, kind: str, rest: str) -> None:
    if kind.startswith("exit"):
        command.exit_code = int(kind.split()[1])
    else:
        command.status = int(kind)
    for token in rest.split():  # a value has no spaces: check a word with `~` instead
        match = _CHECK.match(token)
        if match:
            command.checks.append(Check(match.group(1), match.group(2), match.group(3)))


def _commands(lines: list[tuple[int, str]], console: bool, name: str) -> list[Command]:
    out: list[Command] = []
    pending: tuple[str, str] | None = None  # an expectation on a line of its own
    buf: list[str] = []
    start = 0
    for number, line in lines:
        if not buf:
            stripped = line.strip()
            if console:
                if not stripped.startswith("$ "):
                    continue
                line = stripped[2:]
                stripped = line.strip()
            if not stripped:
                continue
            if stripped.startswith("#"):
                pending = _expectation(stripped) or pending
                continue
            start = number
        buf.append(line)
        text = "\n".join(buf)
        if not _complete(text):
            continue
        command = Command(f"{name}:{start}", text)
        found = _expectation(buf[-1]) or pending
        if found:
            _apply(command, *found)
        out.append(command)
        buf, pending = [], None
    if buf:
        raise ValueError(f"{name}:{start}: the command never ends (unbalanced quotes?)")
    return out


def _validation(lines: list[tuple[int, str]], profile: str, name: str) -> Command:
    body = "\n".join(line for _, line in lines)
    type_ = json.loads(body)["resourceType"]
    text = (
        f"curl -s -X POST '{VALIDATE_BASE}/{type_}/$validate?profile={profile}' "
        f"-H 'Content-Type: application/fhir+json' --data-binary @- <<'DOCTEST_JSON'\n{body}\nDOCTEST_JSON"
    )
    start = lines[0][0] if lines else 0
    return Command(f"{name}:{start}", text, status=200, checks=[Check("issue", "!~", '"severity":"error"')])


def extract(path: Path, root: Path) -> list[Command]:
    """The runnable commands of one markdown file, in order."""
    name = str(path.relative_to(root))
    commands: list[Command] = []
    block: list[tuple[int, str]] | None = None
    language = ""
    skip = auth = False
    profile: str | None = None
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        fence = _FENCE.match(line)
        if block is None:
            if _SKIP.search(line):
                skip = True
            elif _AUTH.search(line):
                auth = True
            elif match := _VALIDATE.search(line):
                profile = match.group(1)
            elif fence:
                block, language = [], fence.group(2)
            elif line.strip():
                skip, auth, profile = False, False, None  # a marker applies to the block right after it
            continue
        if fence and not fence.group(2):
            if language in RUN_LANGUAGES and not skip:
                found = _commands(block, language == "console", name)
                for command in found:
                    command.auth = auth
                commands += found
            elif language == "json" and profile and not skip:
                commands.append(_validation(block, profile, name))
            block, skip, auth, profile = None, False, False, None
            continue
        block.append((number, line))
    return commands
