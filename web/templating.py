"""Jinja2 templates: full pages for navigation, fragments for HTMX requests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.templating import Jinja2Templates

from web.session import CSRF_FIELD, CSRF_HEADER, csrf_token

TEMPLATES_DIR = Path(__file__).parent / "templates"

# Starlette's Jinja2Templates turns autoescaping on for .html templates.
templates = Jinja2Templates(directory=TEMPLATES_DIR)
templates.env.globals.update(
    csrf_token=csrf_token, csrf_field_name=CSRF_FIELD, csrf_header=CSRF_HEADER
)


def is_htmx(request: Request) -> bool:
    return request.headers.get("HX-Request", "").lower() == "true"


def render(
    request: Request,
    template: str,
    context: dict[str, Any],
    *,
    fragment: str | None = None,
    status_code: int = 200,
) -> Response:
    """Render ``template``, or only ``fragment`` when HTMX asked (``HX-Request`` set)."""
    name = fragment if fragment and is_htmx(request) else template
    response = templates.TemplateResponse(request, name, context, status_code=status_code)
    # One URL answers with a page or a fragment: caches must keep them apart.
    response.headers["Vary"] = "HX-Request"
    return response
