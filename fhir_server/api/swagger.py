"""The /docs page: Swagger UI served from this server, with no CDN.

https://hl7.org/fhir/R4/http.html (the API it describes; the UI itself is swagger-ui)

FastAPI's default page loads Swagger UI from a CDN, so it is blank without internet. The assets
come from the `swagger-ui-bundle-v2` package (Swagger UI 5, which reads OpenAPI 3.1) and are
served under /docs/assets. With 146 resource types the operations start folded, with a filter box.
"""

from __future__ import annotations

from fastapi import FastAPI
from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.staticfiles import StaticFiles
from swagger_ui_bundle import swagger_ui_path  # type: ignore[import-untyped]

__all__ = ["ASSETS", "install_swagger_ui"]

ASSETS = "/docs/assets"

_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{title}</title>
<link rel="stylesheet" href="{assets}/swagger-ui.css">
<link rel="icon" type="image/png" href="{assets}/favicon-32x32.png">
</head>
<body>
<div id="swagger-ui"></div>
<script src="{assets}/swagger-ui-bundle.js"></script>
<script>
window.ui = SwaggerUIBundle({{url: "{openapi}", dom_id: "#swagger-ui", deepLinking: true,
  docExpansion: "none", filter: true,
  presets: [SwaggerUIBundle.presets.apis], layout: "BaseLayout"}});
</script>
</body>
</html>
"""


def install_swagger_ui(app: FastAPI, openapi_url: str = "/openapi.json") -> None:
    """Mount the assets and the page; the app must be created with `docs_url=None`."""
    app.mount(ASSETS, StaticFiles(directory=str(swagger_ui_path)), name="swagger-ui-assets")
    page = _PAGE.format(title=f"{app.title} - API", assets=ASSETS, openapi=openapi_url)

    async def docs(request: Request) -> HTMLResponse:
        return HTMLResponse(page)

    app.add_route("/docs", docs, methods=["GET"], include_in_schema=False)
