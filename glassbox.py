"""Project-wide pieces every Glassbox package needs: the root error type.

Settings live here too once more than one package reads them; each package
receives them as arguments, never from ``os.environ`` deep inside.
"""

from __future__ import annotations

__all__ = ["GlassboxError"]


class GlassboxError(Exception):
    """Root of every error Glassbox raises on purpose.

    ``retriable`` says whether trying the same call again may succeed
    (like aiokafka's ``KafkaError.retriable``).
    """

    retriable: bool = False
