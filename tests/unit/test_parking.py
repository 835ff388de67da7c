"""The temporary queue's guarding policy takes the original queue's dead-letter target, never our diversion's."""

from __future__ import annotations

from provisioner.migration.parking import dead_letter_of, divert_body, divert_policy_name, policy_body

TEMPORARY = "work.provisioner-migrate"
USER_POLICIES = [
    {"name": "low", "pattern": "^work$", "apply-to": "queues", "priority": 1, "definition": {"max-length": 5}},
    {
        "name": "dead-letters",
        "pattern": "^wo",
        "apply-to": "queues",
        "priority": 7,
        "definition": {"dead-letter-exchange": "dlx", "dead-letter-routing-key": "work.dead"},
    },
    {"name": "exchanges-only", "pattern": ".*", "apply-to": "exchanges", "priority": 99, "definition": {}},
]


def seen_during_swap() -> dict[str, object]:
    """The original as the management API shows it a statistics round after the swap: our diversion in force."""
    return {
        "name": "work",
        "arguments": {"x-max-length": 200000},
        "policy": divert_policy_name("work"),
        "effective_policy_definition": divert_body("work", TEMPORARY)["definition"],
    }


def test_a_stale_diversion_is_read_through_to_the_users_policy() -> None:
    assert dead_letter_of(seen_during_swap(), USER_POLICIES) == {
        "dead-letter-exchange": "dlx",
        "dead-letter-routing-key": "work.dead",
    }
    body = policy_body(TEMPORARY, seen_during_swap(), USER_POLICIES)
    assert body["definition"]["dead-letter-routing-key"] != TEMPORARY  # never a cycle back into itself


def test_a_stale_diversion_without_a_user_policy_means_no_dead_letter_target() -> None:
    assert dead_letter_of(seen_during_swap(), []) == {}


def test_the_queues_own_arguments_and_policy_are_taken_as_they_are() -> None:
    original = {
        "name": "work",
        "arguments": {"x-dead-letter-exchange": "mine"},
        "policy": "dead-letters",
        "effective_policy_definition": {"dead-letter-exchange": "dlx", "dead-letter-routing-key": "work.dead"},
    }
    assert dead_letter_of(original, []) == {"dead-letter-exchange": "mine", "dead-letter-routing-key": "work.dead"}
