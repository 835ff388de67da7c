"""The README is a front door: short, its links lead somewhere, and its tour runs as written in a vhost of its own."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote

from rabbit import api

import provisioner

ROOT = Path(__file__).resolve().parent.parent.parent
README = ROOT / "README.md"
TOUR_VHOST = "SHOP_VHOST=provisioner-tour"  # the line of the tour that names its vhost
WRITERS = re.compile(r"^provision (apply|dlq (replay|purge))\b")  # the commands that write into a vhost


def tour() -> str:
    """The first shell block of the README's "A five-minute tour" section."""
    section = README.read_text(encoding="utf-8").split("## A five-minute tour", 1)[1]
    found = re.search(r"```sh\n(.*?)```", section, re.S)
    assert found is not None
    return found.group(1)


def test_the_readme_is_at_most_250_lines_and_its_links_lead_somewhere() -> None:
    text = README.read_text(encoding="utf-8")
    assert len(text.splitlines()) <= 250
    targets = re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", text)
    local = [t for t in targets if "://" not in t]
    assert any(t.startswith("docs/") for t in local)
    assert [t for t in local if not (ROOT / t).exists()] == []


def test_the_tour_converges_a_vhost_of_its_own_and_never_writes_into_slash(vhost_name: str, tmp_path: Path) -> None:
    """Run the tour as a user would, its vhost swapped for a fresh one; each file a writer names avoids `/`."""
    script = tour()
    assert script.count(TOUR_VHOST) == 1
    (tmp_path / "topologies").symlink_to(ROOT / "topologies")
    (tmp_path / ".venv" / "bin").mkdir(parents=True)
    interpreter = shlex.quote(str(Path(sys.executable).parent))  # this venv's bin, where `provision` is
    (tmp_path / ".venv" / "bin" / "activate").write_text(f"PATH={interpreter}:$PATH\n")
    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script.replace(TOUR_VHOST, f"SHOP_VHOST={vhost_name}")],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "-/+ queue notifications.email" in result.stdout
    converged, rendered = result.stdout.rstrip().rsplit("\n", 1)[0], result.stdout.rstrip().rsplit("\n", 1)[1]
    assert converged.endswith("No changes. The broker matches the topology.\nwrote celeryconfig.py")
    assert rendered == "fresh: celeryconfig.py matches shop-changed.yaml"  # the workers' config followed the change
    queues = {item["name"] for item in api("GET", f"queues/{quote(vhost_name, safe='')}").json()}
    assert {"orders", "billing", "notifications.email", "audit", "celery"} <= queues
    writers = [line.split("#", 1)[0].split() for line in script.splitlines() if WRITERS.match(line)]
    assert writers
    for words in writers:
        files = [tmp_path / w for w in words if w.endswith(".yaml")]
        assert files, words
        topology = provisioner.load_topology(*files, environ={"SHOP_VHOST": vhost_name})
        assert {v.name for v in topology.vhosts} == {vhost_name}, words
