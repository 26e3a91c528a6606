"""The HTTP API: a Starlette app that serves the read models, and holds no business logic.

Owns the app (built by ``actors.system.api_main:app_from_env`` for uvicorn), its routes
(forensics, decisions, portfolio, alerts, backtests, trading, health, ready, metrics), the
live stream (``GET /api/v1/stream``), the dashboard (static files under ``/``), the strict
reading of query strings and the one error body shape, the read-model
queries, bearer tokens with scopes, the per-client rate limit and the
Prometheus metrics gathered at scrape time.

May import ``projections``, ``backbone``, ``edge`` and ``glassbox``. Never
imports ``actors`` or ``aggregates``: it reads what the projections wrote, and
halts or resumes trading through the switchboard it is handed (:mod:`api.trading`).
"""
