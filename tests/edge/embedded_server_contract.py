"""The contract every embedded server launcher keeps, as an abstract test case.

Each launcher's test module subclasses :class:`EmbeddedServerContract` (as
eventsourcing's backends subclass ``AggregateRecorderTestCase``) and says how
to build its server, a client check and its expected messages; the module
keeps its launcher-specific tests beside it. This module's name does not match
``test_*.py`` and its class is not named ``Test*``, so pytest collects the
cases only through the subclasses. Every case runs the real server.
"""

from __future__ import annotations

import os
import re
import signal
import socket
from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, ClassVar

import pytest

from edge import embedded_server
from edge.child_process import free_port
from edge.embedded_server import EmbeddedServer, ServerNotFound, ServerStartError, given_or_embedded
from tests.process_report import interrupted_after

if TYPE_CHECKING:
    from pathlib import Path

    from glassbox import GlassboxError

__all__ = ["EmbeddedServerContract", "write_script"]

EXIT_CODE = 3
EXIT_MESSAGE = "cannot open the data dir"


def write_script(path: Path, body: str) -> Path:
    """An executable ``/bin/sh`` script at ``path`` running ``body``: a stand-in for a broken binary."""
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(0o755)
    return path


class EmbeddedServerContract(ABC):
    """What every :class:`~edge.embedded_server.EmbeddedServer` does: the shared test cases."""

    launcher: ClassVar[type[EmbeddedServer]]
    """The launcher under test; its constructor takes a data dir and optional settings."""
    not_found_error: ClassVar[type[ServerNotFound]]
    start_error: ClassVar[type[ServerStartError]]
    state_error: ClassVar[type[GlassboxError]]
    given_address: ClassVar[str]
    """What a user would configure instead (a URL the tests never connect to)."""

    @pytest.fixture
    def server_dir(self, tmp_path: Path) -> Path:
        """A directory in which the server's data dir and fake binaries may live."""
        return tmp_path

    def construct_server(self, data_dir: Path) -> EmbeddedServer:
        """The launcher with its default settings."""
        return self.launcher(data_dir)  # type: ignore[call-arg]

    @abstractmethod
    def construct_server_without_binary(self, data_dir: Path) -> EmbeddedServer:
        """The launcher pointed at a binary that does not exist, installing nothing."""

    @abstractmethod
    def construct_server_that_exits(self, data_dir: Path, bin_dir: Path, body: str) -> EmbeddedServer:
        """The launcher running, from the new directory ``bin_dir``, a server that is the shell ``body``."""

    @abstractmethod
    def expected_address(self, port: int) -> str:
        """The address a server listening on ``port`` serves."""

    @abstractmethod
    def not_found_message(self, data_dir: Path) -> str:
        """The whole sentence start() raises for :meth:`construct_server_without_binary` of ``data_dir``."""

    @abstractmethod
    def client_answers(self, address: str) -> bool:
        """Whether a client of the test's own gets an answer from ``address`` (quickly, when nobody listens)."""

    def test_with_no_given_address_serves_its_own_then_stops(self, server_dir: Path) -> None:
        server = self.construct_server(server_dir / "server")
        with pytest.raises(self.state_error, match="not running"):
            _ = server.address
        with given_or_embedded("", server) as address:  # an empty string counts as not given
            assert address == server.address == self.expected_address(server.port)
            assert self.client_answers(address)
            assert os.getsid(server.pid) == server.pid  # its own session: a terminal's Ctrl-C is not for it
            with pytest.raises(self.state_error, match="already running"):
                server.start()
        assert not self.client_answers(address)
        assert server.logfile.is_file()
        with pytest.raises(self.state_error):
            _ = server.address  # stopped
        server.stop()  # stopping again is harmless

    def test_missing_binary_raises_one_clear_sentence(self, tmp_path: Path) -> None:
        server = self.construct_server_without_binary(tmp_path / "server")
        with pytest.raises(self.not_found_error) as raised:
            server.start()
        assert isinstance(raised.value, ServerNotFound)
        assert str(raised.value) == self.not_found_message(tmp_path / "server")
        assert not (tmp_path / "server").exists()

    def test_given_address_starts_nothing(self, tmp_path: Path) -> None:
        server = self.construct_server_without_binary(tmp_path / "server")
        with given_or_embedded(self.given_address, server) as address:
            assert address == self.given_address
        assert not (tmp_path / "server").exists()

    def test_a_server_that_exits_is_reported_with_its_log(self, server_dir: Path) -> None:
        server = self.construct_server_that_exits(
            server_dir / "server", server_dir / "bin", f"echo 'FATAL: {EXIT_MESSAGE}' >&2; exit {EXIT_CODE}"
        )
        with pytest.raises(self.start_error, match=f"exited with code {EXIT_CODE}(.|\n)*{EXIT_MESSAGE}") as raised:
            server.start()
        assert isinstance(raised.value, ServerStartError)
        assert re.match(rf"{re.escape(server.server_name)} on port \d+ exited", str(raised.value))
        assert f"log {server.logfile} ends:" in str(raised.value)
        assert not raised.value.retriable  # starting again would fail the same way
        server.stop()  # nothing left running; stopping again is harmless

    def test_a_port_taken_meanwhile_is_given_up_for_another(
        self, server_dir: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as squatter:
            squatter.bind(("127.0.0.1", 0))
            squatter.listen()
            taken = squatter.getsockname()[1]
            # The first "free" port is the squatter's, as if it had taken it after we chose it.
            chosen = iter([taken])
            monkeypatch.setattr(embedded_server, "free_port", lambda: next(chosen, None) or free_port())
            with self.construct_server(server_dir / "server") as server:
                assert server.port != taken
                assert self.client_answers(server.address)
            assert server.port_taken_message in server.logfile.read_text(errors="replace").lower()

    def test_restart_brings_a_killed_server_back_on_its_port(self, server_dir: Path) -> None:
        server = self.construct_server(server_dir / "server")
        server.start()
        try:
            port, pid = server.port, server.pid
            os.kill(pid, signal.SIGKILL)  # it dies during a run
            server.restart()
            assert server.port == port  # its clients expect it there
            assert server.pid != pid
            assert self.client_answers(server.address)
        finally:
            server.stop()

    def test_a_start_interrupted_while_it_waits_leaves_nothing_running(self, server_dir: Path) -> None:
        server = self.construct_server_that_exits(server_dir / "server", server_dir / "bin", "exec sleep 600")
        spawned: list[int] = []
        # The handler notes the pid: the server waits for an answer that never comes.
        with interrupted_after(1.0, on_signal=lambda: spawned.append(server.pid)):
            server.start()
        assert spawned, "start() returned before the interruption"
        with pytest.raises(ProcessLookupError):
            os.kill(spawned[0], 0)  # stopped and reaped by start() itself
        with pytest.raises(self.state_error):
            _ = server.pid
