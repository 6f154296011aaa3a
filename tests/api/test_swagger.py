"""/docs works offline: the page and its assets come from this server only."""

from __future__ import annotations

import re

import httpx


async def test_docs_page_references_no_external_host(client: httpx.AsyncClient) -> None:
    r = await client.get("http://testserver/docs")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    hosts = re.findall(r"https?://[^\s\"'<>]+", r.text)
    assert hosts == [], hosts
    for asset in re.findall(r'(?:src|href)="([^"]+)"', r.text):
        got = await client.get("http://testserver" + asset)
        assert got.status_code == 200 and len(got.content) > 500, asset
    assert "/openapi.json" in r.text


async def test_docs_assets_serve_swagger_ui_5(client: httpx.AsyncClient) -> None:
    r = await client.get("http://testserver/docs/assets/swagger-ui-bundle.js")
    assert r.status_code == 200 and "javascript" in r.headers["content-type"]
    assert (await client.get("http://testserver/redoc")).status_code == 404
