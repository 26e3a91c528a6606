"""The dashboard: static files the API serves under ``/``, no build step.

``GET /`` is the single page (``api/ui/index.html``); its script, styles and
nothing else are under ``/ui/``. Both are public (:func:`api.auth.required_scope`):
they hold no data. Everything the page shows it reads with the token the user
pastes into its sign-in form, through the same API routes and the live stream
any client uses, so the dashboard has no access a token does not grant.

The charts are hand-written SVG (``api/ui/charts.js``): bars and one
waterfall need ~150 lines, where a charting library would be a vendored
bundle of hundreds of kB to pin, licence and keep current.
"""

from __future__ import annotations

from pathlib import Path

from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

__all__ = ["UI_DIR", "UI_PREFIX", "dashboard_routes"]

UI_DIR = Path(__file__).with_name("ui")
UI_PREFIX = "/ui"

_HEADERS = {
    # The page runs only its own script and talks only to its own origin (the API and its stream).
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
                               "connect-src 'self' ws: wss:; frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


async def index(request: Request) -> Response:
    """GET /: the dashboard's page."""
    return FileResponse(UI_DIR / "index.html", headers=_HEADERS)


def dashboard_routes() -> list[Route | Mount]:
    """The page and its static files."""
    return [
        Route("/", index, methods=["GET"]),
        Mount(UI_PREFIX, app=StaticFiles(directory=UI_DIR), name="ui"),
    ]
