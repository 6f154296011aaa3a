"""JSON Merge Patch (RFC 7386) applied to a resource.

https://hl7.org/fhir/R4/http.html#patch and https://www.rfc-editor.org/rfc/rfc7386

R4 names JSON Patch and FHIRPath Patch; clients such as fhirpy send a partial resource instead
(Aidbox accepts it as a merge patch), so the server accepts that too. The function is pure: it
returns a new dict. Merging can never change the resource's type or id: the interaction checks
the result exactly as it checks the other two formats.
"""

from __future__ import annotations

import copy
from typing import Any

from fhir_server.errors import invalid

__all__ = ["apply_merge_patch"]


def _merge(target: Any, patch: Any) -> Any:
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = _merge(out.get(key), value)
    return out


def apply_merge_patch(resource: dict[str, Any], patch: Any) -> dict[str, Any]:
    """Merge `patch` into a copy of `resource`: null removes a member, objects merge, the rest replaces."""
    if not isinstance(patch, dict):
        raise invalid("A JSON Merge Patch (application/merge-patch+json) must be a JSON object")
    merged: dict[str, Any] = _merge(copy.deepcopy(resource), patch)
    return merged
