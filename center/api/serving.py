"""`center serve --workers N`: N uvicorn worker processes sharing one listening socket.

uvicorn's own supervisor (`uvicorn.run(..., workers=N)`) binds the socket in the parent, starts N workers with
multiprocessing's *spawn* (fresh interpreters: no thread, lock or connection inherited), health-checks them,
restarts one that dies, and stops them all on SIGINT/SIGTERM. A spawned worker imports its app by name, so
the parent hands it the settings it resolved (command-line options over `COFFER_CENTER_*`) as JSON in one
environment variable of its children (`SETTINGS_ENV`), and `worker_app` builds the app from them with
`create_app`, as one process would. Migrations and key creation run once in the parent before any worker
starts (`center.cli.app.serve`); each worker only loads the keys. Each worker has its own engine, group
commit, caches and `gc.freeze()` (the app's lifespan); docs/center-commerce.md "Workers" says why every
cache stays correct across processes, and how SQLite's writers of all workers queue (center.db.tx).
"""

from __future__ import annotations

import json
import os
from typing import Any

from fastapi import FastAPI

from center.settings import CenterSettings

SETTINGS_ENV = "COFFER_CENTER_SERVE_SETTINGS"
#: the import string uvicorn's workers load (`factory=True`: called once per worker)
WORKER_APP = "center.api.serving:worker_app"


def settings_for_workers(settings: CenterSettings) -> str:
    """`settings` as JSON that `worker_app` reads back to equal settings (the database URL in clear: it
    goes only to the workers' environment, which only this user can read, as `COFFER_CENTER_DATABASE_URL`
    would)."""
    data: dict[str, Any] = settings.model_dump(mode="json")
    if settings.database_url is not None:
        data["database_url"] = settings.database_url.get_secret_value()
    return json.dumps(data)


def worker_app() -> FastAPI:
    """The app of one worker process, from the settings its parent resolved."""
    from center.api.app import create_app

    given = os.environ.get(SETTINGS_ENV)
    if given is None:
        raise RuntimeError(f"{SETTINGS_ENV} is not set: worker_app runs under `center serve --workers N`")
    return create_app(CenterSettings(**json.loads(given)))
