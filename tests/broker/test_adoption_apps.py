"""Generated Celery apps of every routing form go through export, apply, plan, render and a real worker.

Each app mixes the forms real projects use (routes by name, glob, regex, a list
of (pattern, route) pairs, router functions, classes and strings, queues on the
task, ``Task.queue``, task-level exchange and routing key, the default queue),
set through a settings class, a dict or a ``CELERY_`` namespace. The worker,
started from the rendered config, must run one task of every kind sent by the
original app and one sent with the rendered config, and leave no message behind.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from adoption import adopt
from celery.app.routes import MapRoute
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from rabbit import fresh_vhost

FORMS = (
    "default",
    "name",
    "glob",
    "regex",
    "pairs",
    "router_function",
    "router_string",
    "router_class",
    "task_queue",
    "class_queue",
    "task_exchange",
    "headers",  # a queue of its own behind a headers exchange that matches Celery's `task` header
)
STYLES = ("class", "dict", "namespace")
REGEX_TAIL = r"\.t.*"  # a regex route: p3\.t.* (tasks: cannot hold it)


@dataclass(frozen=True)
class GeneratedQueue:
    name: str
    exchange: str
    exchange_type: str
    routing_key: str
    arguments: dict[str, Any]


@dataclass(frozen=True)
class GeneratedTask:
    name: str
    form: str
    queue: str  # where the app sends it


@dataclass(frozen=True)
class GeneratedApp:
    queues: tuple[GeneratedQueue, ...]
    tasks: tuple[GeneratedTask, ...]
    default_queue: str | None  # None: Celery's own 'celery', never named by the app
    style: str
    table_order: tuple[str, ...]

    def default(self) -> str:
        return self.default_queue or "celery"


@st.composite
def apps(draw: st.DrawFn) -> GeneratedApp:
    count = draw(st.integers(2, 4))
    queues = []
    for index in range(count):
        exchange_type = draw(st.sampled_from(["direct", "topic", "fanout"]))
        classic = st.fixed_dictionaries(
            {},
            optional={
                "x-max-priority": st.integers(1, 10),
                "x-message-ttl": st.just(600000),
                "x-dead-letter-exchange": st.just(""),
            },
        )
        quorum = st.fixed_dictionaries({"x-queue-type": st.just("quorum"), "x-delivery-limit": st.integers(1, 5)})
        arguments = draw(st.one_of(classic, quorum))
        if "x-dead-letter-exchange" in arguments:
            arguments["x-dead-letter-routing-key"] = f"q{index}.dead"
        shared = draw(st.booleans()) and exchange_type == "topic"
        exchange = "events" if shared else f"x{index}"
        queues.append(GeneratedQueue(f"q{index}", exchange, exchange_type, f"k{index}", arguments))
    default_queue = draw(st.sampled_from([None, "q0"]))
    forms = draw(st.lists(st.sampled_from(FORMS), min_size=4, max_size=8))
    tasks = []
    for index, form in enumerate(forms):
        target = draw(st.sampled_from([q.name for q in queues]))
        if form == "default":
            target = default_queue or "celery"
        elif form == "headers":
            target = f"h{index}"
        tasks.append(GeneratedTask(f"p{index}.tasks.run", form, target))
    order = draw(st.permutations(["map", "pairs", "function", "string", "class"]))
    return GeneratedApp(tuple(queues), tuple(tasks), default_queue, draw(st.sampled_from(STYLES)), tuple(order))


def _queue_source(queue: GeneratedQueue) -> str:
    key = queue.routing_key if queue.exchange_type != "topic" else f"{queue.routing_key}.#"
    return (
        f"    Queue({queue.name!r}, Exchange({queue.exchange!r}, type={queue.exchange_type!r}), "
        f"routing_key={key!r}, queue_arguments={queue.arguments!r}),"
    )


def named(app: GeneratedApp, prefix: str) -> GeneratedApp:
    """The app with every task name prefixed: Celery shares tasks of one name across the apps of a process."""
    tasks = tuple(GeneratedTask(prefix + t.name, t.form, t.queue) for t in app.tasks)
    return GeneratedApp(app.queues, tasks, app.default_queue, app.style, app.table_order)


def app_source(app: GeneratedApp) -> str:
    """The module text of a generated app, in the adoption convention (tests/adoption.py)."""
    by_form: dict[str, list[GeneratedTask]] = {form: [] for form in FORMS}
    for task in app.tasks:
        by_form[task.form].append(task)
    name_map = {t.name: t.queue for t in by_form["name"] + by_form["headers"]}
    glob_map = {t.name.split(".")[0] + ".*": {"queue": t.queue} for t in by_form["glob"]}
    pairs = [(t.name.split(".")[0] + ".*", {"queue": t.queue}) for t in by_form["pairs"]]
    regexes = [(t.name.split(".")[0] + REGEX_TAIL, t.queue) for t in by_form["regex"]]
    tables = {
        "map": f"{{**{name_map!r}, **{glob_map!r}}}",
        "pairs": "["
        + "".join(f"({p!r}, {r!r}), " for p, r in pairs)
        + "".join(f"(re.compile({regex!r}), {queue!r}), " for regex, queue in regexes)
        + "]",
        "function": "route_function",
        "string": "__name__ + '.route_by_string'",
        "class": "LegacyRouter()",
    }
    routes = "(" + ", ".join(tables[name] for name in app.table_order) + ",)"
    queues = "\n".join(_queue_source(q) for q in app.queues)
    for task in by_form["headers"]:
        match = {"x-match": "any", "task": task.name}
        queues += f"\n    Queue({task.queue!r}, Exchange('matches', type='headers'), binding_arguments={match!r}),"
    settings = {
        "task_queues": "[\n" + queues + "\n]",
        "task_routes": routes,
        **({"task_default_queue": repr(app.default_queue)} if app.default_queue else {}),
    }
    lines = [
        "import os",
        "import re",
        "",
        "from celery import Celery, Task",
        "from kombu import Exchange, Queue",
        "",
        "app = Celery('generated', broker=os.environ.get('CELERY_BROKER_URL', 'amqp://localhost//'))",
        "",
        "",
        "def record(name):",
        "    with open(os.environ['OBSERVED'], 'a') as file:",
        "        file.write(name + '\\n')",
        "",
        "",
        f"FUNCTION_ROUTES = { ({t.name: {'queue': t.queue} for t in by_form['router_function']})!r}",
        f"STRING_ROUTES = { ({t.name: t.queue for t in by_form['router_string']})!r}",
        f"CLASS_ROUTES = { ({t.name: {'queue': t.queue} for t in by_form['router_class']})!r}",
        "",
        "",
        "def route_function(name, args, kwargs, options, task=None, **kw):",
        "    return FUNCTION_ROUTES.get(name)",
        "",
        "",
        "def route_by_string(name, args, kwargs, options, task=None, **kw):",
        "    return STRING_ROUTES.get(name)",
        "",
        "",
        "class LegacyRouter:",
        "    def route_for_task(self, task, args=None, kwargs=None):",
        "        return CLASS_ROUTES.get(task)",
        "",
        "",
        *_settings_source(app.style, settings),
        "",
        *_tasks_source(app, by_form),
    ]
    return "\n".join(lines) + "\n"


def _settings_source(style: str, settings: dict[str, str]) -> list[str]:
    """The app's own settings as a class, a dict, or CELERY_-prefixed names; the rendered module when adopted."""
    if style == "class":
        body = ["class Settings:", *(f"    {k} = {v}" for k, v in settings.items())]
        apply = "    app.config_from_object(Settings)"
    elif style == "dict":
        body = ["SETTINGS = {", *(f"    {k!r}: {v}," for k, v in settings.items()), "}"]
        apply = "    app.conf.update(SETTINGS)"
    else:
        body = ["class Namespaced:", *(f"    CELERY_{k.upper()} = {v}" for k, v in settings.items())]
        apply = "    app.config_from_object(Namespaced, namespace='CELERY')"
    return [
        *body,
        "",
        "",
        "if os.environ.get('PROVISION_RENDERED'):",
        "    import provisioner.celery",
        "",
        "    app.config_from_object(os.environ['PROVISION_RENDERED'])",
        "    provisioner.celery.install(app)",
        "else:",
        apply,
    ]


