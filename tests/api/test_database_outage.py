"""A PostgreSQL outage under a running API: 503 + Retry-After while it is down, served again after, no restart.

The API is served by real uvicorn on a real socket, so the client's timeout
is a real one: a request that hung for psycopg_pool's default 30 s wait would
fail the test by timing out at 15 s.
"""

from __future__ import annotations

import threading
import uuid
from contextlib import contextmanager
from typing import Iterator

import httpx2 as httpx
import uvicorn

from api.app import ApiConfig, create_app
from edge.child_process import free_port
from projections.migrate import apply_migrations
from projections.postgres_server import EmbeddedPostgres
from tests.api.test_app import AUTH, TOKENS
from tests.conftest import reachable_tmp_dir

CLIENT_TIMEOUT_S = 15.0
DATABASE_ROUTES = ("/api/v1/decisions", "/api/v1/portfolio", f"/api/v1/forensics/{uuid.UUID(int=1)}")


@contextmanager
def served(app, port: int | None = None) -> Iterator[str]:
    """``app`` served by uvicorn on ``port`` (default: a free one) of loopback, in a thread; yields its base URL."""
    port = port or free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on",
                                           timeout_graceful_shutdown=10))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    while not server.started:
        if not thread.is_alive():
            raise RuntimeError("uvicorn exited before it served (its log above says why)")
        thread.join(0.05)
    try:
        yield base
    finally:
        server.should_exit = True
        thread.join()


def test_503_with_retry_after_while_postgresql_is_down_then_served_again():
    schema = f"outage_{uuid.uuid4().hex[:12]}"
    with reachable_tmp_dir() as root:
        postgres = EmbeddedPostgres(root / "postgres", port=free_port())
        with postgres:
            apply_migrations(postgres.url, schema)
            app = create_app(ApiConfig(postgres.url, TOKENS, schema=schema))  # the default 5 s pool wait
            with served(app) as base, httpx.Client(base_url=base, headers=AUTH, timeout=CLIENT_TIMEOUT_S) as client:
                for path in DATABASE_ROUTES:  # every pooled connection gets used before the outage
                    assert client.get(path).status_code in (200, 404), path

                postgres.stop()
                for path in DATABASE_ROUTES:  # the first finds the pool's dead connections, the others an empty pool
                    down = client.get(path)
                    assert down.status_code == 503, (path, down.text)
                    assert down.json()["error"] == "database_unavailable"
                    assert down.headers["Retry-After"] == "5"
                assert client.get("/health").status_code == 200
                ready = client.get("/ready")
                assert ready.status_code == 503 and ready.json()["checks"]["postgresql"] is False

                postgres.start()  # same data dir, same port: the API's pool reconnects by itself
                answers = [client.get("/api/v1/decisions")]
                while answers[-1].status_code == 503 and len(answers) < 10:  # an attempt may still be backing off
                    assert answers[-1].headers["Retry-After"] == "5"
                    answers.append(client.get("/api/v1/decisions"))
                assert answers[-1].json() == {"decisions": [], "next_cursor": None}, [a.status_code for a in answers]
                assert client.get("/api/v1/portfolio").status_code == 200
                assert client.get(DATABASE_ROUTES[2]).status_code == 404
                assert client.get("/ready").json()["checks"]["postgresql"] is True
