"""Passwords never appear in any output: redact() as the last line of defence, URLs that do not parse,
and a real broker user whose password is full of URL syntax, over every command, by env and by option."""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote, urlsplit

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from provision_cli import run as run_provision
from rabbit import AMQP_PORT, HOST, MANAGEMENT_URL, api

from provisioner import cli
from provisioner.broker.endpoints import BadUrl, Endpoints, url_secrets, where
from provisioner.cli import output
from provisioner.redact import MASK, redact, secret_forms

AMQP_AT, MANAGEMENT_AT = f"{HOST}:{AMQP_PORT}", urlsplit(MANAGEMENT_URL).netloc  # the broker under test

# URL syntax, percent signs, a space, quotes, latin-1 and an emoji: everything a URL parser trips on.
NASTY = "p#/?@:%[] 'q\"é😀%41"
PASSWORDS = st.text(st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=24)

TOPOLOGY = """
version: 1
vhost: {vhost}
exchanges:
  orders: {{type: topic}}
queues:
  orders:
    bindings: [{{exchange: orders, routing_key: "order.#"}}]
    dead_letter: true
policies:
  cap: {{pattern: "^orders$", definition: {{max-length: 1000}}}}
"""


def leaked(password: str, text: str) -> list[str]:
    """Every form of the password found in text (raw, decoded, percent-encoded, escaped)."""
    return sorted(form for form in secret_forms(password) if form in text)


# redact(): the one function every printed line passes through.


@settings(max_examples=100, deadline=None)
@given(password=PASSWORDS, before=st.text(max_size=20), after=st.text(max_size=20))
def test_redact_masks_every_form_of_a_password_where_a_password_stands(password: str, before: str, after: str) -> None:
    """In a URL's userinfo (as written, encoded or escaped) and as the value of a password field."""
    assume("*" not in password and "@" not in before + after)
    for form in secret_forms(password):
        text = redact(f"{before} amqp://user:{form}@host:5672/{after} and http://u:{form}@h", [password])
        assert f"amqp://user:{MASK}@host:5672/" in text and f"http://u:{MASK}@h" in text, (form, text)
    fields = [
        ('{"password": ', json.dumps(password), "}"),
        ("'password_hash': ", repr(password), ""),
        ("password=", quote(password), ""),
    ]
    for head, value, tail in fields:
        text = redact(f"{before} {head}{value}{tail} {after}", [])
        assert f" {head}{MASK}{tail} " in text, (head, value, text)


# Short and common passwords: plan text, JSON, errors and exports keep every ordinary name and word.
COMMON = ["x", "a", "guest", "orders", "/", "1", "e", "exchange", "queue", ":", "-"]


@pytest.mark.parametrize("password", COMMON)
def test_redact_never_masks_ordinary_text_equal_to_a_password(password: str) -> None:
    lines = [
        "vhost 'orders':",
        "    + exchange orders  (topic)",
        "    + queue orders  (classic)",
        "    + binding orders -> queue:orders [order.#]",
        '{"name": "orders", "vhost": "/", "exist": true, "count": 1}',
        "error: queue 'orders' in vhost '/' does not exist (x-max-length 1)",
        "    + queue password:reset  (classic)",
        "    + exchange user-password=1  (topic)",
        "Plan: 1 to create, 0 to update, 0 to replace, 0 to delete.",
    ]
    for line in lines:
        assert redact(line, [password]) == line
    url = f"amqp://user:{quote(password, safe='')}@host:5672/orders"
    assert redact(f"cannot reach {url} for exchange orders", [password]) == (
        f"cannot reach amqp://user:{MASK}@host:5672/orders for exchange orders"
    )


