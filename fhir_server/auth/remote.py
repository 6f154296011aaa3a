"""Remote JWKS, fetched over HTTP and cached: the external issuer's, and clients' `jwks_uri`.

https://www.rfc-editor.org/rfc/rfc7517#section-5

A cached set is used for `max_age` seconds; a `kid` it does not hold triggers one refetch,
at most every `min_interval` seconds per URL, so a flood of tokens with random kids cannot
turn the server into a request amplifier against the issuer.
"""

from __future__ import annotations

import asyncio
import time

import httpx
import orjson

from fhir_server.auth.jose import JoseError, PublicKey, import_jwks

__all__ = ["JwksCache"]

_MAX_BYTES = 256 * 1024


class JwksCache:
    def __init__(self, max_age: float = 3600.0, min_interval: float = 5.0, timeout: float = 5.0) -> None:
        self.max_age = max_age
        self.min_interval = min_interval
        self.timeout = timeout
        self._sets: dict[str, tuple[float, dict[str, PublicKey]]] = {}
        self._tried: dict[str, float] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self.fetches = 0

    async def key(self, url: str, kid: str | None) -> PublicKey | None:
        """The key `kid` of the JWKS at `url` (the only key when the token names none)."""
        now = time.monotonic()
        cached = self._sets.get(url)
        if cached is None or now - cached[0] > self.max_age or self._lookup(cached[1], kid) is None:
            if cached is None or now - self._tried.get(url, 0.0) >= self.min_interval:
                await self._refresh(url)
                cached = self._sets.get(url)
        return self._lookup(cached[1], kid) if cached else None

    @staticmethod
    def _lookup(keys: dict[str, PublicKey], kid: str | None) -> PublicKey | None:
        if kid is None:
            return next(iter(keys.values())) if len(keys) == 1 else None
        return keys.get(kid)

    async def _refresh(self, url: str) -> None:
        lock = self._locks.setdefault(url, asyncio.Lock())
        async with lock:
            if time.monotonic() - self._tried.get(url, 0.0) < self.min_interval and url in self._sets:
                return
            self._tried[url] = time.monotonic()
            self.fetches += 1
            try:
                async with httpx.AsyncClient(timeout=self.timeout, follow_redirects=False) as client:
                    response = await client.get(url, headers={"Accept": "application/json"})
                if response.status_code != 200 or len(response.content) > _MAX_BYTES:
                    return
                keys = import_jwks(orjson.loads(response.content))
            except (httpx.HTTPError, orjson.JSONDecodeError, JoseError):
                return  # keep what we had: an issuer outage must not drop known keys
            self._sets[url] = (time.monotonic(), keys)
