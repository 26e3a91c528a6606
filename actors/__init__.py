"""The trading path: one pykka actor per symbol, the shard cycle, and what a shard needs to decide.

Owns the Numba feature kernels, the desk actor, the shard (one XREADGROUP,
one Lua append per cycle), the shard process (``python -m actors.shard_main``),
the portfolio book each shard's risk checks read, the desks' eventsourcing
application, sharding by CRC-32, desk replay, backtests and the hot path's
stats. ``actors.system`` (the composition root) is a room of its own.

May import ``edge``, ``aggregates`` and ``glassbox``. Never imports
``backbone``, ``projections`` or ``api``: a decision never waits on Kafka or
PostgreSQL. Nothing outside ``actors.system``, ``perf`` and the tests imports it.
"""
