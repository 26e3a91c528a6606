"""Installing a missing server binary from Debian's packages, when this process may.

The Redis and PostgreSQL launchers use Debian's ``redis-server`` and
``postgresql-<major>`` packages. When the binary is missing, a root process on
a machine with apt-get installs the package itself, so a fresh machine comes up
with no manual step; anyone else is told what to install.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from typing import Callable, TypeVar

__all__ = ["can_install_packages", "install_package", "locate_or_install"]

_Found = TypeVar("_Found")


def can_install_packages() -> bool:
    """Whether this process may run ``apt-get install``: it is root and apt-get exists."""
    is_root = hasattr(os, "geteuid") and os.geteuid() == 0
    return is_root and shutil.which("apt-get") is not None


def install_package(package: str, announcement: str) -> None:
    """``apt-get install -y package``, non-interactively, after printing ``announcement``.

    ``announcement`` goes to stderr first, since installing takes a while; it
    says what is missing and what is being installed. A failed install is
    retried once after ``apt-get update`` (a fresh machine often has no package
    lists yet). Raises nothing: the caller looks for the binary again.
    """
    print(announcement, file=sys.stderr, flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", package]
    if subprocess.run(install, env=env, capture_output=True, check=False).returncode:
        subprocess.run(["apt-get", "update"], env=env, capture_output=True, check=False)
        subprocess.run(install, env=env, capture_output=True, check=False)


def locate_or_install(
    locate: Callable[[], _Found | None], package: str, announcement: str, *, install_if_missing: bool
) -> _Found | None:
    """``locate()``; when it finds nothing, install ``package`` if allowed and ``locate()`` again.

    Installing happens only when ``install_if_missing`` is true and
    :func:`can_install_packages`. Returns ``None`` when nothing is found
    after all: the caller raises its own "not found" error.
    """
    found = locate()
    if found is None and install_if_missing and can_install_packages():
        install_package(package, announcement)
        found = locate()
    return found
