"""A plan reads the broker while the topology is still being checked: same plan, same requests, same errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import rabbit
from click.testing import CliRunner
from rabbit import endpoints as broker_endpoints

from provisioner.apply import ApplyOptions, converge, make_plan
from provisioner.broker.endpoints import Endpoints
from provisioner.broker.live import LiveSoon, read_live_soon
from provisioner.broker.management import Management
from provisioner.broker.reads import read_requests
from provisioner.broker.retry import NO_RETRY
from provisioner.cli import main
from provisioner.errors import BrokerError, TopologyInvalid
from provisioner.topology import Topology, load


def topology(tmp_path: Path, vhost: str) -> Path:
    file = tmp_path / "t.yaml"
    file.write_text(
        f"version: 1\nvhost: {vhost}\nexchanges:\n  work: {{type: topic}}\n"
        "queues:\n  jobs:\n    bindings: [{exchange: work, routing_key: jobs}]\n    dead_letter: true\n"
    )
    return file


def test_the_vhosts_are_known_before_expansion_and_checks(tmp_path: Path) -> None:
    file = tmp_path / "two.yaml"
    file.write_text("version: 1\nvhosts:\n  b: {queues: {q: {}}}\n  a: {queues: {q: {}}}\n")
    heard: list[list[str]] = []
    load([file], on_vhosts=heard.append)
    assert heard == [["b", "a"]]
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 1\nvhost: x\nqueues:\n  q: {durable: maybe}\n")
    with pytest.raises(TopologyInvalid):
        load([bad], on_vhosts=heard.append)
    assert heard == [["b", "a"]]  # an invalid file starts no read


def converged_and_reading(tmp_path: Path, vhost: str) -> tuple[Topology, Endpoints, Management, LiveSoon]:
    """A vhost already converged, its topology loaded again while a read of the vhost is under way."""
    file = topology(tmp_path, vhost)
    endpoints = broker_endpoints()
    converge(load([file]), endpoints, Management(endpoints), ApplyOptions(workers=1))
    management = Management(endpoints)
    reading = []
    desired = load([file], on_vhosts=lambda vhosts: reading.append(read_live_soon(management, vhosts)))
    return desired, endpoints, management, reading[0]


def test_a_read_under_way_makes_the_plan_with_its_two_requests(tmp_path: Path, vhost_name: str) -> None:
    desired, endpoints, management, live_soon = converged_and_reading(tmp_path, vhost_name)
    plan = make_plan(desired, management, endpoints=endpoints, live_soon=live_soon)
    assert plan.is_empty
    assert management.requests_made == read_requests(
        1, rabbit.version_text()
    )  # the vhost kind by kind, its operator policies, the version
    other = read_live_soon(Management(endpoints), ["not-" + vhost_name])  # a read of other vhosts is not used
    assert make_plan(desired, management, endpoints=endpoints, live_soon=other).is_empty
    assert management.requests_made == 2 * read_requests(1, rabbit.version_text())


def test_the_read_raises_its_error_in_the_waiting_caller(tmp_path: Path) -> None:
    management = Management(Endpoints(management_url="http://guest:s3cret@127.0.0.1:1"), backoff=NO_RETRY)
    wait = read_live_soon(management, ["x"])
    with pytest.raises(BrokerError) as caught:
        wait()
    assert "s3cret" not in str(caught.value)


@pytest.mark.parametrize("command", ["plan", "apply"])
def test_cli_of_an_invalid_file_reports_the_file_even_with_no_broker(tmp_path: Path, command: str) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 1\nvhost: x\nqueues:\n  q: {bindings: [{exchange: nowhere}]}\n")
    unreachable = ["--management-url", "http://guest:s3cret@127.0.0.1:1", "--retry-seconds", "0"]
    result = CliRunner().invoke(main, [command, str(bad), *unreachable])  # no retry left to log into later tests
    assert result.exit_code == 1
    assert "exchange 'nowhere' is not defined" in result.output and "s3cret" not in result.output


def test_a_no_op_apply_makes_its_plan_from_the_read_under_way(tmp_path: Path, vhost_name: str) -> None:
    desired, endpoints, management, live_soon = converged_and_reading(tmp_path, vhost_name)
    report = converge(desired, endpoints, management, ApplyOptions(workers=1), live_soon=live_soon)
    assert report.plan.is_empty
    assert management.requests_made == read_requests(
        1, rabbit.version_text()
    )  # the read started during loading, and nothing more
