"""Throwaway RabbitMQ nodes for tests that stop, restart or isolate a broker (never rabbit@localhost).

Debian's wrapper runs a node as user ``rabbitmq``, so the node's folders are
made for that user. Each node has its own name, AMQP, distribution and
management ports, and its own data, so it can be stopped and started again
with its messages.

A node comes from an installation: the machine's RabbitMQ (3.10), or a Debian
root filesystem with RabbitMQ 4.0 (Debian 13) or 4.3 (Debian unstable), built by
``scripts/rabbitmq4.sh build 4.0|4.3`` and run with chroot and an epmd of its own.
``PROVISION_TEST_RABBITMQ`` chooses the default and ``PROVISION_TEST_DENY_DEPRECATED=1``
denies every deprecated feature.

Also a command for scripts: ``python tests/nodes.py start NAME [--installation 4.0|4.3]
[--deny-deprecated]`` prints the node's ports as shell variables; ``stop NAME``.
"""

from __future__ import annotations

import argparse
import json
import os
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
ROOT_4_0 = Path(os.environ.get("PROVISION_RABBITMQ4_ROOT", "/var/cache/provisioner/rabbitmq-4.0-root"))
ROOT_4_3 = Path(os.environ.get("PROVISION_RABBITMQ43_ROOT", "/var/cache/provisioner/rabbitmq-4.3-root"))
# Every feature RabbitMQ 4.0 deprecates, denied as later versions default to (rabbitmqctl list_deprecated_features).
DEPRECATED_FEATURES = (
    "amqp_address_v1",
    "classic_queue_mirroring",
    "global_qos",
    "management_metrics_collection",
    "queue_master_locator",
    "ram_node_type",
    "transient_nonexcl_queues",
)
# What later versions deprecate as well (4.3: rabbitmqctl list_deprecated_features); 4.0 knows none of them.
LATER_DEPRECATED_FEATURES = {"4.3": ("amqp_filter_set_bug",)}


def deprecated_features(installation: str) -> tuple[str, ...]:
    """Every deprecated feature an installation's RabbitMQ knows."""
    return DEPRECATED_FEATURES + LATER_DEPRECATED_FEATURES.get(installation, ())


def deny_deprecated_config(installation: str) -> str:
    """rabbitmq.conf lines denying every deprecated feature of the installation."""
    return "".join(f"deprecated_features.permit.{name} = false\n" for name in deprecated_features(installation))


@dataclass(frozen=True)
class Installation:
    """Where a node's RabbitMQ comes from: the machine's own (root None) or a root filesystem run with chroot."""

    name: str
    root: Path | None = None

    def folder_base(self) -> Path:
        """Where node folders go on this machine (inside the root, so the node sees them)."""
        base = Path(tempfile.gettempdir()) if self.root is None else self.root / "tmp"
        if self.root is not None and not (self.root / "usr/sbin/rabbitmq-server").exists():
            build = f"bash scripts/rabbitmq4.sh build {self.name}"
            raise RuntimeError(f"no RabbitMQ {self.name} at {self.root}: run `{build}`")
        return base

    def inside(self, path: Path) -> str:
        """A machine path as the node sees it."""
        return str(path) if self.root is None else "/" + str(path.relative_to(self.root))

    def command(self, argv: list[str], environment: dict[str, str]) -> tuple[list[str], dict[str, str]]:
        """The command and environment that run ``argv`` of this installation."""
        if self.root is None:
            return argv, {**os.environ, **environment}
        self._mount_proc()
        clean = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8", "HOME": "/var/lib/rabbitmq"}
        return ["chroot", str(self.root), *argv], {**clean, **environment}

    def user_ids(self) -> tuple[int, int]:
        """The uid and gid of user rabbitmq as the installation knows it."""
        passwd = Path(self.root or "/") / "etc/passwd"
        for line in passwd.read_text().splitlines():
            fields = line.split(":")
            if fields[0] == "rabbitmq":
                return int(fields[2]), int(fields[3])
        raise RuntimeError(f"no user rabbitmq in {passwd}")

    def _mount_proc(self) -> None:
        # Mounted once and left mounted: other nodes of the same root may be running.
        assert self.root is not None
        if not (self.root / "proc/self").exists():
            subprocess.run(["mount", "-t", "proc", "proc", str(self.root / "proc")], check=True)


