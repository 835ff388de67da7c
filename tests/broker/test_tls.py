"""TLS end to end: amqps:// and https:// against a throwaway node with a certificate of a test CA."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner
from nodes import NodeConfig, ThrowawayNode, free_port

from provisioner.cli import main

TOPOLOGY = """
version: 1
vhost: secure
exchanges:
  orders: {type: topic}
queues:
  orders:
    bindings: [{exchange: orders, routing_key: "order.#"}]
    dead_letter: true
"""


def make_certificates(folder: Path) -> None:
    """A CA and a server certificate for localhost and 127.0.0.1, signed by it (openssl, two days)."""
    folder.mkdir()
    (folder / "san.ext").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=folder, check=True, capture_output=True)

    key = ("-newkey", "rsa:2048", "-nodes")
    openssl(
        "req", "-x509", *key, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=provisioner test CA"
    )
    openssl("req", "-new", *key, "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=localhost")
    openssl(
        "x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
        "-out", "server.pem", "-days", "2", "-extfile", "san.ext",
    )  # fmt: skip


@dataclass(frozen=True)
class TlsNode:
    node: ThrowawayNode
    amqps_url: str
    https_url: str
    ca_file: str


@pytest.fixture(scope="module")
def tls_node(broker: None) -> Iterator[TlsNode]:
    config = NodeConfig.fresh()
    tls = config.folder / "tls"
    try:
        make_certificates(tls)
    except BaseException:
        shutil.rmtree(config.folder, ignore_errors=True)
        raise
    amqps_port, https_port = free_port(), free_port()
    files = (
        f"cacertfile = {tls / 'ca.pem'}\n{{0}}certfile = {tls / 'server.pem'}\n{{0}}keyfile = {tls / 'server.key'}\n"
    )
    extra = (
        f"listeners.ssl.default = 127.0.0.1:{amqps_port}\n"
        + "ssl_options." + files.format("ssl_options.")
        + "ssl_options.verify = verify_none\nssl_options.fail_if_no_peer_cert = false\n"
        + f"management.ssl.port = {https_port}\nmanagement.ssl.ip = 127.0.0.1\n"
        + "management.ssl." + files.format("management.ssl.")
    )  # fmt: skip
    node = ThrowawayNode(config, extra_config=extra)
    try:
        node.start()
        yield TlsNode(
            node,
            amqps_url=f"amqps://guest:guest@localhost:{amqps_port}/",
            https_url=f"https://guest:guest@localhost:{https_port}",
            ca_file=str(tls / "ca.pem"),
        )
    finally:
        node.destroy()


def run(tls: TlsNode, *args: str, ca_file: bool = True) -> tuple[int, str]:
    # REQUESTS_CA_BUNDLE, set on many CI machines, must not override --ca-file (requests lets it, per session).
    env = {
        "PROVISION_AMQP_URL": tls.amqps_url,
        "PROVISION_MANAGEMENT_URL": tls.https_url,
        "REQUESTS_CA_BUNDLE": "/etc/ssl/certs/ca-certificates.crt",
    }
    options = ["--ca-file", tls.ca_file] if ca_file else []
    result = CliRunner().invoke(main, [args[0], *options, "--retry-seconds", "0", *args[1:]], env=env)
    return result.exit_code, result.output


def test_apply_and_plan_over_tls_with_the_ca_file(tls_node: TlsNode, tmp_path: Path) -> None:
    topology = tmp_path / "topology.yaml"
    topology.write_text(TOPOLOGY)
    code, output = run(tls_node, "apply", str(topology))
    assert code == 0, output
    assert "Applied: 7 created" in output  # the vhost too, as the plan counts it
    code, output = run(tls_node, "plan", "--detailed-exitcode", str(topology))
    assert code == 0, output
    assert "No changes" in output


def test_an_untrusted_certificate_is_one_clear_line_without_the_password(tls_node: TlsNode, tmp_path: Path) -> None:
    topology = tmp_path / "topology.yaml"
    topology.write_text(TOPOLOGY)
    code, output = run(tls_node, "plan", str(topology), ca_file=False)
    assert code == 1
    lines = output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), output
    assert "certificate verify failed" in lines[0] and "localhost" in lines[0]
    assert "guest:guest" not in output and "Traceback" not in output
