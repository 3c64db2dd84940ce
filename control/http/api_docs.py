"""The API documentation pages under ``/schema``, with Swagger UI served from this server.

Litestar's render plugins load their scripts from a CDN by default; a hospital network
often has no route to one, and a page that runs third-party scripts next to bearer tokens
is a supply-chain risk. Swagger UI's release files come from the ``swagger-ui-bundle-v2``
wheel (the upstream ``swagger-ui-dist`` files, version pinned by the wheel) and are served
at ``/schema/assets``.
"""

from __future__ import annotations

from pathlib import Path

import swagger_ui_bundle
from litestar.openapi.plugins import JsonRenderPlugin, SwaggerRenderPlugin, YamlRenderPlugin
from litestar.router import Router
from litestar.static_files import create_static_files_router

SCHEMA_PATH = "/schema"
ASSETS_PATH = f"{SCHEMA_PATH}/assets"


def swagger_ui_directory() -> Path:
    """The directory holding the vendored Swagger UI release files."""
    return Path(swagger_ui_bundle.swagger_ui_path)


def render_plugins() -> list[SwaggerRenderPlugin | JsonRenderPlugin | YamlRenderPlugin]:
    """Swagger UI at ``/schema`` and ``/schema/swagger``; the document as JSON and YAML."""
    return [
        SwaggerRenderPlugin(
            js_url=f"{ASSETS_PATH}/swagger-ui-bundle.js",
            css_url=f"{ASSETS_PATH}/swagger-ui.css",
            standalone_preset_js_url=f"{ASSETS_PATH}/swagger-ui-standalone-preset.js",
            path=["/", "/swagger"],
            favicon=f'<link rel="icon" type="image/png" href="{ASSETS_PATH}/favicon-32x32.png">',
        ),
        JsonRenderPlugin(),
        YamlRenderPlugin(),
    ]


def assets_router() -> Router:
    """Serves the Swagger UI files at ``/schema/assets`` (public, like the pages)."""
    return create_static_files_router(
        path=ASSETS_PATH,
        directories=[swagger_ui_directory()],
        include_in_schema=False,
        cache_control=None,
        name="api-docs-assets",
    )
