"""Operation inputs: from the query string (GET) or a Parameters body (POST).

https://hl7.org/fhir/R4/operations.html#request
"""

from __future__ import annotations

from typing import Any

from fhir_server.errors import invalid

__all__ = ["OperationInput"]


class OperationInput:
    """Named inputs of one $operation call: primitive values and resources."""

    def __init__(self, query: list[tuple[str, str]], body: Any | None) -> None:
        self.values: dict[str, Any] = {k: v for k, v in query if not k.startswith("_")}
        self.resources: dict[str, dict[str, Any]] = {}
        if body is None:
            return
        if not isinstance(body, dict):
            raise invalid("An operation body must be a Parameters resource or a resource")
        if body.get("resourceType") != "Parameters":
            self.resources["resource"] = body
            return
        for i, param in enumerate(body.get("parameter") or []):
            if not isinstance(param, dict) or not isinstance(param.get("name"), str):
                raise invalid("Each parameter needs a name", expression=f"Parameters.parameter[{i}]")
            name = param["name"]
            if isinstance(param.get("resource"), dict):
                self.resources[name] = param["resource"]
                continue
            value = next((v for k, v in param.items() if k.startswith("value")), None)
            if value is not None:
                self.values[name] = value

    def text(self, name: str) -> str | None:
        value = self.values.get(name)
        if value is None:
            return None
        if isinstance(value, dict):  # valueCoding and friends: their code
            return str(value.get("code")) if value.get("code") is not None else None
        return str(value)

    def coding(self, name: str) -> dict[str, Any] | None:
        value = self.values.get(name)
        return value if isinstance(value, dict) else None

    def integer(self, name: str) -> int | None:
        value = self.values.get(name)
        if value is None:
            return None
        try:
            return int(str(value))
        except ValueError:
            raise invalid(f"Parameter '{name}' must be an integer, not '{value}'") from None
