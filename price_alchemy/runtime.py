"""Process start-up shared by the CLI and the orchestrator tasks.

Logging handlers are the entry point's own (rich for the CLI, Airflow's for tasks); what both need
the same way lives here: quiet third-party loggers, the home tree, the parameters file. The API
server starts in its FastAPI lifespan instead (it reads no parameters file). Nothing here runs at
import time.
"""

from __future__ import annotations

import logging
import warnings

from price_alchemy.config import Settings, get_settings
from price_alchemy.params import Params, load_params

#: Libraries whose INFO logging drowns a task log (Great Expectations alone prints ~200 lines on
#: import). Quietened before the libraries are imported by the step itself.
NOISY_LOGGERS = ("great_expectations", "alembic", "mlflow", "hyperopt", "urllib3", "git", "py7zr")


def quiet_libraries(level: int = logging.WARNING) -> None:
    for name in NOISY_LOGGERS:
        logging.getLogger(name).setLevel(level)
    # skops probes every loaded module while saving a model; under Airflow each probe of a
    # deprecated ``airflow.*`` attribute warns (~1,000 lines per saved model).
    warnings.filterwarnings("ignore", module=r"skops\.io\._utils")


def start(
    settings: Settings | None = None, *, library_level: int = logging.WARNING
) -> tuple[Settings, Params]:
    """Settings (the process-wide ones unless given), the home tree, quiet libraries, parameters."""
    quiet_libraries(library_level)
    settings = settings or get_settings()
    settings.ensure_home()
    return settings, load_params(settings.params_file)