@settings(max_examples=100, deadline=None)
@given(password=PASSWORDS)
def test_redact_masks_a_password_known_only_as_it_is_written_in_the_url(password: str) -> None:
    assume("*" not in password)
    assume(password != "user")  # a password equal to the user name is no secret (url_secrets): messages name the user
    written = quote(password, safe="")
    url = f"amqp://user:{written}@broker.example:5672/"
    message = f"failed for {url}, password={password!r}, json {{'password': {json.dumps(password)}}}"
    text = redact(message, url_secrets(url))
    masked = f"failed for amqp://user:{MASK}@broker.example:5672/, password={MASK}, json {{'password': {MASK}}}"
    assume(not leaked(password, masked))  # a password that is a word of the message itself
    assert text == masked
    if not any(form in "broker.example:5672" for form in secret_forms(password)):
        assert "broker.example:5672" in text  # only the password goes


def test_redact_masks_credentials_of_any_url_even_unknown_ones() -> None:
    text = redact("could not use amqp://alice:s3cr3t@host:5672/vh and http://bob:x%23y@host:15672", [])
    assert "s3cr3t" not in text and "x%23y" not in text
    assert "amqp://alice:***@host:5672/vh" in text and "http://bob:***@host:15672" in text


def test_redact_leaves_text_without_secrets_alone() -> None:
    text = "vhost 'shop': + queue orders (quorum)"
    assert redact(text, ["hunter2"]) == text


# URLs: percent-encoded passwords round-trip, broken URLs are one line naming scheme and host at most.


@settings(max_examples=200, deadline=None)
@given(password=PASSWORDS)
def test_a_percent_encoded_password_reaches_both_doors_intact(password: str) -> None:
    written = quote(password, safe="")
    endpoints = Endpoints(f"amqp://user:{written}@h:5672/", f"http://admin:{written}@h:15672").check()
    assert endpoints.amqp_parameters("v").credentials.password == password
    assert endpoints.management_auth == ("admin", password)


def refusal(url: str) -> str:
    with pytest.raises(BadUrl) as caught:
        Endpoints(url).check()
    return str(caught.value)


@settings(max_examples=300, deadline=None)
@given(password=PASSWORDS)
def test_an_unescaped_password_is_parsed_right_or_refused_without_it(password: str) -> None:
    url = f"amqp://user:{password}@broker.example:5672/"
    try:
        Endpoints(url).check()
    except BadUrl as error:  # the same line whatever the password: it cannot be in it
        assert str(error) == refusal("amqp://user:#@broker.example:5672/")
        return
    assert where(url) == "broker.example:5672"  # never a host guessed from inside the password


@pytest.mark.parametrize("password", ["a#b", "a/b", "a?b", "a[b", "a]b", "x/y#z?w"])
def test_unescaped_url_syntax_is_one_line_naming_scheme_and_host(password: str) -> None:
    message = refusal(f"amqps://user:{password}@rabbit.example:5671/")
    assert message.startswith("the AMQP URL (amqps://rabbit.example) cannot be parsed: percent-encode")
    assert password not in message and "\n" not in message


@pytest.mark.parametrize(
    ("url", "said"),
    [
        ("rabbit.example:5672", "the AMQP URL has scheme none"),
        ("http://u:p@rabbit.example:5672/", "the AMQP URL has scheme 'http'"),
        ("amqp://u:p@rabbit.example:port/", "the AMQP URL (amqp://rabbit.example) cannot be parsed"),
        ("amqp://u:p@:5672/", "the AMQP URL (amqp://?) cannot be parsed"),
    ],
)
def test_other_unusable_urls_are_one_line(url: str, said: str) -> None:
    assert refusal(url).startswith(said)


def test_ipv6_hosts_keep_their_brackets() -> None:
    endpoints = Endpoints("amqp://u:p@[::1]:5672/", "http://u:p@[::1]:15672/api-root/")
    assert where(endpoints.amqp_url) == "[::1]:5672"
    assert endpoints.management_base == "http://[::1]:15672/api-root"
    assert endpoints.amqp_parameters("v").host == "::1"


