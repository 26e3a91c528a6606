"""The composition root: the ``glassbox`` command, the supervisor and everything that wires the whole system.

Owns the CLI (``up``, ``status``, ``replay``, ``backtest``, ``train``), the
supervisor and its component processes, the service bring-up (embedded or by
URL), training, and the command parts of replay and rebuild.

May import every other room. Nothing imports it: not ``actors/``, not
``backbone/``, ``projections/``, ``api/`` or ``edge/`` (tests and ``perf/``
may, as users of the whole system do). A new command or a new supervised
process is wired here; its working parts live in the room they belong to.
"""
