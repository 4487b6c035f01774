"""``price-alchemy serve``: the app under uvicorn, in one process or in N worker processes.

With ``workers`` > 1 uvicorn's supervisor binds the socket and starts N worker processes, each
building its own app through :func:`worker_app` from the same environment (settings come from
``PRICE_ALCHEMY_*`` variables and ``.env``, not from the parent's objects). Workers share the home
safely: each writes its own stream of the request log, model-cache loads are taken in turn
(:mod:`price_alchemy.serving.shared_home`), and their metrics are added up through a
``PROMETHEUS_MULTIPROC_DIR`` made fresh for the run and removed after it.
"""

from __future__ import annotations

import logging
import os
import shutil
import uuid
from pathlib import Path

import uvicorn
from fastapi import FastAPI

from price_alchemy.config import Settings
from price_alchemy.serving.app import create_app

log = logging.getLogger(__name__)

WORKER_APP = "price_alchemy.serving.server:worker_app"
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"  # read by prometheus_client when a worker imports it
WORKERS_ENV = "PRICE_ALCHEMY_SERVE_WORKERS"  # so that workers know how many they are


def run_server(
    settings: Settings, *, host: str | None = None, port: int | None = None, workers: int | None = None
) -> None:
    """Serve until interrupted, with ``workers`` processes (default ``settings.serve_workers``)."""
    workers = workers or settings.serve_workers
    options = {
        "host": host or settings.serve_host,
        "port": port or settings.serve_port,
        "loop": "uvloop",
        "http": "httptools",
        "log_config": None,  # keep the CLI's logging setup (workers set up their own the same way)
        "log_level": settings.log_level.lower(),
        "access_log": False,  # the request events are the access log of the prediction routes
        "timeout_graceful_shutdown": 10,
    }
    if workers == 1:
        uvicorn.run(create_app(settings), workers=1, **options)  # type: ignore[arg-type]
        return
    metrics_dir = None
    os.environ[WORKERS_ENV] = str(workers)  # what each worker sizes its native thread pools by
    if settings.prometheus_multiproc_dir is None:
        metrics_dir = settings.home / "serving" / "metrics" / f"{os.getpid()}-{uuid.uuid4().hex[:6]}"
        metrics_dir.mkdir(parents=True)
        os.environ[MULTIPROC_ENV] = str(metrics_dir)  # inherited by the workers, before they import
    log.info("serving with %d worker processes on one home (%s)", workers, settings.home)
    try:
        uvicorn.run(WORKER_APP, factory=True, workers=workers, **options)  # type: ignore[arg-type]
    finally:
        if metrics_dir is not None:
            shutil.rmtree(metrics_dir, ignore_errors=True)
            os.environ.pop(MULTIPROC_ENV, None)


def worker_app() -> FastAPI:
    """The app of one worker process: the CLI's start-up (logging, home, quiet libraries), then the app."""
    from rich.console import Console
    from rich.logging import RichHandler
    from threadpoolctl import threadpool_limits

    from price_alchemy import runtime
    from price_alchemy.config import get_settings

    settings = get_settings()
    logging.basicConfig(
        level=getattr(logging, settings.log_level),
        format=f"[worker {os.getpid()}] %(message)s",
        handlers=[RichHandler(console=Console(stderr=True), show_path=False)],
    )
    settings, _ = runtime.start(settings)
    # BLAS/OpenMP pools sized for one process would oversubscribe the cores N times over
    threadpool_limits(max(1, (os.cpu_count() or 1) // settings.serve_workers))
    if settings.prometheus_multiproc_dir is not None:
        Path(settings.prometheus_multiproc_dir).mkdir(parents=True, exist_ok=True)
    return create_app(settings)
