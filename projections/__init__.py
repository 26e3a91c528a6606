"""The read side: Kafka consumers that build read models and SHAP forensics in PostgreSQL.

Owns the projection workers and their process (``python -m
projections.worker_main``), the forensics (``shap.TreeExplainer`` on the
exact model version of each decision), the event archive, the decisions and
portfolio read models, migrations and daily partitions, table checksums of
the rebuilt read models, the backtest report, and the embedded PostgreSQL.
Each batch and its offsets are written in ONE PostgreSQL transaction.

May import ``backbone`` (envelopes, topics), ``edge``, ``aggregates`` and
``glassbox``. Never imports ``actors`` or ``api``, and never writes to the
event store.
"""
