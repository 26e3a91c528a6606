"""The pure domain: the aggregates, their events and the decision policy.

Owns the ``SymbolDesk``, ``SystemRun`` and ``BacktestRun`` aggregates and
their events (``{Domain}.{Entity}.{Action}.v{N}``), the strategies, the
regime filter, the specialists and their Numba tree evaluator, the blend,
the risk checks, the backtest ledger and its figures, and the model
registry (the one module that touches files, and only under the folder it
is given). Nothing here opens a socket, reads the clock or the environment:
time, prices and the other desks' figures come in as arguments.

May import ``glassbox``, numpy, numba, scikit-learn and eventsourcing's
domain model. Never imports ``edge``, ``actors``, ``backbone``,
``projections`` or ``api``.
"""
