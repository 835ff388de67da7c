"""`provision apply` on a real terminal (a pty): shows the plan, asks, writes only after 'yes'."""

from __future__ import annotations

import os
import pty
import subprocess
from pathlib import Path
from urllib.parse import quote

from provision_cli import PROVISION
from rabbit import AMQP_PORT, AUTH, HOST, MANAGEMENT_URL, api

QUESTION = "Apply these changes to the broker? Only 'yes' applies"
BROKER = [
    "--amqp-url",
    f"amqp://{AUTH[0]}:{AUTH[1]}@{HOST}:{AMQP_PORT}/",
    "--management-url",
    MANAGEMENT_URL.replace("://", f"://{AUTH[0]}:{AUTH[1]}@", 1),
]
TOPOLOGY = """
version: 1
vhost: {vhost}
exchanges:
  orders: {{type: topic}}
queues:
{queues}
"""


def write(tmp_path: Path, vhost: str, *queues: str) -> str:
    path = tmp_path / "topology.yaml"
    lines = "\n".join(f"  {name}: {{bindings: [{{exchange: orders, routing_key: {name}}}]}}" for name in queues)
    path.write_text(TOPOLOGY.format(vhost=vhost, queues=lines))
    return str(path)


def _read_all(fd: int, until: str | None) -> str:
    """What the terminal shows, up to ``until`` (or the end, when the process closes it)."""
    seen = b""
    while until is None or until.encode() not in seen:
        try:
            chunk = os.read(fd, 4096)
        except OSError:  # EIO: the process exited and closed the terminal
            break
        if not chunk:
            break
        seen += chunk
    return seen.decode(errors="replace")


def on_a_terminal(*args: str, answer: str | None = None, stdout: str = "") -> tuple[int, str, str]:
    """Run provision with a pty as its terminal; type ``answer`` when it asks. (exit code, before, after).

    ``stdout``: a file standard output goes to instead (`apply > log` on a terminal).
    """
    pid, fd = pty.fork()
    if pid == 0:  # the child: provision, its stdin, stdout and stderr the terminal
        if stdout:
            os.dup2(os.open(stdout, os.O_WRONLY | os.O_CREAT | os.O_TRUNC), 1)
        os.execv(PROVISION, [PROVISION, *args])
    try:
        before = _read_all(fd, QUESTION if answer is not None else None)
        after = ""
        if answer is not None:
            os.write(fd, answer.encode() + b"\r")
            after = _read_all(fd, None)
    finally:
        _, status = os.waitpid(pid, 0)
        os.close(fd)
    return os.waitstatus_to_exitcode(status), before, after


def vhost_exists(vhost: str) -> bool:
    return api("GET", f"vhosts/{quote(vhost, safe='')}").status_code == 200


def queue_names(vhost: str) -> set[str]:
    return {queue["name"] for queue in api("GET", f"queues/{quote(vhost, safe='')}").json()}


def test_apply_on_a_terminal_shows_the_plan_and_writes_only_after_yes(vhost_name: str, tmp_path: Path) -> None:
    topology = write(tmp_path, vhost_name, "orders")
    for answer in ("no", "", "y"):  # only 'yes' applies: a bare Enter or 'y' cancels
        code, shown, after = on_a_terminal("apply", *BROKER, topology, answer=answer)
        assert "+ queue orders" in shown and QUESTION in shown  # the plan came before the question
        assert code == 1 and "apply cancelled" in after and "nothing was changed" in after, after
        assert not vhost_exists(vhost_name)  # nothing was written, not even the vhost
    code, shown, after = on_a_terminal("apply", *BROKER, topology, answer="yes")
    assert code == 0 and "Applied: 4 created" in after, shown + after
    assert (shown + after).count("+ queue orders") == 1  # shown once, not again when it runs
    assert queue_names(vhost_name) == {"orders"}
    code, shown, _ = on_a_terminal("apply", *BROKER, topology)  # converged: nothing to ask
    assert code == 0 and "No changes" in shown and QUESTION not in shown
    log = tmp_path / "apply.log"  # `apply > apply.log` on a terminal: the person still reads the plan before answering
    topology = write(tmp_path, vhost_name, "orders", "audit")
    code, shown, after = on_a_terminal("apply", *BROKER, topology, answer="yes", stdout=str(log))
    assert code == 0 and "+ queue audit" in shown and QUESTION in shown, shown
    assert "+ queue audit" in log.read_text() and "Applied: 2 created" in log.read_text()  # and the log keeps it


def test_yes_or_no_terminal_never_asks(vhost_name: str, tmp_path: Path) -> None:
    topology = write(tmp_path, vhost_name, "orders")
    code, shown, _ = on_a_terminal("apply", "--yes", *BROKER, topology)
    assert code == 0 and "Applied: 4 created" in shown and QUESTION not in shown, shown
    topology = write(tmp_path, vhost_name, "orders", "invoices")
    piped = subprocess.run(
        [PROVISION, "apply", *BROKER, topology], stdin=subprocess.PIPE, capture_output=True, text=True
    )
    assert piped.returncode == 0 and "Applied: 2 created" in piped.stdout and QUESTION not in piped.stderr
    assert queue_names(vhost_name) == {"orders", "invoices"}
