"""Keep what a command built until its process ends, so that the process can end without freeing it.

Freeing the objects of a big topology one by one costs about a tenth of a
`provision validate` (a second of a 5 MiB file, 30 ms of a 10,000-object one);
the operating system takes a process's memory back at once. Only the `provision`
process asks for this (cli/process.py); a program that imports provisioner
keeps nothing.
"""

from __future__ import annotations

import gc

_kept: list[object] | None = None


def keep_until_exit() -> None:
    """From now on, ``retain`` keeps what it is given for the rest of the process."""
    global _kept
    _kept = []


def retain(*objects: object) -> None:
    """Keep ``objects`` alive until the process ends, if the process asked for it; otherwise nothing."""
    if _kept is not None:
        _kept.extend(objects)


def settle() -> None:
    """Take what exists now out of the cycle collector's sight, if the process keeps it until exit; else nothing.

    After a pause of the collector (topology/yaml_marks.py), everything built
    during it is young: the next collections walk all of it twice (about 0.06 s
    of a 0.4 s no-op plan of 10,000 objects) to find no cycles. The process
    frees none of it before its end, so ``gc.freeze`` spares those walks;
    whatever is built afterwards is collected as usual.
    """
    if _kept is not None:
        gc.freeze()