def plan_against_nothing(password: str, topology: Path) -> tuple[int, str]:
    """plan with the password written raw into both URLs, against a port where nothing listens."""
    env = {
        "PROVISION_AMQP_URL": f"amqp://user:{password}@127.0.0.1:1/",
        "PROVISION_MANAGEMENT_URL": f"http://user:{password}@127.0.0.1:1",
    }
    result = CliRunner().invoke(cli.main, ["plan", "--retry-seconds", "0", str(topology)], env=env)
    return result.exit_code, result.output


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(password=PASSWORDS.filter(lambda p: len(p) >= 6))
def test_cli_never_prints_a_password_whatever_the_url_holds(password: str, tmp_path: Path) -> None:
    """One line, exit 1, and no form of the password, whether the URL parses or not."""
    topology = tmp_path / "t.yaml"
    topology.write_text(TOPOLOGY.format(vhost="v"))
    references = [plan_against_nothing(sample, topology)[1] for sample in ("secret", "sec#ret")]
    assume(not any(leaked(password, reference) for reference in references))  # not a word of the message
    code, output = plan_against_nothing(password, topology)
    assert code == 1 and len(output.strip().splitlines()) == 1, output
    assert leaked(password, output) == [], output


def test_retry_lines_pass_through_redact(tmp_path: Path) -> None:
    topology = tmp_path / "t.yaml"
    topology.write_text(TOPOLOGY.format(vhost="v"))
    url = f"http://user:{quote(NASTY, safe='')}@127.0.0.1:1"
    result = CliRunner().invoke(cli.main, ["plan", "--retry-seconds", "0.5", "--management-url", url, str(topology)])
    assert result.exit_code == 1
    assert "retrying in" in result.output  # the retry lines are printed, by the CLI
    assert leaked(NASTY, result.output) == []


def test_the_log_handler_masks_what_a_library_logged(capsys: pytest.CaptureFixture[str]) -> None:
    output._SECRETS.clear()
    output.remember_secrets(f"amqp://u:{quote(NASTY, safe='')}@h/")
    handler = output._SayHandler(logging.WARNING)
    record = {"msg": "connect to amqp://u:%s@h failed (password=%r)", "args": (NASTY, NASTY)}
    handler.emit(logging.makeLogRecord(record))
    err = capsys.readouterr().err
    assert leaked(NASTY, err) == [] and MASK in err and "failed" in err


def test_help_never_shows_a_password() -> None:
    env = {"PROVISION_AMQP_URL": "amqp://u:Hunter2Secret@h/", "PROVISION_MANAGEMENT_URL": "http://u:Hunter2Secret@h"}
    for command in ("plan", "apply", "drift"):
        result = CliRunner().invoke(cli.main, [command, "--help"], env=env)
        assert result.exit_code == 0 and "--amqp-url" in result.output
        assert "Hunter2Secret" not in result.output


# A real broker user whose password is full of URL syntax.


@pytest.fixture
def nasty_user(vhost_name: str) -> Iterator[str]:
    """A fresh administrator whose password is NASTY; deleted afterwards."""
    name = f"test-secrets-{uuid.uuid4().hex[:8]}"
    api("PUT", f"users/{name}", json={"password": NASTY, "tags": "administrator"}).raise_for_status()
    try:
        yield name
    finally:
        api("DELETE", f"users/{name}")


def run(args: list[str], env: dict[str, str] | None = None) -> tuple[int, str]:
    result = run_provision(*args, env=env)
    return result.exit_code, result.output


