"""Every broker-side failure is one line with the object and the broker's words, exit 1, never
"internal error": the lock's own connection, migration bind/unbind refusals, queues named `.` and `..`,
DNS and TLS failures, refusals that must not be retried, and credentials checked before the first write."""

from __future__ import annotations

import ssl
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import quote

import pika
import pika.exceptions
import pytest
from click.testing import CliRunner
from provision_cli import run as run_provision
from rabbit import AMQP_PORT, HOST, MANAGEMENT_URL, api, parameters, version
from test_tls import TlsNode, tls_node  # noqa: F401 - the fixture

from provisioner.broker.amqp import ConnectFailed, open_connection
from provisioner.broker.endpoints import Endpoints
from provisioner.broker.lock import VhostLock
from provisioner.broker.management import Management
from provisioner.broker.retry import NO_RETRY, is_transient
from provisioner.cli import main
from provisioner.errors import BrokerError
from provisioner.migration.amqp import PikaMigrationBroker
from provisioner.topology.model import Binding

PERMIT_ALL = {"configure": ".*", "write": ".*", "read": ".*"}


def q(name: str) -> str:
    return quote(name, safe="")


UserMaker = Callable[..., str]


@pytest.fixture
def make_user(broker: None) -> Iterator[UserMaker]:
    """Fresh broker users (password 'pw-<name>'), with tags and per-vhost permissions; deleted afterwards."""
    made: list[str] = []

    def make(tags: str = "", permissions: dict[str, dict[str, str]] | None = None) -> str:
        name = f"test-errors-{uuid.uuid4().hex[:8]}"
        api("PUT", f"users/{name}", json={"password": f"pw-{name}", "tags": tags}).raise_for_status()
        made.append(name)
        for vhost, granted in (permissions or {}).items():
            api("PUT", f"permissions/{q(vhost)}/{name}", json=granted).raise_for_status()
        return name

    yield make
    for name in made:
        api("DELETE", f"users/{name}")


def urls(user: str, password: str | None = None) -> list[str]:
    password = password or f"pw-{user}"
    return [
        "--amqp-url",
        f"amqp://{user}:{password}@{HOST}:{AMQP_PORT}/",
        "--management-url",
        f"http://{user}:{password}@{MANAGEMENT_URL.partition('://')[2]}",
    ]


def run(*args: str) -> tuple[int, str]:
    result = run_provision(*args)
    return result.exit_code, result.output


def one_error_line(output: str) -> str:
    lines = output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), output
    assert "internal error" not in output and "Traceback" not in output
    return lines[0]


# The apply lock opens a connection of its own: each way it can fail is one clear line.


def as_user(vhost: str, user: str, password: str) -> pika.ConnectionParameters:
    return pika.ConnectionParameters(HOST, AMQP_PORT, vhost, pika.PlainCredentials(user, password))


def lock_error(params: pika.ConnectionParameters) -> str:
    with pytest.raises(BrokerError) as caught, VhostLock(params, timeout=0, backoff=NO_RETRY):
        pass
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_the_lock_connection_with_a_wrong_password(vhost: str) -> None:
    params = as_user(vhost, "guest", "not-the-password")
    message = lock_error(params)
    assert "refused the credentials of user 'guest'" in message and "ACCESS_REFUSED" in message
    assert "not-the-password" not in message


def test_the_lock_connection_to_a_wrong_port(vhost: str) -> None:
    assert lock_error(parameters(vhost, port=1)) == f"cannot connect to AMQP at {HOST}:1 (Connection refused)"


def test_the_lock_connection_to_a_host_that_does_not_resolve(vhost: str) -> None:
    params = pika.ConnectionParameters("no-such-host.invalid", AMQP_PORT, vhost)
    assert "the AMQP host name 'no-such-host.invalid' does not resolve" in lock_error(params)


def test_the_lock_connection_with_tls_to_a_plain_port(vhost: str) -> None:
    params = parameters(vhost, ssl_options=pika.SSLOptions(ssl.create_default_context(), "localhost"))
    assert lock_error(params).startswith(f"TLS handshake with AMQP at {HOST}:{AMQP_PORT} failed")


def test_the_lock_connection_of_a_user_without_permission_on_the_vhost(vhost: str, make_user: UserMaker) -> None:
    user = make_user()
    params = as_user(vhost, user, f"pw-{user}")
    message = lock_error(params)
    assert f"user '{user}' may not open vhost '{vhost}'" in message and "NOT_ALLOWED" in message


def test_the_lock_queue_refused_by_permissions_names_the_broker_words(vhost: str, make_user: UserMaker) -> None:
    user = make_user(permissions={vhost: {"configure": "^nothing$", "write": ".*", "read": ".*"}})
    params = as_user(vhost, user, f"pw-{user}")
    message = lock_error(params)
    assert f"cannot take the apply lock of vhost '{vhost}': 403 ACCESS_REFUSED" in message


# Credentials and permissions are checked before the first write.

TOPOLOGY = """
version: 1
vhost: {vhost}
exchanges:
  upstream: {{type: topic}}
queues:
  work:
    max_length: {max_length}
    bindings: [{{exchange: upstream, routing_key: "w.#"}}]
"""


