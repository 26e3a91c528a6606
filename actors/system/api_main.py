"""The API process's composition root: ``uvicorn --factory actors.system.api_main:app_from_env``.

The app itself (:mod:`api.app`) holds no trading logic; this wires in the kill
switch (``actors.trading_control.TradingControl``) on the system's Redis, so
``POST /api/v1/trading/halt`` records ``Risk.Trading.Halted.v1`` in the
system's event store. Without ``REDIS_URL`` the trading routes answer 503.
"""

from __future__ import annotations

from starlette.applications import Starlette

from actors.runtime import HotPathSettings
from actors.trading_control import TradingControl
from api.app import config_from_settings, create_app
from edge.system_keys import SystemKeys
from glassbox import Settings

__all__ = ["app_from_env"]


def app_from_env() -> Starlette:
    """The API configured from the environment (see :func:`api.app.config_from_settings`).

    Raises:
        SettingsError: a required setting is missing or malformed.
    """
    settings = Settings.from_env()
    switchboard = TradingControl(settings.redis_url, SystemKeys(settings.namespace)) if settings.redis_url else None
    return create_app(config_from_settings(settings, switchboard, capital=HotPathSettings.capital))
