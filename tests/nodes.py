"""Throwaway RabbitMQ nodes for tests that stop, restart or isolate a broker (never rabbit@localhost).

Debian's wrapper runs a node as user ``rabbitmq``, so the node's folders are
made for that user. Each node has its own name, AMQP, distribution and
management ports, and its own data, so it can be stopped and started again
with its messages.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pika
import pytest
import requests

START_SECONDS = 90.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass(frozen=True)
class NodeConfig:
    """Everything that makes a node distinct from the machine's own."""

    name: str
    folder: Path
    amqp_port: int
    dist_port: int
    management_port: int

    @classmethod
    def fresh(cls) -> NodeConfig:
        short = uuid.uuid4().hex[:8]
        return cls(
            name=f"provtest-{short}@localhost",
            folder=Path(tempfile.mkdtemp(prefix=f"provtest-{short}-")),
            amqp_port=free_port(),
            dist_port=free_port(),
            management_port=free_port(),
        )

    def environment(self) -> dict[str, str]:
        return {
            **os.environ,
            "RABBITMQ_NODENAME": self.name,
            "RABBITMQ_NODE_PORT": str(self.amqp_port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_CONFIG_FILE": str(self.folder / "rabbitmq.conf"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.folder / "enabled_plugins"),
            "RABBITMQ_MNESIA_BASE": str(self.folder / "mnesia"),
            "RABBITMQ_LOG_BASE": str(self.folder / "log"),
            "RABBITMQ_PID_FILE": str(self.folder / "pid"),
        }


class ThrowawayNode:
    """A RabbitMQ node of the test's own: start, stop, restart, destroy."""

    def __init__(self, config: NodeConfig | None = None, extra_config: str = "") -> None:
        self.config = config or NodeConfig.fresh()
        self.extra_config = extra_config  # more rabbitmq.conf lines (TLS listeners, say)
        self._prepare()

    @property
    def amqp_url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.config.amqp_port}/"

    @property
    def management_url(self) -> str:
        return f"http://guest:guest@127.0.0.1:{self.config.management_port}"

    def parameters(self, vhost: str = "/") -> pika.ConnectionParameters:
        return pika.ConnectionParameters(
            "127.0.0.1", self.config.amqp_port, vhost, pika.PlainCredentials("guest", "guest")
        )

    def _prepare(self) -> None:
        folder = self.config.folder
        (folder / "mnesia").mkdir(parents=True, exist_ok=True)
        (folder / "log").mkdir(exist_ok=True)
        (folder / "rabbitmq.conf").write_text(
            f"listeners.tcp.default = 127.0.0.1:{self.config.amqp_port}\n"
            f"management.tcp.port = {self.config.management_port}\n"
            "management.tcp.ip = 127.0.0.1\n"
            "loopback_users = none\n" + self.extra_config
        )
        (folder / "enabled_plugins").write_text("[rabbitmq_management].\n")
        user = pwd.getpwnam("rabbitmq")
        for path in [folder, *folder.rglob("*")]:
            os.chown(path, user.pw_uid, user.pw_gid)

    def start(self) -> None:
        """Start the node and wait until AMQP and the management API answer."""
        log = open(self.config.folder / "startup.log", "ab")  # noqa: SIM115 - kept open by the node process
        self.process = subprocess.Popen(
            ["rabbitmq-server"], env=self.config.environment(), stdout=log, stderr=subprocess.STDOUT
        )
        self._wait_until(self._answers, "start")

    def stop(self) -> None:
        """Stop the node (its data stays) and wait until its ports are closed."""
        subprocess.run(
            ["rabbitmqctl", "-n", self.config.name, "stop"],
            env=self.config.environment(),
            capture_output=True,
            timeout=60,
        )
        if getattr(self, "process", None) is not None:
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
        self._wait_until(lambda: not self._port_open(self.config.amqp_port), "stop")

    def restart(self) -> None:
        self.stop()
        self.start()

    def destroy(self) -> None:
        """Stop the node if it runs and remove its folders."""
        try:
            if self._port_open(self.config.amqp_port) or (
                getattr(self, "process", None) is not None and self.process.poll() is None
            ):
                self.stop()
        finally:
            shutil.rmtree(self.config.folder, ignore_errors=True)

    def _answers(self) -> bool:
        if not self._port_open(self.config.amqp_port):
            return False
        try:
            return requests.get(
                f"http://127.0.0.1:{self.config.management_port}/api/overview", auth=("guest", "guest"), timeout=2
            ).ok
        except requests.RequestException:
            return False

    @staticmethod
    def _port_open(port: int) -> bool:
        with socket.socket() as probe:
            probe.settimeout(0.5)
            return probe.connect_ex(("127.0.0.1", port)) == 0

    def _wait_until(self, condition, what: str) -> None:  # type: ignore[no-untyped-def]
        deadline = time.monotonic() + START_SECONDS
        while not condition():
            if getattr(self, "process", None) is not None and what == "start" and self.process.poll() is not None:
                raise RuntimeError(f"node {self.config.name} exited: {self._log_tail()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"node {self.config.name} did not {what} in {START_SECONDS}s: {self._log_tail()}")
            time.sleep(0.2)

    def _log_tail(self) -> str:
        path = self.config.folder / "startup.log"
        return path.read_text(errors="replace")[-2000:] if path.exists() else "(no log)"


@pytest.fixture(scope="module")
def throwaway_node() -> Iterator[ThrowawayNode]:
    """A started node of the module's own, destroyed after the module's tests (also on failure)."""
    node = ThrowawayNode()
    try:
        node.start()
        yield node
    finally:
        node.destroy()
