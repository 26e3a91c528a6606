"""Logs are JSON lines with the component, the extra fields, and no password."""

from __future__ import annotations

import io
import json
import logging
import logging.config

import pytest

from edge.logs import configure_logging, uvicorn_log_config


@pytest.fixture(autouse=True)
def _restore_root_logger():
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def test_one_json_object_a_line_with_extra_fields_and_no_password() -> None:
    out = io.StringIO()
    configure_logging("shard-0", "DEBUG", out)
    log = logging.getLogger("actors.shard")
    log.debug("decision committed", extra={"correlation_id": "1700000000000-3", "symbol": "GOOG"})
    log.warning("cannot reach %s", "redis://admin:hunter2@db.example:6379/0")
    first, second = (json.loads(line) for line in out.getvalue().splitlines())
    assert first["component"] == "shard-0" and first["level"] == "DEBUG" and first["logger"] == "actors.shard"
    assert first["message"] == "decision committed" and first["correlation_id"] == "1700000000000-3"
    assert second["message"] == "cannot reach redis://admin:***@db.example:6379/0"
    assert "hunter2" not in out.getvalue()


def test_unknown_level_is_refused() -> None:
    with pytest.raises(ValueError, match="choose one of"):
        configure_logging("x", "LOUD")


def test_uvicorn_config_is_accepted_by_dict_config() -> None:
    logging.config.dictConfig(uvicorn_log_config("api", "WARNING"))
    assert logging.getLogger("uvicorn.error").level == logging.WARNING