def _tasks_source(app: GeneratedApp, by_form: dict[str, list[GeneratedTask]]) -> list[str]:
    lines = []
    queues = {q.name: q for q in app.queues}
    for index, task in enumerate(app.tasks):
        if task.form == "class_queue":
            lines += [
                f"class Task{index}(Task):",
                f"    name = {task.name!r}",
                f"    queue = {task.queue!r}",
                "",
                "    def run(self):",
                "        record(self.name)",
                "",
                "",
                f"app.register_task(Task{index}())",
                "",
            ]
            continue
        options = ""
        if task.form == "task_queue":
            options = f", queue={task.queue!r}"
        elif task.form == "task_exchange":
            queue = queues[task.queue]
            key = queue.routing_key if queue.exchange_type != "topic" else f"{queue.routing_key}.run"
            options = f", exchange={queue.exchange!r}, routing_key={key!r}"
        lines += [
            f"@app.task(name={task.name!r}{options})",
            f"def task{index}():",
            f"    record({task.name!r})",
            "",
            "",
        ]
    return lines


def exported_route(exported: dict[str, Any], name: str) -> str:
    """Where the exported topology sends a task, by Celery's MapRoute over its tasks (as render writes them)."""
    tasks = exported.get("tasks", {})
    route = MapRoute([(pattern, spec.get("run_on") or spec["queue"]) for pattern, spec in tasks.items()])(name)
    return str(route["queue"]) if route else str(exported["celery"]["default_queue"])


