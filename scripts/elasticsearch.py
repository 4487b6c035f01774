#!/usr/bin/env python3
"""Fetch and run a local single-node Elasticsearch 8.x for development and the tests.

Elastic's download site is unreachable from the project's machines and there is no Docker, so
the server comes from Maven Central: ``org.elasticsearch.distribution.integ-test-zip``, a zip
without a bundled JDK (8.x runs on the machine's Java 17; 9.x would need Java 21). It is checked
against the SHA-512 pinned below and unpacked under the git-ignored ``.cache/elasticsearch/``.

    python scripts/elasticsearch.py fetch                     # download + verify + unzip (idempotent)
    python scripts/elasticsearch.py start [--port 9200] [--data-dir DIR] [--daemon]
    python scripts/elasticsearch.py status                    # the daemon's pid, URL and health
    python scripts/elasticsearch.py stop                      # stops the daemon's process group

The node: security off, ``discovery.type=single-node``, loopback only, a 512 MB heap, disk
watermarks off (a nearly full disk must not turn indices read-only), data and logs under the data
directory (default ``$PRICE_ALCHEMY_HOME/elasticsearch/node``). ``start`` in the foreground
replaces itself with the server launcher (``exec``): whoever started it stops it by its process
group. ``--daemon`` starts it in a new session, waits until the cluster answers, writes
``$PRICE_ALCHEMY_HOME/elasticsearch/node.json`` (pid, URL, data dir) and prints the URL.

Elasticsearch refuses to run as root: under root the node runs as ``nobody`` (``--user``), and
its data directory is handed to that user (its parent folders must be enterable by it). This distribution has only the core modules (no
``rest-root``: ``GET /`` answers 405, so use ``/_cluster/health`` to check it is up; no painless,
no ingest processors). Only the standard library is used.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

VERSION = "8.19.21"
URL = (
    "https://repo1.maven.org/maven2/org/elasticsearch/distribution/integ-test-zip/elasticsearch/"
    f"{VERSION}/elasticsearch-{VERSION}.zip"
)
SHA512 = (
    "cf6b0a93860d329937ae7f913ec5073b0c726c77639764b93fc83a304aa1dd9d"
    "4defcfa2849948eea3b0b47c2065f994908603939fc2a4774c9c4d868c5ec1dd"
)
ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / ".cache" / "elasticsearch"
ES_HOME = CACHE / f"elasticsearch-{VERSION}"
DEFAULT_HEAP = "512m"
START_TIMEOUT_S = 180.0


def state_dir() -> Path:
    """``$PRICE_ALCHEMY_HOME/elasticsearch`` (the pid file and the default data directory)."""
    home = Path(os.environ.get("PRICE_ALCHEMY_HOME", ROOT / ".price_alchemy")).expanduser()
    return home.resolve() / "elasticsearch"


def _sha512(path: Path) -> str:
    digest = hashlib.sha512()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _unzip(archive: Path, target: Path) -> None:
    """Unzip keeping the executable bits (``zipfile`` alone drops them)."""
    with zipfile.ZipFile(archive) as zf:
        for info in zf.infolist():
            extracted = Path(zf.extract(info, target))
            mode = (info.external_attr >> 16) & 0o777
            if mode and not info.is_dir():
                extracted.chmod(mode)


def fetch(*, quiet: bool = False) -> Path:
    """Download, verify and unpack the server once; return its home directory."""
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / ".lock", "w") as lock:  # two test sessions may fetch at once
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (ES_HOME / "bin" / "elasticsearch").exists():
            return ES_HOME
        archive = CACHE / f"elasticsearch-{VERSION}.zip"
        if not archive.exists() or _sha512(archive) != SHA512:
            if not quiet:
                print(f"downloading {URL}", file=sys.stderr, flush=True)
            partial = archive.with_suffix(".part")
            with urllib.request.urlopen(URL, timeout=60) as response, partial.open("wb") as out:
                shutil.copyfileobj(response, out, 1 << 20)
            actual = _sha512(partial)
            if actual != SHA512:
                partial.unlink()
                raise SystemExit(f"checksum mismatch for {URL}: got sha512 {actual}")
            partial.replace(archive)
        unpack = CACHE / ".unpack"
        shutil.rmtree(unpack, ignore_errors=True)
        _unzip(archive, unpack)
        (unpack / ES_HOME.name).replace(ES_HOME)
        shutil.rmtree(unpack, ignore_errors=True)
        archive.unlink()  # 100 MB we no longer need; the unpacked tree is the cache
    return ES_HOME


def java_home() -> Path:
    """ES_JAVA_HOME, else JAVA_HOME, else the JDK of the ``java`` on PATH."""
    for name in ("ES_JAVA_HOME", "JAVA_HOME"):
        if os.environ.get(name):
            return Path(os.environ[name])
    java = shutil.which("java")
    if not java:
        raise SystemExit("Elasticsearch needs Java 17+: no `java` on PATH and no JAVA_HOME")
    return Path(java).resolve().parent.parent


def run_as_user(requested: str | None) -> pwd.struct_passwd | None:
    """The account the node runs as: none to switch to unless we are root (ES refuses root)."""
    if requested:
        return pwd.getpwnam(requested)
    return pwd.getpwnam("nobody") if os.geteuid() == 0 else None


def prepare_node_dir(node_dir: Path, user: pwd.struct_passwd | None) -> None:
    """config (a private copy, ES writes its keystore there), data, logs, tmp; owned by ``user``."""
    for sub in ("data", "logs", "tmp"):
        (node_dir / sub).mkdir(parents=True, exist_ok=True)
    if not (node_dir / "config").exists():
        shutil.copytree(ES_HOME / "config", node_dir / "config")
    if user is not None:
        for path in [node_dir, *node_dir.rglob("*")]:
            os.chown(path, user.pw_uid, user.pw_gid, follow_symlinks=False)


def node_command(port: int, node_dir: Path) -> list[str]:
    return [
        str(ES_HOME / "bin" / "elasticsearch"),
        "-Expack.security.enabled=false",
        "-Ediscovery.type=single-node",
        "-Enetwork.host=127.0.0.1",
        f"-Ehttp.port={port}",
        "-Ecluster.name=price-alchemy-dev",
        f"-Epath.data={node_dir / 'data'}",
        f"-Epath.logs={node_dir / 'logs'}",
        "-Ecluster.routing.allocation.disk.threshold_enabled=false",
    ]


def node_env(node_dir: Path, heap: str) -> dict[str, str]:
    env = dict(os.environ)
    jdk = str(java_home())
    env.pop("JAVA_HOME", None)  # the launcher warns when both are set
    env.update(
        ES_JAVA_HOME=jdk,
        ES_PATH_CONF=str(node_dir / "config"),
        ES_TMPDIR=str(node_dir / "tmp"),
        # small fixed heap; no pre-touch (faster start on a shared 2-core machine)
        ES_JAVA_OPTS=f"-Xms{heap} -Xmx{heap} -XX:-AlwaysPreTouch",
    )
    return env


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def health(url: str, timeout: float = 2.0) -> dict[str, object] | None:
    """Cluster health, or None when the node does not answer."""
    try:
        with urllib.request.urlopen(f"{url}/_cluster/health", timeout=timeout) as response:
            return dict(json.load(response))
    except (urllib.error.URLError, ConnectionError, TimeoutError, ValueError):
        return None


def _drop_privileges(user: pwd.struct_passwd) -> None:
    os.setgroups([])
    os.setgid(user.pw_gid)
    os.setuid(user.pw_uid)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def stop_group(pid: int, grace_s: float = 30.0) -> None:
    """SIGTERM the node's process group (launcher + server JVM), SIGKILL what lingers."""
    for sig, wait in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 10.0)):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            with contextlib.suppress(ChildProcessError):  # reap it if it is our child: a zombie
                os.waitpid(pid, os.WNOHANG)  # would keep the group alive
            try:
                os.killpg(pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.2)