def test_a_password_full_of_url_syntax_works_and_is_never_printed(
    nasty_user: str, vhost_name: str, tmp_path: Path
) -> None:
    topology = tmp_path / "t.yaml"
    topology.write_text(TOPOLOGY.format(vhost=vhost_name))
    written = quote(NASTY, safe="")
    amqp, management = (
        f"amqp://{nasty_user}:{written}@{AMQP_AT}/",
        f"http://{nasty_user}:{written}@{MANAGEMENT_AT}",
    )
    by_env = {"PROVISION_AMQP_URL": amqp, "PROVISION_MANAGEMENT_URL": management}
    by_option = ["--amqp-url", amqp, "--management-url", management]
    outputs: list[str] = []
    for command, expected in [
        (["plan"], 0),
        (["plan", "--json"], 0),
        (["drift"], 2),
        (["apply"], 0),
        (["plan", "--detailed-exitcode"], 0),
        (["drift"], 0),
    ]:
        for env, options in ((by_env, []), ({}, by_option)):
            code, output = run([*command, *options, str(topology)], env)
            assert code == expected, (command, output)
            outputs.append(output)
    assert "Applied: 8 created" in "".join(outputs)  # the vhost, 2 exchanges, 2 queues, 2 bindings, the policy
    for command in (["validate"], ["render", "-o", "-"]):
        code, output = run([*command, str(topology)], by_env)
        assert code == 0, output
        outputs.append(output)
    for output in outputs:
        assert leaked(NASTY, output) == [], output


def test_wrong_passwords_full_of_url_syntax_are_one_line_without_them(
    nasty_user: str, vhost_name: str, tmp_path: Path
) -> None:
    topology = tmp_path / "t.yaml"
    topology.write_text(TOPOLOGY.format(vhost=vhost_name))
    wrong = NASTY[::-1]
    right, bad = quote(NASTY, safe=""), quote(wrong, safe="")
    cases = [
        (f"amqp://{nasty_user}:{bad}@{AMQP_AT}/", f"http://{nasty_user}:{right}@{MANAGEMENT_AT}", "AMQP"),
        (f"amqp://{nasty_user}:{right}@{AMQP_AT}/", f"http://{nasty_user}:{bad}@{MANAGEMENT_AT}", "management"),
        (f"amqp://{nasty_user}:{wrong}@{AMQP_AT}/", f"http://{nasty_user}:{wrong}@{MANAGEMENT_AT}", "parsed"),
    ]
    for amqp, management, said in cases:
        for command in (["plan"], ["plan", "--json"], ["apply"], ["drift"]):
            for env, options in (
                ({"PROVISION_AMQP_URL": amqp, "PROVISION_MANAGEMENT_URL": management}, []),
                ({}, ["--amqp-url", amqp, "--management-url", management]),
            ):
                code, output = run([*command, *options, "--retry-seconds", "0", str(topology)], env)
                assert leaked(NASTY, output) == [] and leaked(wrong, output) == [], output
                if said == "AMQP" and command[0] != "apply":
                    continue  # plan reads a missing vhost over HTTP only: it needs no AMQP login
                lines = output.strip().splitlines()
                assert code == 1 and len(lines) == 1 and lines[0].startswith("error:"), (command, output)
                assert said in lines[0] and "internal error" not in output
    assert api("GET", f"vhosts/{quote(vhost_name, safe='')}").status_code == 404  # nothing was written


@pytest.mark.parametrize("secret", ["x", "a", "orders", "1"])
def test_a_user_refusal_masks_the_quoted_secret_and_no_word(secret: str) -> None:
    from provisioner.broker.accounts import _scrubbed
    from provisioner.topology.accounts import Credential

    said = f"management API PUT /api/users/orders answered 400: not base64: {secret!r}; x, a, 1 and orders exist"
    text = _scrubbed(said, Credential(None, secret, "rabbit_password_hashing_sha256"))
    assert text == said.replace(repr(secret), "'***'")


@settings(max_examples=200, deadline=None)
@given(password=PASSWORDS, text=st.text(max_size=60))
def test_redact_leaves_any_text_without_a_url_or_a_password_field_alone(password: str, text: str) -> None:
    """Masking never depends on what the text holds besides credential places: no oracle for the password."""
    assume("://" not in text and "password" not in text.lower() and "passwd" not in text.lower())
    assert redact(text, [password]) == text
    assert redact(f"+ exchange {password}  (topic)", [password]) == f"+ exchange {password}  (topic)"
