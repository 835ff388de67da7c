"""`python -m provisioner.cli`: the same command as `provision`."""

from __future__ import annotations

from provisioner.cli.process import run

if __name__ == "__main__":
    run()