def start(args: argparse.Namespace) -> int:
    fetch()
    node_dir = Path(args.data_dir).expanduser().resolve() if args.data_dir else state_dir() / "node"
    user = run_as_user(args.user)
    prepare_node_dir(node_dir, user)
    port = args.port or free_port()
    url = f"http://127.0.0.1:{port}"
    cmd, env = node_command(port, node_dir), node_env(node_dir, args.heap)
    if not args.daemon:
        print(f"elasticsearch: {url} (data in {node_dir})", file=sys.stderr, flush=True)
        os.chdir(node_dir / "logs")  # the JVM writes gc.log to its working directory
        if user is not None:
            _drop_privileges(user)
        os.execve(cmd[0], cmd, env)
    pid_file = state_dir() / "node.json"
    if pid_file.exists() and _alive(json.loads(pid_file.read_text())["pid"]):
        raise SystemExit(f"a node is already running ({pid_file}); stop it first")
    pid_file.parent.mkdir(parents=True, exist_ok=True)
    with (node_dir / "logs" / "console.log").open("ab") as console:
        proc = subprocess.Popen(
            cmd,
            env=env,
            cwd=node_dir / "logs",
            stdin=subprocess.DEVNULL,
            stdout=console,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            user=user.pw_uid if user else None,
            group=user.pw_gid if user else None,
            extra_groups=[] if user else None,
        )
    pid_file.write_text(json.dumps({"pid": proc.pid, "url": url, "data_dir": str(node_dir)}))
    deadline = time.monotonic() + args.timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pid_file.unlink(missing_ok=True)
            raise SystemExit(f"elasticsearch exited with {proc.returncode}; see {node_dir / 'logs'}")
        if health(url) is not None:
            print(url)
            return 0
        time.sleep(0.5)
    stop_group(proc.pid)
    pid_file.unlink(missing_ok=True)
    raise SystemExit(f"elasticsearch did not answer on {url} within {args.timeout:.0f}s")


