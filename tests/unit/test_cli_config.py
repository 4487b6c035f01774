"""``price-alchemy config`` (what the scripts eval) and ``price-alchemy predict --show`` (the sample table).

The settings are read from a temporary home through the real CLI (Typer's ``CliRunner``); the
shell output is also evaluated by a real ``bash``, since quoting is only right if a shell says so.
"""

from __future__ import annotations

import re
import shlex
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner, Result

from price_alchemy.cli import app
from price_alchemy.config import Settings, get_settings

pytestmark = pytest.mark.unit

Run = Callable[..., Result]
SECRETS = {
    "PRICE_ALCHEMY_API_KEY": "api-key-b7f3e1",
    "PRICE_ALCHEMY_ELASTICSEARCH_PASSWORD": "es-password-9d2c44",
    "PRICE_ALCHEMY_ELASTICSEARCH_API_KEY": "es-api-key-51aa08",
    "PRICE_ALCHEMY_ELASTICSEARCH_URL": "http://elastic:url-password-c0ffee@es.example:9200",
    "MLFLOW_TRACKING_URI": "https://ml:tracking-password-77e1@mlflow.example",
}
SECRET_VALUES = ("api-key-b7f3e1", "es-password-9d2c44", "es-api-key-51aa08", "url-password-c0ffee")


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A home whose path has a space in it; no .env of the repository is read."""
    monkeypatch.chdir(tmp_path)
    return tmp_path / "state dir"


@pytest.fixture
def run(home: Path) -> Run:
    """Invoke the CLI with ``PRICE_ALCHEMY_HOME=home`` plus ``env``; settings read afresh each time."""
    runner = CliRunner()

    def invoke(*args: str, env: dict[str, str] | None = None) -> Result:
        get_settings.cache_clear()
        try:
            variables = {"PRICE_ALCHEMY_HOME": str(home), "COLUMNS": "200", **(env or {})}
            return runner.invoke(app, list(args), env=variables)
        finally:
            get_settings.cache_clear()

    return invoke


def _exports(output: str) -> dict[str, str]:
    """``export NAME=value`` lines -> {NAME: value}, unquoted as a shell would (shlex.split)."""
    exports = {}
    for line in output.splitlines():
        words = shlex.split(line)
        assert words[0] == "export" and len(words) == 2, line
        name, _, value = words[1].partition("=")
        exports[name] = value
    return exports


def _bash(script: str, env: dict[str, str]) -> str:
    done = subprocess.run(["bash", "-c", script], env=env, capture_output=True, text=True, check=True)
    return done.stdout


def test_shell_exports_are_the_resolved_paths(run: Run, home: Path) -> None:
    result = run("config", "--shell")

    assert result.exit_code == 0, result.output
    exports = _exports(result.stdout)
    assert exports["PRICE_ALCHEMY_HOME"] == str(home)
    assert exports["PRICE_ALCHEMY_TRACKING_URI"] == f"sqlite:///{home}/mlflow.db"
    assert exports["PRICE_ALCHEMY_AIRFLOW_HOME"] == str(home / "airflow")
    assert exports["PRICE_ALCHEMY_REQUEST_LOG_DIR"] == str(home / "request-log")
    assert exports["PRICE_ALCHEMY_REPORTS_DIR"] == str(home / "reports")
    assert exports["PRICE_ALCHEMY_SERVE_HOST"] == "127.0.0.1"
    assert exports["PRICE_ALCHEMY_SERVE_PORT"] == "8000"
    assert exports["PRICE_ALCHEMY_API_URL"] == "http://127.0.0.1:8000"
    assert "PRICE_ALCHEMY_ELASTICSEARCH_URL" not in exports  # unset: not exported as empty
    # The embedded store's URI is exported under a name Settings does not read as "explicit server".
    assert "MLFLOW_TRACKING_URI" not in exports


def test_a_home_with_a_space_survives_a_real_shell(run: Run, home: Path) -> None:
    script = run("config", "--shell").stdout

    assert f"export PRICE_ALCHEMY_HOME='{home}'" in script.splitlines()  # quoted, not split
    printed = _bash(
        'eval "$SCRIPT"; printf "%s\\n" "$PRICE_ALCHEMY_HOME" "$PRICE_ALCHEMY_TRACKING_URI"',
        {"SCRIPT": script, "PATH": "/usr/bin:/bin"},
    )
    assert printed.splitlines() == [str(home), f"sqlite:///{home}/mlflow.db"]


def test_evaluated_exports_read_back_as_the_same_settings(
    run: Run, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    exports = _exports(run("config", "--shell", env={"PRICE_ALCHEMY_SERVE_PORT": "9123"}).stdout)
    for name, value in exports.items():
        monkeypatch.setenv(name, value)

    again = Settings(_env_file=None)

    assert again.home == home
    assert again.serve_port == 9123
    assert again.mlflow_tracking_uri is None  # still the embedded store, not an "explicit server"
    assert again.tracking_uri == exports["PRICE_ALCHEMY_TRACKING_URI"]


def test_port_and_host_overrides_come_through(run: Run) -> None:
    env = {"PRICE_ALCHEMY_SERVE_PORT": "9123", "PRICE_ALCHEMY_SERVE_HOST": "0.0.0.0"}

    exports = _exports(run("config", "--shell", env=env).stdout)

    assert exports["PRICE_ALCHEMY_SERVE_PORT"] == "9123"
    assert exports["PRICE_ALCHEMY_SERVE_HOST"] == "0.0.0.0"
    assert exports["PRICE_ALCHEMY_API_URL"] == "http://127.0.0.1:9123"  # wildcard: reach it locally
    assert run("config", "--get", "serve_port", env=env).stdout == "9123\n"


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("serve_port", "8000"),
        ("SERVE_PORT", "8000"),
        ("PRICE_ALCHEMY_SERVE_PORT", "8000"),
        ("airflow_home", "{home}/airflow"),
        ("tracking_uri", "sqlite:///{home}/mlflow.db"),
        ("request-log-dir", "{home}/request-log"),
        ("mlflow_tracking_uri", ""),  # unset: an empty line, so $(...) is empty
    ],
)
def test_get_prints_one_value(run: Run, home: Path, name: str, expected: str) -> None:
    result = run("config", "--get", name)

    assert result.exit_code == 0, result.output
    assert result.stdout == expected.format(home=home) + "\n"


def test_get_refuses_unknown_names_and_secrets(run: Run) -> None:
    unknown = run("config", "--get", "no_such_setting")
    secret = run("config", "--get", "api_key", env=SECRETS)
    both = run("config", "--shell", "--get", "home")

    assert unknown.exit_code == 2 and "no setting named 'no_such_setting'" in unknown.stderr
    assert secret.exit_code == 2 and "api_key is a secret" in secret.stderr
    assert "api-key-b7f3e1" not in secret.output
    assert both.exit_code == 2


def test_secrets_never_appear_even_when_set(run: Run) -> None:
    table = run("config", env=SECRETS)
    shell = run("config", "--shell", env=SECRETS)
    gets = [
        run("config", "--get", name, env=SECRETS)
        for name in ("elasticsearch_url", "mlflow_tracking_uri", "tracking_uri", "elasticsearch_password")
    ]

    for result in (table, shell, *gets):
        for secret in SECRET_VALUES:
            assert secret not in result.output, (result.output, secret)
    table_lines = {line.split("│")[1].strip(): line for line in table.stdout.splitlines() if "│" in line}
    for name in ("api_key", "elasticsearch_password", "elasticsearch_api_key"):
        assert "(set)" in table_lines[name]
    assert "http://elastic:***@es.example:9200" in table_lines["elasticsearch_url"]
    assert gets[0].stdout == "http://elastic:***@es.example:9200\n"
    assert gets[1].stdout == "https://ml:***@mlflow.example\n"
    # A URL carrying a password is not exported at all (a masked one would break the shipper).
    assert "PRICE_ALCHEMY_ELASTICSEARCH_URL" not in _exports(shell.stdout)


def test_an_elasticsearch_url_without_password_is_exported(run: Run) -> None:
    env = {"PRICE_ALCHEMY_ELASTICSEARCH_URL": "http://127.0.0.1:9201"}

    exports = _exports(run("config", "--shell", env=env).stdout)

    assert exports["PRICE_ALCHEMY_ELASTICSEARCH_URL"] == "http://127.0.0.1:9201"


def test_table_lists_every_setting_and_the_derived_paths(run: Run, home: Path) -> None:
    result = run("config", env={"PRICE_ALCHEMY_SERVE_PORT": "9123"})

    assert result.exit_code == 0, result.output
    rows = {
        cells[0]: cells[1:]
        for line in result.stdout.splitlines()
        if len(cells := [c.strip() for c in line.split("│")[1:-1]]) == 3
    }
    assert set(Settings.model_fields) <= set(rows)
    assert rows["serve_port"] == ["PRICE_ALCHEMY_SERVE_PORT", "9123"]
    assert rows["mlflow_tracking_uri"] == ["MLFLOW_TRACKING_URI", "unset"]
    assert rows["airflow_home"] == ["(derived)", str(home / "airflow")]
    assert rows["api_url"] == ["(derived)", "http://127.0.0.1:9123"]


# --- predict --show -------------------------------------------------------------------------------

TEST_TSV_HEADER = "test_id\tname\titem_condition_id\tcategory_name\tbrand_name\tshipping\titem_description\n"
LONG_NAME = "[new] Lululemon Align high-rise leggings 25 inch, black, size 6"  # "[new]": Rich markup


class ConditionModel:
    """Stands in for the champion: a price from the condition, so each row's price is its own."""

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        return 1000 + 1.5 * frame["item_condition_id"].to_numpy(dtype=float)


