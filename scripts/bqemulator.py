#!/usr/bin/env python3
"""Install and run bqemulator, the local BigQuery emulator used by the integration tests.

bqemulator needs a newer fastapi than Airflow allows, so it lives in its own venv under the
git-ignored ``.cache/bqemulator/`` of this repository, built with ``uv`` from the pinned
``scripts/bqemulator-requirements.txt``. Reruns are a no-op once the venv matches the pins.

    python scripts/bqemulator.py install             # create or refresh the venv, print its path
    python scripts/bqemulator.py start [--port N]    # install if needed, then serve in the foreground

``start`` replaces itself with the emulator process (``exec``), so whoever started it can stop
it by its pid or process group. Point the package at it with
``PRICE_ALCHEMY_WAREHOUSE=bigquery PRICE_ALCHEMY_BIGQUERY_API_ENDPOINT=http://127.0.0.1:N``.

Two things keep it offline: bqemulator loads DuckDB's ``spatial`` extension at start and would
download it, so the pins include ``duckdb-extension-spatial`` (and the duckdb it was built for)
and the extension is installed into a private ``HOME`` inside the cache; the optional ``avro``
extension download is switched off with ``BQEMU_ENABLE_FORMAT_EXTENSIONS=false``.
Only the standard library is used, so any Python 3.11+ can run this script.
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
REQUIREMENTS = ROOT / "scripts" / "bqemulator-requirements.txt"
CACHE = ROOT / ".cache" / "bqemulator"
VENV = CACHE / "venv"
HOME = CACHE / "home"  # private HOME: DuckDB keeps its extensions under ~/.duckdb
STAMP = VENV / ".requirements-sha256"
PYTHON_VERSION = "3.11"

_INSTALL_SPATIAL = """
import pathlib, duckdb, duckdb_extension_spatial as pkg
path = next(pathlib.Path(pkg.__file__).parent.glob("extensions/*/spatial.duckdb_extension"))
con = duckdb.connect()
con.execute(f"INSTALL '{path}'")
con.execute("LOAD spatial")
"""


def _uv() -> str:
    found = shutil.which("uv") or shutil.which("uv", path=str(Path(sys.executable).parent))
    if not found:
        raise SystemExit("bqemulator.py needs `uv` on PATH (pip install uv)")
    return found


def _fingerprint() -> str:
    digest = hashlib.sha256(REQUIREMENTS.read_bytes())
    digest.update(PYTHON_VERSION.encode())
    return digest.hexdigest()


def venv_bin(name: str) -> Path:
    return VENV / "bin" / name


def emulator_env() -> dict[str, str]:
    """Environment for the emulator process: private HOME, no extension downloads."""
    env = dict(os.environ)
    env["HOME"] = str(HOME)
    env["BQEMU_ENABLE_FORMAT_EXTENSIONS"] = "false"
    env.pop("PYTHONPATH", None)
    env.pop("VIRTUAL_ENV", None)
    return env


def ensure_installed(*, quiet: bool = True) -> Path:
    """Create or refresh the emulator venv when the pins changed; return the venv path."""
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / ".lock", "w") as lock:  # two test sessions may start at once
        fcntl.flock(lock, fcntl.LOCK_EX)
        if STAMP.exists() and STAMP.read_text() == _fingerprint() and venv_bin("bqemulator").exists():
            return VENV
        uv = _uv()
        flags = ["--quiet"] if quiet else []
        subprocess.run(
            [uv, "venv", *flags, "--allow-existing", "--python", PYTHON_VERSION, str(VENV)], check=True
        )
        subprocess.run(
            [uv, "pip", "sync", *flags, "--python", str(venv_bin("python")), str(REQUIREMENTS)], check=True
        )
        HOME.mkdir(parents=True, exist_ok=True)
        subprocess.run([str(venv_bin("python")), "-c", _INSTALL_SPATIAL], check=True, env=emulator_env())
        STAMP.write_text(_fingerprint())
    return VENV


def free_port() -> int:
    """A loopback port that is free right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def command(port: int, *, project: str = "test-project", log_level: str = "warning") -> list[str]:
    """The emulator command line: REST on ``127.0.0.1:port``, gRPC on any free port, in memory."""
    return [
        str(venv_bin("bqemulator")),
        "start",
        "--rest-host=127.0.0.1",
        f"--rest-port={port}",
        "--grpc-host=127.0.0.1",
        "--grpc-port=0",
        "--ephemeral",
        f"--project={project}",
        f"--log-level={log_level}",
        "--log-format=console",
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    sub = parser.add_subparsers(dest="action", required=True)
    sub.add_parser("install", help="create or refresh the emulator venv")
    start = sub.add_parser("start", help="install if needed, then run the emulator in the foreground")
    start.add_argument("--port", type=int, default=0, help="REST port on 127.0.0.1 (0: a free one)")
    start.add_argument("--project", default="test-project", help="default project id")
    start.add_argument("--log-level", default="warning")
    args = parser.parse_args(argv)

    venv = ensure_installed(quiet=True)
    if args.action == "install":
        print(venv)
        return 0
    port = args.port or free_port()
    print(f"bqemulator: http://127.0.0.1:{port}", file=sys.stderr, flush=True)
    cmd = command(port, project=args.project, log_level=args.log_level)
    os.execve(cmd[0], cmd, emulator_env())
    return 0  # not reached


if __name__ == "__main__":
    raise SystemExit(main())
