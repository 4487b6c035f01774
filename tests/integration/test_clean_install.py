"""``pip install price-alchemy[extra]`` works: the wheel, into a fresh venv, without the lock.

The wheel is built once from a copy of the package (``uv build --wheel``). Each case creates a venv
with ``uv venv --python <interpreter>`` and installs ``<wheel>[extra]`` with ``uv pip install``,
resolving from PyPI ranges (pyproject.toml), never from requirements.txt. Then, in that venv, with
the checkout off ``sys.path``:

- every module the extra covers is imported (core: the package minus ``serving/`` and
  ``monitoring/``; serve: + ``serving/``; monitor: + ``monitoring/``; airflow: + ``monitoring/``,
  ``tasks`` and the DAG files of ``dags/``; all: everything), from the venv, not the checkout;
- ``price-alchemy --help`` runs;
- core only: what the extras bring is absent, and ``serve``/``monitor`` and ``tuning.backend: spark``
  refuse with the pip command;
- spark: ``price-alchemy demo`` with ``tuning.backend: spark`` tunes on Hyperopt's SparkTrials (Spark's
  local mode, this machine's Java);
- serve (and all, on a version where serve is not a case of its own): a tiny model is trained (``price-alchemy demo``, 300 rows, 1 trial) under a
  temporary PRICE_ALCHEMY_HOME, ``price-alchemy serve`` starts on a free port and answers 200 on
  /health/live and /health/ready with model version 1.

Cases: every extra on the interpreter running the tests; ``all`` on the other supported versions
(found on PATH or under pyenv; a missing one skips, or fails under CI). Environment knobs (CI):
PRICE_ALCHEMY_CLEAN_INSTALL_EXTRAS (comma list for this interpreter, default all six) and
PRICE_ALCHEMY_CLEAN_INSTALL_OTHERS (comma list of other versions, default the other two; "" = none).
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
import zipfile
from pathlib import Path, PurePosixPath

import pytest
from real_services import free_port, unavailable

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
SUPPORTED = ("3.11", "3.12", "3.13")
EXTRAS = ("core", "serve", "monitor", "airflow", "spark", "all")
CURRENT = f"{sys.version_info.major}.{sys.version_info.minor}"
START_TIMEOUT_S = 120.0


def _env_list(name: str, default: tuple[str, ...], allowed: tuple[str, ...]) -> list[str]:
    raw = os.environ.get(name)
    values = list(default) if raw is None else [v.strip() for v in raw.split(",") if v.strip()]
    unknown = [v for v in values if v not in allowed]
    if unknown:
        raise ValueError(f"{name}={raw!r}: unknown {unknown}; choose from {', '.join(allowed)}")
    return values


def cases() -> list[tuple[str, str]]:
    extras = _env_list("PRICE_ALCHEMY_CLEAN_INSTALL_EXTRAS", EXTRAS, EXTRAS)
    others = _env_list(
        "PRICE_ALCHEMY_CLEAN_INSTALL_OTHERS", tuple(v for v in SUPPORTED if v != CURRENT), SUPPORTED
    )
    return [(CURRENT, e) for e in extras] + [(v, "all") for v in others if v != CURRENT]


def find_interpreter(version: str) -> str | None:
    """``python3.X`` from PATH (a pyenv shim that refuses is skipped), else the newest under pyenv."""
    candidates = [shutil.which(f"python{version}")]
    root = (
        subprocess.run(["pyenv", "root"], capture_output=True, text=True).stdout.strip()
        if shutil.which("pyenv")
        else ""
    )
    if root:
        candidates += sorted(glob.glob(f"{root}/versions/{version}.*/bin/python{version}"), reverse=True)
    for candidate in filter(None, candidates):
        probe = subprocess.run(
            [candidate, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
            capture_output=True,
            text=True,
        )
        if probe.returncode == 0 and probe.stdout.strip() == version:
            return candidate
    return None


def uv() -> str:
    found = shutil.which("uv", path=str(Path(sys.executable).parent)) or shutil.which("uv")
    if found is None:
        unavailable("uv", "not in the venv nor on PATH")
    return found


def clean_env(**extra: str) -> dict[str, str]:
    """The environment of a user's shell: nothing of ours, no venv, no lock, no PYTHONPATH."""
    drop = ("PRICE_ALCHEMY_", "MLFLOW_", "AIRFLOW", "UV_", "VIRTUAL_ENV", "PYTHONPATH", "PIP_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    env.update(extra)
    return env


def run(args: list[str], cwd: Path, timeout: float = 600, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        args, cwd=cwd, env=clean_env(**env), capture_output=True, text=True, timeout=timeout
    )


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel, built from a copy of the package (other work in the checkout is left alone)."""
    src = tmp_path_factory.mktemp("src")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    shutil.copytree(
        ROOT / "price_alchemy", src / "price_alchemy", ignore=shutil.ignore_patterns("__pycache__")
    )
    out = tmp_path_factory.mktemp("dist")
    done = run([uv(), "build", "--wheel", "--out-dir", str(out), str(src)], cwd=src)
    assert done.returncode == 0, done.stderr
    (built,) = out.glob("price_alchemy-*.whl")
    return built


#: Third-party modules the package imports lazily or asks for by name (uvicorn's loop and http).
LAZY_IMPORTS = {
    "core": [],
    "serve": ["fastapi", "uvicorn", "uvloop", "httptools", "prometheus_client"],
    "monitor": ["evidently", "elasticsearch", "httpx"],
    "airflow": ["airflow.sdk", "airflow.providers.standard.operators.trigger_dagrun", "evidently"],
    "spark": ["pyspark", "pyspark.sql"],
    "all": [
        "uvloop",
        "httptools",
        "prometheus_client",
        "evidently",
        "elasticsearch",
        "airflow.sdk",
        "pyspark",
    ],
}


def modules_of(extra: str, wheel: Path) -> tuple[list[str], list[str]]:
    """(package modules in the wheel, DAG files of the checkout) the extra covers."""
    names = []
    with zipfile.ZipFile(wheel) as archive:
        files = sorted(n for n in archive.namelist() if n.startswith("price_alchemy/") and n.endswith(".py"))
    for file in files:
        rel = PurePosixPath(file).with_suffix("")
        if rel.name == "__main__":
            continue
        parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
        sub = parts[1] if len(parts) > 1 else ""
        wanted = {
            "core": sub not in {"serving", "monitoring"},
            "spark": sub not in {"serving", "monitoring"},
            "serve": sub == "serving",
            "monitor": sub == "monitoring",
            "airflow": sub == "monitoring" or parts[-1] == "tasks",
            "all": True,
        }[extra]
        if wanted:
            names.append(".".join(parts))
    dags = sorted(str(p) for p in (ROOT / "dags").glob("*.py")) if extra in {"airflow", "all"} else []
    return names + LAZY_IMPORTS[extra], dags


IMPORT_ALL = """
import importlib, json, runpy, sys, traceback
modules, dags = json.loads(sys.argv[1])
failed = {}
for name in modules:
    try:
        importlib.import_module(name)
    except Exception:
        failed[name] = traceback.format_exc(limit=1)
for path in dags:
    try:
        runpy.run_path(path)
    except Exception:
        failed[path] = traceback.format_exc(limit=1)
import price_alchemy
print(json.dumps({"failed": failed, "package": price_alchemy.__file__, "count": len(modules) + len(dags)}))
"""


def serve_a_trained_model(venv: Path, work: Path) -> None:
    home = work / "home"
    demo = run(
        [str(venv / "bin" / "price-alchemy"), "demo", "--rows", "300", "--max-evals", "1"],
        cwd=work,
        PRICE_ALCHEMY_HOME=str(home),
    )
    assert demo.returncode == 0, demo.stdout[-3000:] + demo.stderr[-3000:]
    port = free_port()
    log = work / "serve.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [str(venv / "bin" / "price-alchemy"), "serve", "--port", str(port)],
            cwd=work,
            env=clean_env(PRICE_ALCHEMY_HOME=str(home)),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            assert proc.poll() is None, f"serve exited {proc.returncode}: {log.read_text()[-3000:]}"
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health/live", timeout=5) as response:
                    assert response.status == 200
                    break
            except OSError:
                assert time.monotonic() < deadline, (
                    f"no answer in {START_TIMEOUT_S}s: {log.read_text()[-3000:]}"
                )
                time.sleep(0.5)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health/ready", timeout=10) as response:
            body = json.loads(response.read())
        assert response.status == 200
        assert body["model_version"] == "1", body
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)


@pytest.mark.parametrize(("version", "extra"), cases(), ids=[f"py{v}-{e}" for v, e in cases()])
def test_clean_install(version: str, extra: str, wheel: Path, tmp_path: Path) -> None:
    interpreter = find_interpreter(version)
    if interpreter is None:
        unavailable(f"Python {version}", "no python{version} on PATH or under pyenv")
    venv = tmp_path / "venv"
    python = str(venv / "bin" / "python")
    made = run([uv(), "venv", "--quiet", "--python", interpreter, str(venv)], cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    target = str(wheel) if extra == "core" else f"{wheel}[{extra}]"
    started = time.monotonic()
    installed = run([uv(), "pip", "install", "--python", python, target], cwd=tmp_path)
    assert installed.returncode == 0, installed.stderr[-5000:]
    print(f"py{version} {extra}: install {time.monotonic() - started:.1f}s")

    modules, dags = modules_of(extra, wheel)
    started = time.monotonic()
    airflow_home = tmp_path / "airflow"
    imported = run(
        [python, "-c", IMPORT_ALL, json.dumps([modules, dags])],
        cwd=tmp_path,
        AIRFLOW_HOME=str(airflow_home),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        PRICE_ALCHEMY_HOME=str(tmp_path / "home"),
    )
    assert imported.returncode == 0, imported.stderr[-5000:]
    result = json.loads(imported.stdout.strip().splitlines()[-1])
    assert result["failed"] == {}
    assert result["count"] == len(modules) + len(dags) > 0
    assert Path(result["package"]).is_relative_to(venv), result["package"]  # the wheel, not the checkout
    print(f"py{version} {extra}: {result['count']} imports {time.monotonic() - started:.1f}s")

    helped = run([str(venv / "bin" / "price-alchemy"), "--help"], cwd=tmp_path)
    assert helped.returncode == 0, helped.stderr
    assert "serve" in helped.stdout and "train" in helped.stdout

    if extra == "core":
        absent = run(
            # (MLflow brings FastAPI and uvicorn for its own server: not checked here)
            [
                python,
                "-c",
                "import importlib.util as u; print([m for m in ('prometheus_client', 'evidently', "
                "'elasticsearch', 'airflow') if u.find_spec(m)])",
            ],
            cwd=tmp_path,
        )
        assert absent.stdout.strip() == "[]", absent.stdout
        for command, needed in (("serve", "serve"), ("monitor", "monitor"), ("ship", "monitor")):
            refused = run(
                [str(venv / "bin" / "price-alchemy"), command],
                cwd=tmp_path,
                PRICE_ALCHEMY_HOME=str(tmp_path / "h"),
            )
            assert refused.returncode == 1, (command, refused.stdout, refused.stderr)
            assert f"pip install 'price-alchemy[{needed}]'" in refused.stderr, refused.stderr
            assert "Traceback" not in refused.stderr + refused.stdout
    if extra in ("core", "spark"):
        # tuning.backend: spark from the wheel: core refuses with the pip command, spark runs the
        # search on Hyperopt's SparkTrials in Spark's local mode (this machine's Java)
        params = tmp_path / "spark-params.yaml"
        params.write_text("version: 1\ntuning:\n  backend: spark\n  spark_parallelism: 1\n")
        trained = run(
            [str(venv / "bin" / "price-alchemy"), "demo", "--rows", "300", "--max-evals", "2"],
            cwd=tmp_path,
            PRICE_ALCHEMY_HOME=str(tmp_path / "spark-home"),
            PRICE_ALCHEMY_PARAMS_FILE=str(params),
        )
        output = trained.stdout + trained.stderr
        if extra == "core":
            assert trained.returncode != 0 and "pip install 'price-alchemy[spark]'" in output, output[-3000:]
            assert "Traceback" not in output, output[-3000:]
        else:
            assert trained.returncode == 0, output[-5000:]
            assert "tuning on Spark: 1 trials at once" in output, output[-5000:]
    # the API on a trained model: with serve, and with all where serve is not checked on its own
    if extra == "serve" or (extra == "all" and (version, "serve") not in cases()):
        started = time.monotonic()
        serve_a_trained_model(venv, tmp_path)
        print(f"py{version} {extra}: demo + serve {time.monotonic() - started:.1f}s")