INSTALLATIONS = {
    "3.10": Installation("3.10"),
    "4.0": Installation("4.0", ROOT_4_0),
    "4.3": Installation("4.3", ROOT_4_3),
}


def chosen_installation() -> Installation:
    name = os.environ.get("PROVISION_TEST_RABBITMQ", "3.10")
    if name not in INSTALLATIONS:
        raise RuntimeError(f"PROVISION_TEST_RABBITMQ={name!r}: choose one of {', '.join(INSTALLATIONS)}")
    return INSTALLATIONS[name]


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
    installation: Installation = INSTALLATIONS["3.10"]
    epmd_port: int | None = None  # None: the machine's epmd (4369)

    @classmethod
    def fresh(
        cls, installation: Installation | None = None, short: str | None = None, epmd_port: int | None = None
    ) -> NodeConfig:
        """A new node's names and ports; ``epmd_port`` shares a chroot's epmd (the nodes of one cluster)."""
        installation = installation or chosen_installation()
        short = short or uuid.uuid4().hex[:8]
        return cls(
            name=f"provtest-{short}@localhost",
            folder=Path(tempfile.mkdtemp(prefix=f"provtest-{short}-", dir=installation.folder_base())),
            amqp_port=free_port(),
            dist_port=free_port(),
            management_port=free_port(),
            installation=installation,
            # A chroot's node runs an epmd of its own, so it never meets the machine's Erlang.
            epmd_port=None if installation.root is None else (epmd_port or free_port()),
        )

    def environment(self) -> dict[str, str]:
        """This process's environment with the node's variables (for the machine's installation)."""
        return {**os.environ, **self.variables()}

    def variables(self) -> dict[str, str]:
        """The variables that make the node distinct, with paths as the node sees them."""
        inside = self.installation.inside
        return {
            "RABBITMQ_NODENAME": self.name,
            "RABBITMQ_NODE_PORT": str(self.amqp_port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_CONFIG_FILE": inside(self.folder / "rabbitmq.conf"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": inside(self.folder / "enabled_plugins"),
            "RABBITMQ_MNESIA_BASE": inside(self.folder / "mnesia"),
            "RABBITMQ_LOG_BASE": inside(self.folder / "log"),
            "RABBITMQ_PID_FILE": inside(self.folder / "pid"),
            **({} if self.epmd_port is None else {"ERL_EPMD_PORT": str(self.epmd_port)}),
        }

    def command(self, *argv: str) -> tuple[list[str], dict[str, str]]:
        """``argv`` run against this node, from its installation."""
        return self.installation.command(list(argv), self.variables())

    def to_json(self) -> str:
        fields = {**self.__dict__, "folder": str(self.folder), "installation": self.installation.name}
        return json.dumps(fields)

    @classmethod
    def from_json(cls, text: str) -> NodeConfig:
        fields = json.loads(text)
        return cls(
            **{**fields, "folder": Path(fields["folder"]), "installation": INSTALLATIONS[fields["installation"]]}
        )


class ThrowawayNode:
    """A RabbitMQ node of the test's own: start, stop, restart, destroy."""

    def __init__(
        self, config: NodeConfig | None = None, extra_config: str = "", deny_deprecated: bool | None = None
    ) -> None:
        self.config = config or NodeConfig.fresh()
        self.extra_config = extra_config  # more rabbitmq.conf lines (TLS listeners, say)
        # Throwaway nodes (isolation, plugins, restarts, clusters) run the installation's defaults unless asked:
        # with deprecated features denied, a 4.0.5 node sometimes refused to boot again after a stop
        # (failed_to_deny_deprecated_features [transient_nonexcl_queues]). The broker under test still denies.
        deny_deprecated = bool(deny_deprecated)
        self.deny_deprecated = deny_deprecated and self.config.installation.name != "3.10"
        self._prepare()

    @classmethod
    def existing(cls, config: NodeConfig) -> ThrowawayNode:
        """A node whose folder is already prepared (started by another process, say)."""
        node = cls.__new__(cls)
        node.config, node.extra_config, node.deny_deprecated = config, "", False
        return node

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
        # Paths of the node's folder in extra_config (certificates, say) become the paths the node sees.
        extra = self.extra_config.replace(str(folder), self.config.installation.inside(folder))
        (folder / "rabbitmq.conf").write_text(
            f"listeners.tcp.default = 127.0.0.1:{self.config.amqp_port}\n"
            f"management.tcp.port = {self.config.management_port}\n"
            "management.tcp.ip = 127.0.0.1\n"
            "loopback_users = none\n"
            + extra
            + (deny_deprecated_config(self.config.installation.name) if self.deny_deprecated else "")
        )
        (folder / "enabled_plugins").write_text("[rabbitmq_management].\n")
        (folder / "node.json").write_text(self.config.to_json())
        uid, gid = self.config.installation.user_ids()
        for path in [folder, *folder.rglob("*")]:
            os.chown(path, uid, gid)

    def start(self) -> None:
        """Start the node and wait until AMQP and the management API answer."""
        log = open(self.config.folder / "startup.log", "ab")  # noqa: SIM115 - kept open by the node process
        command, environment = self.config.command("rabbitmq-server")
        # A session of its own: a node started by `tests/nodes.py start` outlives that command.
        self.process = subprocess.Popen(
            command, env=environment, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        self._wait_until(self._answers, "start")

    def stop(self) -> None:
        """Stop the node (its data stays) and wait until its ports are closed."""
        command, environment = self.config.command("rabbitmqctl", "-n", self.config.name, "stop")
        subprocess.run(command, env=environment, capture_output=True, timeout=60)
        if getattr(self, "process", None) is not None:
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
        self._wait_until(lambda: not self._port_open(self.config.amqp_port), "stop")

    def restart(self) -> None:
        self.stop()
        self.start()

    def ctl(self, *argv: str, tool: str = "rabbitmqctl", timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """``rabbitmqctl -n NODE argv`` (or another CLI tool) of the node's installation; raises when it fails."""
        command, environment = self.config.command(tool, "-n", self.config.name, *argv)
        done = subprocess.run(command, env=environment, capture_output=True, text=True, timeout=timeout)
        if done.returncode != 0:
            raise RuntimeError(f"{tool} {' '.join(argv)} on {self.config.name}: {done.stdout}{done.stderr}")
        return done

    def kill(self) -> None:
        """kill -9 the node's Erlang VM (no goodbye to clients or peers), and wait until its port is closed."""
        pid = int((self.config.folder / "pid").read_text().strip())
        os.kill(pid, 9)
        self._wait_until(lambda: not self._port_open(self.config.amqp_port), "die")

    def wipe(self) -> None:
        """Remove the stopped node's data, as if its machine were replaced: it starts as a new, lone node."""
        mnesia = self.config.folder / "mnesia"
        shutil.rmtree(mnesia)
        mnesia.mkdir()
        os.chown(mnesia, *self.config.installation.user_ids())

    def destroy(self, keep_epmd: bool = False) -> None:
        """Stop the node if it runs and remove its folders."""
        try:
            if self._port_open(self.config.amqp_port) or (
                getattr(self, "process", None) is not None and self.process.poll() is None
            ):
                self.stop()
        finally:
            if self.config.epmd_port is not None and not keep_epmd:  # the node's own epmd outlives the node
                command, environment = self.config.command("epmd", "-kill")
                subprocess.run(command, env=environment, capture_output=True, timeout=30)
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
def throwaway_node(broker: None) -> Iterator[ThrowawayNode]:
    """A started node of the module's own, destroyed after the module's tests (also on failure)."""
    node = ThrowawayNode()
    try:
        node.start()
        yield node
    finally:
        node.destroy()


class ThrowawayCluster:
    """Three (or more) throwaway nodes joined into one cluster: same cookie, same epmd, ``join_cluster``."""

    def __init__(self, size: int = 3, installation: Installation | None = None) -> None:
        installation = installation or chosen_installation()
        first = NodeConfig.fresh(installation)
        configs = [first] + [NodeConfig.fresh(installation, epmd_port=first.epmd_port) for _ in range(size - 1)]
        self.nodes = [ThrowawayNode(config, deny_deprecated=False) for config in configs]  # see ThrowawayNode

    @property
    def names(self) -> list[str]:
        return [node.config.name for node in self.nodes]

    def start(self) -> None:
        """Start every node, join the others to the first, and wait until the first sees them all running."""
        for node in self.nodes:
            node.start()
        for node in self.nodes[1:]:
            self.join(node)
        self.wait_running(self.names)

    def join(self, node: ThrowawayNode) -> None:
        """Make ``node`` (running, standalone or reset) a member of the first node's cluster."""
        node.ctl("stop_app")
        node.ctl("reset")
        node.ctl("join_cluster", self.nodes[0].config.name)
        node.ctl("start_app")
        node._wait_until(node._answers, "start")

    def running(self, through: ThrowawayNode | None = None) -> list[str]:
        """The running nodes as ``cluster_status`` of ``through`` (the first node by default) tells them."""
        done = (through or self.nodes[0]).ctl("cluster_status", "--formatter", "json")
        status = json.loads(done.stdout)
        return sorted(status.get("running_nodes", []))

    def wait_running(self, names: list[str], through: ThrowawayNode | None = None) -> None:
        """Wait until exactly ``names`` run in the cluster, as ``through`` sees it."""
        node = through or self.nodes[0]
        node._wait_until(lambda: self.running(node) == sorted(names), "see the cluster")

    def destroy(self) -> None:
        """Stop and remove every node, the shared epmd (a chroot's) last."""
        for index, node in enumerate(reversed(self.nodes)):
            node.destroy(keep_epmd=index < len(self.nodes) - 1)


@pytest.fixture(scope="module")
def throwaway_cluster(broker: None) -> Iterator[ThrowawayCluster]:
    """A started three-node cluster of the module's own, destroyed after the module's tests (also on failure)."""
    cluster = ThrowawayCluster()
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.destroy()


def _named_folders(name: str) -> list[Path]:
    bases = {Path(tempfile.gettempdir())} | {i.root / "tmp" for i in INSTALLATIONS.values() if i.root is not None}
    return sorted(
        folder for base in bases for folder in base.glob(f"provtest-{name}-*") if (folder / "node.json").exists()
    )


def main(argv: list[str] | None = None) -> int:
    """``start NAME`` prints the node's ports as shell variables; ``stop NAME`` stops it and removes its data."""
    parser = argparse.ArgumentParser(prog="tests/nodes.py", description=main.__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    start = commands.add_parser("start")
    start.add_argument("name")
    start.add_argument("--installation", choices=sorted(INSTALLATIONS), default=chosen_installation().name)
    start.add_argument("--deny-deprecated", action="store_true")
    commands.add_parser("stop").add_argument("name")
    args = parser.parse_args(argv)
    if args.command == "start":
        if _named_folders(args.name):
            parser.exit(1, f"a node named {args.name} exists already: stop it first\n")
        config = NodeConfig.fresh(INSTALLATIONS[args.installation], short=args.name)
        node = ThrowawayNode(config, deny_deprecated=args.deny_deprecated)
        try:
            node.start()
        except BaseException:
            node.destroy()
            raise
        print(f"PROVISION_TEST_AMQP_PORT={config.amqp_port}")
        print(f"PROVISION_TEST_MANAGEMENT_URL=http://127.0.0.1:{config.management_port}")
        print(f"PROVISION_TEST_NODE={config.name}")
        print(f"PROVISION_TEST_NODE_FOLDER={config.folder}")
        return 0
    folders = _named_folders(args.name)
    if not folders:
        parser.exit(1, f"no node named {args.name}\n")
    for folder in folders:
        ThrowawayNode.existing(NodeConfig.from_json((folder / "node.json").read_text())).destroy()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