@pytest.fixture
def new_listings(tmp_path: Path) -> Path:
    rows = [
        f"7001\t{LONG_NAME}\t3\tWomen/Athletic Apparel/Pants\t\t1\tWorn twice.\n",  # no brand
        "7002\tNike running shoes\t1\tMen/Shoes/Athletic\tNike\t0\tNew in box.\n",
        "7003\tBad condition row\t9\tMen/Shoes/Athletic\tNike\t0\tRejected: condition 9.\n",
        "7004\tLeather wallet\t2\tMen/Men's Accessories/Wallets\tCoach\t1\tLike new.\n",
    ]
    path = tmp_path / "new listings.tsv"
    path.write_text(TEST_TSV_HEADER + "".join(rows))
    return path


@pytest.fixture
def stub_model(monkeypatch: pytest.MonkeyPatch) -> None:
    def load_model(settings: Settings, model_uri: str | None = None) -> tuple[Any, str]:
        return ConditionModel(), model_uri or "models:/stub@champion"

    monkeypatch.setattr("price_alchemy.inference.load_model", load_model)


def _table_rows(output: str) -> list[list[str]]:
    """The header and body rows of a Rich table, as stripped cells."""
    return [
        [c.strip() for c in re.split("[│┃]", line)[1:-1]]
        for line in output.splitlines()
        if line.startswith(("│", "┃"))
    ]


