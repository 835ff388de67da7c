"""Run as a script by tests/adoption.py: one Celery app module, in a process of its own (as in production).

    python adoption_client.py declare|publish MODULE

``CELERY_BROKER_URL`` names the vhost. ``declare`` declares every queue the app
declares (as its workers would on a brownfield broker); ``publish`` sends each of
the module's tasks once with the app's own settings, then once more with the
rendered ones (the module imported again with ``PROVISION_RENDERED`` set). Both
print the module's task names as JSON. A process of its own: Celery shares tasks
of one name across every app of a process, so other modules' apps would send
their tasks too.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
from typing import Any


def load(module_name: str, rendered: bool) -> Any:
    """The module's app, on its own settings or on the rendered ones."""
    os.environ.pop("PROVISION_RENDERED", None)
    if rendered:
        os.environ["PROVISION_RENDERED"] = "celeryconfig"
    sys.modules.pop(module_name, None)
    app = importlib.import_module(module_name).app
    app.conf.broker_url = os.environ["CELERY_BROKER_URL"]
    return app


def main(action: str, module_name: str) -> None:
    app = load(module_name, rendered=False)
    names = sorted(name for name, task in app.tasks.items() if getattr(task, "__module__", "") == module_name)
    if action == "declare":
        queues = dict(app.amqp.queues)
        queues.setdefault(app.amqp.default_queue.name, app.amqp.default_queue)
        with app.connection_for_write() as connection:
            channel = connection.channel()
            for queue in queues.values():
                queue(channel).declare()
    else:
        for rendered in (False, True):
            app = load(module_name, rendered) if rendered else app
            with app.connection_for_write() as connection:
                for name in names:
                    app.tasks[name].apply_async(connection=connection)
    print(json.dumps(names))


if __name__ == "__main__":
    main(*sys.argv[1:3])
