"""locate_or_install looks first and installs only when allowed."""

from __future__ import annotations

from typing import TYPE_CHECKING

from edge.debian_packages import locate_or_install

if TYPE_CHECKING:
    from pathlib import Path

    import pytest


def test_a_binary_found_at_once_installs_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    found = locate_or_install(lambda: tmp_path, "no-such-package", "installing!", install_if_missing=True)
    assert found == tmp_path
    assert capsys.readouterr().err == ""


def test_a_missing_binary_is_not_installed_unless_allowed(capsys: pytest.CaptureFixture[str]) -> None:
    calls = []

    def locate() -> None:
        calls.append(1)

    assert locate_or_install(locate, "no-such-package", "installing!", install_if_missing=False) is None
    assert calls == [1]  # looked once, installed nothing
    assert capsys.readouterr().err == ""
