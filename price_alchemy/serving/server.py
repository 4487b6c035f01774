"""``price-alchemy serve``: the app under uvicorn, one worker (the model and its cache are per home)."""

from __future__ import annotations

import uvicorn

from price_alchemy.config import Settings
from price_alchemy.serving.app import create_app


def run_server(settings: Settings, *, host: str | None = None, port: int | None = None) -> None:
    """Serve until interrupted. One process: scale out with more replicas behind a load balancer."""
    uvicorn.run(
        create_app(settings),
        host=host or settings.serve_host,
        port=port or settings.serve_port,
        workers=1,
        loop="uvloop",
        http="httptools",
        log_config=None,  # keep the CLI's logging setup
        log_level=settings.log_level.lower(),
        access_log=False,  # the request events are the access log of the prediction routes
        timeout_graceful_shutdown=10,
    )
