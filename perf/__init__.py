"""Benchmarks: each scenario measures one promise beside its floor, in the same run, and writes JSON.

Owns the scenarios (``python -m perf.<scenario> --json PATH``: hotpath,
decoupling, forensics, outage, replay, backtest, api), the JSON result they
share (``perf.report``), the ``backtesting`` package reference for sma-cross,
and the services the backbone benchmarks start.

A user of the whole system, like the tests: it may import every room,
``actors.system`` included. Nothing imports it but the tests. Nothing here
asserts a timing; it measures and reports (see ``docs/design.md``, Benchmarks).
"""