def topology(tmp_path: Path, vhost: str, max_length: int = 10) -> str:
    path = tmp_path / "topology.yaml"
    path.write_text(TOPOLOGY.format(vhost=vhost, max_length=max_length))
    return str(path)


def test_a_wrong_amqp_password_leaves_the_broker_untouched(tmp_path: Path, vhost_name: str) -> None:
    wrong = ["--amqp-url", f"amqp://guest:wrong@{HOST}:{AMQP_PORT}/"]
    code, output = run("apply", *wrong, "--retry-seconds", "0", topology(tmp_path, vhost_name))
    line = one_error_line(output)
    assert code == 1 and "refused the credentials of user 'guest'" in line and "nothing was changed" in line
    assert api("GET", f"vhosts/{q(vhost_name)}").status_code == 404  # no vhost created over HTTP


def test_a_user_without_permission_on_the_vhost_is_told_before_any_write(
    tmp_path: Path, vhost: str, make_user: UserMaker
) -> None:
    user = make_user(tags="administrator")  # may use the management API, has no permission on the vhost
    code, output = run("apply", *urls(user), "--retry-seconds", "0", topology(tmp_path, vhost))
    line = one_error_line(output)
    assert code == 1 and f"user '{user}' may not open vhost '{vhost}'" in line and "nothing was changed" in line
    assert api("GET", f"exchanges/{q(vhost)}/upstream").status_code == 404


# 401 and 403: which tag or permission is missing.


def test_a_user_without_any_management_tag_is_told_to_add_one(tmp_path: Path, vhost: str, make_user: UserMaker) -> None:
    user = make_user(permissions={vhost: PERMIT_ALL})
    code, output = run("plan", *urls(user), topology(tmp_path, vhost))
    line = one_error_line(output)
    assert code == 1 and f"user '{user}' has no tag" in line and "'management' tag" in line
    assert "refused the credentials" not in line


def test_a_management_user_without_permission_on_the_vhost_is_told_so(
    tmp_path: Path, vhost: str, make_user: UserMaker
) -> None:
    user = make_user(tags="management")  # may not read definitions (administrator), nor this vhost's lists
    code, output = run("plan", *urls(user), topology(tmp_path, vhost))
    line = one_error_line(output)
    assert code == 1 and f"user '{user}' (tags: management) may not GET /api/" in line
    assert "it needs permissions on the vhost" in line and "refused the credentials" not in line


def test_a_wrong_management_password_says_so(tmp_path: Path, vhost: str) -> None:
    code, output = run("plan", *urls("guest", "wrong"), topology(tmp_path, vhost))
    reason = "Login failed" if version() < (4, 0) else "Not_Authorized"  # the broker's own words, per version
    assert code == 1 and f"refused the credentials of user 'guest' (401 {reason})" in one_error_line(output)


# DNS and TLS: permanent, one line at once.


def test_a_management_host_that_does_not_resolve_says_so(tmp_path: Path, vhost: str) -> None:
    code, output = run(
        "plan", "--management-url", "http://guest:guest@no-such-host.invalid:15672", topology(tmp_path, vhost)
    )
    line = one_error_line(output)  # one line: not retried
    assert code == 1 and "host name 'no-such-host.invalid' does not resolve" in line
    assert "rabbitmq_management" not in line


