"""The registry of kinds: the one place a kind of broker object is added to the pipeline.

A new kind provides, in a module of its own under ``provisioner/kinds/``, one
:class:`Kind` and adds ONE line to :data:`KINDS` below. The ``Kind`` says:

- ``name``: the ``kind`` string of its model class (a frozen dataclass with
  ``key``, ``vhost`` and ``name``; ``key`` is its identity, equality covers the
  broker-visible fields only);
- ``compared``: the broker-visible fields compared one by one, in plan order;
  ``table``: a dict field compared key by key (``arguments``, ``definition``);
- ``immutable``: the compared fields (or ``"*"`` for every table key too) whose
  change forces a replace, and ``why`` in one line; other changes update in place;
- ``creation`` / ``deletion``: its ranks in the one execution order
  (:data:`PHASES`: creations, updates and replaces by ``creation``, then
  deletions by ``deletion``; ranks of today's kinds are listed in :data:`KINDS`);
- ``read``: how one item of the broker's definitions document becomes the model
  (``definitions`` names the document's list), or ``None`` when its live state
  is read elsewhere (the account kinds: broker/accounts.py);
- ``describe``: the text of its create line; ``show``: how a value prints;
- ``actions``: the actions the executor can run on it; ``write_tags``: the
  management user tags its writes need, if any.

The function that runs each (action, kind) lives outside this registry, in
provisioner/handlers/ (orchestration), registered into the executor's table the
way Alembic's toimpl registers each operation: a kind never imports the executor
or a broker client (the import contracts in pyproject.toml hold it to that).

Everything else (the diff's field differences, the plan's order and text, the
executor's dispatch, the check that every phase has a handler) derives from it.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from provisioner.kinds import accounts, binding, exchange, policy, queue, runtime_parameters, vhost
from provisioner.kinds.kind import Kind
from provisioner.plan import Action, Change, FieldChange


def _registry() -> dict[str, Kind]:
    # One line per kind. Ranks today (creation, deletion): vhost 10, vhost_limit 20/80, user 30/90,
    # permission 40/70, exchange 60/50, topic_permission 65/45, queue 70/40, binding 80/30,
    # policy 90/10, operator_policy 95/20, global_parameter 15/95, federation_upstream 100/6, shovel 105/5
    # (tests/test_kinds.py holds the whole order).
    kinds = (
        vhost.VHOST,
        accounts.VHOST_LIMIT,
        accounts.USER,
        accounts.PERMISSION,
        accounts.TOPIC_PERMISSION,
        exchange.EXCHANGE,
        queue.QUEUE,
        binding.BINDING,
        policy.POLICY,
        runtime_parameters.OPERATOR_POLICY,  # policy.OPERATOR_POLICY, managed: created and updated too
        runtime_parameters.GLOBAL_PARAMETER,
        runtime_parameters.FEDERATION_UPSTREAM,
        runtime_parameters.SHOVEL,
    )
    return {kind.name: kind for kind in kinds}


KINDS: dict[str, Kind] = _registry()

# The order of execution, derived once: creations from the vhost down to policies, then deletions.
PHASES: tuple[tuple[Action, str], ...] = tuple(
    (action, kind.name)
    for _, action, kind in sorted(
        ((rank, action, kind) for kind in KINDS.values() for rank, action in kind.phases()),
        key=lambda item: (item[0], list(Action).index(item[1])),
    )
)
PHASE_INDEX = {phase: index for index, phase in enumerate(PHASES)}


def in_phase_order(changes: Iterable[Change]) -> tuple[Change, ...]:
    """Changes in the one order of execution; a stable sort, so each phase keeps the order it was given."""
    return tuple(sorted(changes, key=lambda change: PHASE_INDEX[(change.action, change.kind)]))


def kind_of(resource: Any) -> Kind:
    """The registered kind of a model object."""
    return KINDS[resource.kind]


def describe(resource: Any) -> str:
    """A short description of an object's broker-visible fields, for create lines."""
    return kind_of(resource).describe(resource)


def field_changes(before: Any, after: Any) -> tuple[FieldChange, ...]:
    """The field-level differences between two versions of one object."""
    return kind_of(after).field_changes(before, after)
