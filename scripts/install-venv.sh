#!/bin/sh
# Creates the virtualenv and installs the package into it, once, even when `make serve` and
# `make test` start at the same moment: the whole step runs under an exclusive lock (flock on
# "$VENV.lock"), and the second caller finds the work done. Used by the Makefile's `install`.
set -eu
PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}
STAMP="$VENV/.installed"

if [ -z "${FHIR_VENV_LOCKED:-}" ] && command -v flock >/dev/null 2>&1; then
  exec env FHIR_VENV_LOCKED=1 flock "$VENV.lock" sh "$0" "$@"
fi

if [ -f "$STAMP" ] && [ "$STAMP" -nt pyproject.toml ] && [ -x "$VENV/bin/python" ]; then
  exit 0
fi

if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -m pip --version >/dev/null 2>&1; then
  rm -rf "$VENV"
  if ! "$PYTHON" -m venv "$VENV" 2>/dev/null; then
    echo "$PYTHON -m venv failed: installing Debian's python3-venv"
    if [ "$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi
    $SUDO apt-get update -qq && $SUDO apt-get install -y -qq python3-venv
    rm -rf "$VENV"
    "$PYTHON" -m venv "$VENV"
  fi
fi
"$VENV/bin/python" -m pip install -q --upgrade pip
"$VENV/bin/python" -m pip install -q -e ".[test]"
touch "$STAMP"