def test_a_tls_certificate_that_does_not_verify_fails_at_once_on_both_doors(
    tls_node: TlsNode,  # noqa: F811
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    env = {"PROVISION_AMQP_URL": tls_node.amqps_url, "PROVISION_MANAGEMENT_URL": tls_node.https_url}
    path = topology(tmp_path, "secure")
    result = CliRunner().invoke(main, ["plan", "--retry-seconds", "15", path], env=env)  # no --ca-file
    line = one_error_line(result.output)  # no retry lines before it
    assert result.exit_code == 1 and "certificate verify failed" in line
    endpoints = Endpoints(tls_node.amqps_url, tls_node.https_url)
    with pytest.raises(ConnectFailed) as caught:
        open_connection(endpoints.amqp_parameters("/"))  # default backoff: would retry a transient fault
    assert "TLS handshake with AMQP at localhost:" in str(caught.value)
    assert "certificate verify failed" in str(caught.value)
    assert not [r for r in caplog.records if "retrying" in r.getMessage()]


# Refusals are permanent: the broker's words at once, never "connection lost" after retries.


@pytest.mark.parametrize("code", [403, 404, 406, 503, 530, 541])
def test_a_broker_refusal_is_never_retried(code: int) -> None:
    assert not is_transient(pika.exceptions.ConnectionClosedByBroker(code, "refused"))
    assert not is_transient(pika.exceptions.ChannelClosedByBroker(code, "refused"))


def test_a_node_stopping_is_still_retried() -> None:
    assert is_transient(pika.exceptions.ConnectionClosedByBroker(320, "CONNECTION_FORCED - shutdown"))


def test_a_connection_refusal_mid_apply_fails_at_once_with_its_words(tmp_path: Path, vhost: str) -> None:
    """A refusal no plan can foresee (the queue is another connection's exclusive one, which definitions never
    list; an exchange type no plugin brings is now refused by the plan, before any write)."""
    holder = pika.BlockingConnection(parameters(vhost))
    try:
        holder.channel().queue_declare("odd", exclusive=True)
        path = tmp_path / "t.yaml"
        path.write_text(f"version: 1\nvhost: {vhost}\nqueues:\n  odd: {{}}\n")
        code, output = run("apply", "--retry-seconds", "15", str(path))
    finally:
        holder.close()
    lines = output.strip().splitlines()  # the plan, then the error
    assert not [line for line in lines if "retrying" in line or "connection lost" in line], output
    line = lines[-1]
    assert code == 1 and line.startswith("error: ") and "declare queue 'odd'" in line
    assert "405 RESOURCE_LOCKED - cannot obtain exclusive access to locked queue 'odd'" in line, line


# Queues named . and .. stay names in management paths; migration refusals are one line.


def test_queues_named_dot_and_dot_dot_are_read_as_queues(vhost: str) -> None:
    connection = pika.BlockingConnection(parameters(vhost))
    for name in (".", ".."):
        connection.channel().queue_declare(name, durable=True)
    connection.close()
    management = Management(Endpoints(management_url=MANAGEMENT_URL))
    for name in (".", ".."):
        found = management.queue(vhost, name)
        assert isinstance(found, dict) and found["name"] == name
        assert management.queue_bindings(vhost, name)[0]["destination"] == name  # the default exchange's


def count(vhost: str, name: str) -> int:
    connection = pika.BlockingConnection(parameters(vhost))
    try:
        return int(connection.channel().queue_declare(name, passive=True).method.message_count)
    finally:
        connection.close()


def test_apply_migrate_replaces_queues_named_dot_and_dot_dot(tmp_path: Path, vhost: str) -> None:
    path = tmp_path / "t.yaml"

    def write(max_length: int) -> str:
        queues = "".join(f'  "{name}": {{max_length: {max_length}}}\n' for name in (".", ".."))
        path.write_text(f"version: 1\nvhost: {vhost}\nqueues:\n{queues}")
        return str(path)

    assert run("apply", write(10))[0] == 0
    connection = pika.BlockingConnection(parameters(vhost))
    channel = connection.channel()
    channel.confirm_delivery()
    for name in (".", ".."):
        for n in range(3):
            channel.basic_publish("", name, f"m{n}".encode(), pika.BasicProperties(delivery_mode=2))
    connection.close()
    code, output = run("apply", "--migrate", write(20))
    assert code == 0 and "2 replaced" in output, output
    assert [count(vhost, "."), count(vhost, "..")] == [3, 3]
    code, output = run("plan", "--detailed-exitcode", str(path))
    assert code == 0, output


def test_a_refused_bind_during_a_migration_is_one_line(tmp_path: Path, vhost: str, make_user: UserMaker) -> None:
    assert run("apply", topology(tmp_path, vhost, max_length=10))[0] == 0
    # May do everything but read from exchange `upstream`, which a binding from it needs.
    user = make_user(permissions={vhost: {"configure": ".*", "write": ".*", "read": "^(?!upstream$).*"}})
    amqp = ["--amqp-url", f"amqp://{user}:pw-{user}@{HOST}:{AMQP_PORT}/"]
    code, output = run("apply", "--migrate", *amqp, "--retry-seconds", "0", topology(tmp_path, vhost, max_length=20))
    line = output.strip().splitlines()[-1]
    assert code == 1 and line.startswith("error: ") and "internal error" not in output, output
    assert "migration: cannot bind queue" in line and "exchange 'upstream'" in line
    assert "403 ACCESS_REFUSED" in line
    assert count(vhost, "work") == 0  # the original queue is still there (a passive declare finds it)


def test_a_refused_unbind_is_one_line(vhost: str, make_user: UserMaker) -> None:
    connection = pika.BlockingConnection(parameters(vhost))
    channel = connection.channel()
    channel.exchange_declare("upstream", "topic", durable=True)
    channel.queue_declare("work", durable=True)
    channel.queue_bind("work", "upstream", "k")
    connection.close()
    user = make_user(permissions={vhost: {"configure": ".*", "write": ".*", "read": "^(?!upstream$).*"}})
    connection = pika.BlockingConnection(as_user(vhost, user, f"pw-{user}"))
    broker = PikaMigrationBroker(connection, vhost, Management(Endpoints(management_url=MANAGEMENT_URL)))
    try:
        with pytest.raises(BrokerError) as caught:
            broker.unbind(Binding(vhost, "upstream", "work", "queue", "k", {}))
    finally:
        connection.close()
    message = str(caught.value)
    assert "migration: cannot unbind queue 'work' from exchange 'upstream'" in message
    assert "403 ACCESS_REFUSED" in message


def test_management_reads_of_dotted_names_are_requests_for_those_names(vhost: str) -> None:
    """The regression itself: /api/queues/v/.. is read as /api/queues/v (a list) by requests and the API."""
    management = Management(Endpoints(management_url=MANAGEMENT_URL))
    assert management.queue(vhost, "..") is None  # absent, not "every queue of the broker"
