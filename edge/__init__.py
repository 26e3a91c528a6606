"""The edge: where Glassbox touches Redis, files and child processes, and decides nothing.

Owns the Redis connection and the embedded ``redis-server`` launcher, ticks
(the value object, validation, the wire form), the tick streams, their
consumer-group reading and dead letters (``edge.tick_stream.TickKeys`` names
every tick key), the feeds and pacing, history and user files (CSV, Parquet),
the Redis Streams persistence module for eventsourcing (``edge.eventstore``),
the orjson transcoder, JSON logs, and what every embedded server shares.

May import only ``glassbox`` and third-party libraries. Never imports
``aggregates``, ``actors``, ``backbone``, ``projections``, ``api``: every
other room builds on it, so it depends on none of them.
"""
