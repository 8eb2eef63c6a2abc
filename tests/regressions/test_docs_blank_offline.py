"""`/docs` loaded Swagger UI from a CDN, so it was a blank page offline. Its assets are
now bundled (bot/web/static/swagger-ui) and served by the app itself."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient

from bot.app import create_app
from bot.core.settings import Settings
from bot.service import Service


def test_docs_page_needs_nothing_but_the_server(tmp_path: object, settings: Settings) -> None:
    with TestClient(create_app(service=Service.create(settings))) as client:
        page = client.get("/docs")
        assert page.status_code == 200
        assets = re.findall(r'(?:src|href)="([^"]+)"', page.text)
        assert assets, page.text
        assert not re.search(r"https?://", page.text.replace("window.location.origin", "")), "external URL in /docs"
        types = {}
        for url in assets:
            response = client.get(url)
            assert response.status_code == 200, url
            types[url.rsplit(".", 1)[-1]] = response.headers["content-type"]
        assert types["js"].startswith("text/javascript") and types["css"].startswith("text/css")
        assert "SwaggerUIBundle" in client.get(next(u for u in assets if u.endswith(".js"))).text
        assert client.get("/openapi.json").status_code == 200
        assert client.get("/redoc").status_code == 404  # not served: it would need a CDN too