def stop(_: argparse.Namespace) -> int:
    pid_file = state_dir() / "node.json"
    if not pid_file.exists():
        print("no node running", file=sys.stderr)
        return 0
    stop_group(int(json.loads(pid_file.read_text())["pid"]))
    pid_file.unlink(missing_ok=True)
    print("stopped", file=sys.stderr)
    return 0


def status(_: argparse.Namespace) -> int:
    pid_file = state_dir() / "node.json"
    if not pid_file.exists():
        print("not running")
        return 1
    info = json.loads(pid_file.read_text())
    state = health(info["url"])
    alive = _alive(int(info["pid"]))
    print(f"pid {info['pid']} ({'alive' if alive else 'gone'}), {info['url']}, data in {info['data_dir']}")
    print(f"cluster health: {state['status'] if state else 'no answer'}")
    return 0 if alive and state else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    sub = parser.add_subparsers(dest="action", required=True)
    sub.add_parser("fetch", help="download, verify and unpack the server (idempotent)")
    run = sub.add_parser("start", help="run a single node (foreground unless --daemon)")
    run.add_argument("--port", type=int, default=0, help="HTTP port on 127.0.0.1 (0: a free one)")
    run.add_argument("--data-dir", help="node directory (config copy, data, logs)")
    run.add_argument("--daemon", action="store_true", help="run in the background, write the pid file")
    run.add_argument("--heap", default=DEFAULT_HEAP, help="JVM heap, e.g. 512m")
    run.add_argument("--user", help="account to run as (default: nobody when root)")
    run.add_argument("--timeout", type=float, default=START_TIMEOUT_S, help="seconds to wait (--daemon)")
    sub.add_parser("stop", help="stop the daemon started with start --daemon")
    sub.add_parser("status", help="is the daemon running and healthy")
    args = parser.parse_args(argv)
    if args.action == "fetch":
        print(fetch())
        return 0
    return {"start": start, "stop": stop, "status": status}[args.action](args)


if __name__ == "__main__":
    raise SystemExit(main())