def every_form() -> GeneratedApp:
    """One app with a task of every form (headers and default on their own queues), whatever Hypothesis draws."""
    queues = (
        GeneratedQueue("q0", "x0", "direct", "k0", {"x-max-priority": 5}),
        GeneratedQueue("q1", "events", "topic", "k1", {"x-queue-type": "quorum", "x-delivery-limit": 3}),
        GeneratedQueue("q2", "x2", "fanout", "k2", {"x-message-ttl": 600000}),
    )
    special = {"default": lambda i: "celery", "headers": lambda i: f"h{i}"}
    tasks = tuple(
        GeneratedTask(f"p{i}.tasks.run", form, special.get(form, lambda i: queues[i % 3].name)(i))
        for i, form in enumerate(FORMS)
    )
    return GeneratedApp(queues, tasks, None, "namespace", ("pairs", "function", "map", "string", "class"))


@pytest.mark.broker
@settings(max_examples=2, deadline=None, suppress_health_check=list(HealthCheck), derandomize=False)
@example(app=every_form())  # every form at least once, whatever Hypothesis draws
@given(app=apps())
def test_a_generated_app_is_adopted_whole_and_its_worker_runs_every_task(
    app: GeneratedApp, tmp_path_factory: Any
) -> None:
    folder: Path = tmp_path_factory.mktemp("app")
    module = f"generated_{folder.name.replace('-', '_')}"
    app = named(app, f"{module}_")
    (folder / f"{module}.py").write_text(app_source(app))
    with fresh_vhost("adopt-src") as source, fresh_vhost("adopt-dst") as target:
        adopted = adopt(folder, module, source, target, names=[t.name for t in app.tasks])
    for task in app.tasks:
        assert exported_route(adopted.exported, task.name) == task.queue, (task, adopted.exported)
    for task in app.tasks:
        if task.form.startswith("router_"):
            assert f"task {task.name!r} is routed at publish time by router" in adopted.export_stderr
    assert adopted.ran == {t.name: 2 for t in app.tasks}