@pytest.mark.usefixtures("stub_model")
def test_predict_show_prints_the_sample_table(run: Run, new_listings: Path, tmp_path: Path) -> None:
    output = tmp_path / "out" / "predictions.csv"

    result = run("predict", "--strict", "--input", str(new_listings), "--output", str(output), "--show", "2")

    assert result.exit_code == 0, result.output
    assert list(pd.read_csv(output)["test_id"]) == [7001, 7002, 7004]  # row 7003 rejected
    assert "Sample predictions (2 of 3)" in result.stdout
    assert _table_rows(result.stdout) == [
        ["test_id", "name", "condition", "brand", "suggested price"],
        ["7001", LONG_NAME[:40], "3", "", "$1,004.50"],  # "[new]" kept, not read as a style
        ["7002", "Nike running shoes", "1", "Nike", "$1,001.50"],
    ]


@pytest.mark.usefixtures("stub_model")
def test_predict_without_show_prints_no_table(run: Run, new_listings: Path, tmp_path: Path) -> None:
    result = run("predict", "--strict", "--input", str(new_listings), "--output", str(tmp_path / "p.csv"))

    assert result.exit_code == 0, result.output
    assert "wrote 3 predictions" in result.stdout
    assert "Sample predictions" not in result.stdout and not _table_rows(result.stdout)


def test_a_domain_error_is_printed_as_text_on_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    """Brackets in a message (an extra's name, a list) are text, not rich markup to be eaten."""
    import io

    import typer
    from rich.console import Console

    from price_alchemy.cli import commands
    from price_alchemy.errors import ConfigError

    printed = io.StringIO()
    monkeypatch.setattr(commands, "err", Console(file=printed, width=40))
    with pytest.raises(typer.Exit) as exited, commands._domain_errors():
        raise ConfigError("needs pyspark (pip install 'price-alchemy[spark]'); missing ['pyspark']")
    assert exited.value.exit_code == 1
    assert printed.getvalue() == (
        "error: ConfigError: needs pyspark (pip install 'price-alchemy[spark]'); missing ['pyspark']\n"
    )
