"""Airflow's overhead: the training pipeline through `airflow dags test` vs the same steps by the CLI.

Both runs do the same work on the same data in fresh homes: the synthetic batch the DAG generates
for the logical date (same seed, same ids), validated and loaded into DuckDB, then tuning with the
same budget, final fit, evaluation, registration and promotion.

- CLI: `price-alchemy generate` + `price-alchemy ingest` + `price-alchemy train` (three processes);
- Airflow: `airflow dags test price_alchemy_training <date> -c <conf>` (one process running
  seven tasks in-process), after a one-off `airflow db migrate` reported separately.

The overhead (Airflow minus CLI wall time) targets < 60 s. Timings depend on what else the machine
runs; both are measured in one run, one after the other.

    .venv/bin/python benchmarks/airflow_overhead.py [--rows 2000] [--max-evals 3] [--timeout 15]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent  # the venv running this script
TARGET_OVERHEAD_S = 60.0
LOGICAL_DATE = date(2025, 6, 1)
ID_STRIDE = 10_000_000  # as price_alchemy.tasks: ids of a day's synthetic batch


def environment(home: Path, params_file: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "MLFLOW_", "PRICE_ALCHEMY_"))}
    env.update(
        {
            "PRICE_ALCHEMY_HOME": str(home / "price_alchemy"),
            "AIRFLOW_HOME": str(home / "airflow"),
            "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
            "PYTHONPATH": str(ROOT),  # measure the package of this checkout
            "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
        }
    )
    if params_file:
        env["PRICE_ALCHEMY_PARAMS_FILE"] = str(Path(params_file).resolve())
    return env


def timed(args: list[str], env: dict[str, str], cwd: Path) -> tuple[float, str]:
    started = time.perf_counter()
    proc = subprocess.run(args, env=env, cwd=cwd, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - started
    output = proc.stdout + proc.stderr
    if proc.returncode != 0:
        sys.exit(f"{' '.join(args[:3])} failed ({proc.returncode}):\n{output[-4000:]}")
    return seconds, output


def rmsle(output: str) -> str:
    found = re.findall(r"test RMSLE (\d+\.\d+)", output)
    return found[-1] if found else "?"


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--max-evals", type=int, default=3)
    parser.add_argument("--timeout", type=float, default=15)
    parser.add_argument("--params-file", help="PRICE_ALCHEMY_PARAMS_FILE for both runs")
    args = parser.parse_args()
    budget = ["--max-evals", str(args.max_evals), "--timeout", str(args.timeout)]
    with tempfile.TemporaryDirectory() as tmp:
        cli_home, af_home = Path(tmp) / "cli", Path(tmp) / "airflow"
        cli_home.mkdir()
        af_home.mkdir()

        env = environment(cli_home, args.params_file)
        batch = cli_home / "batch.tsv"
        seed, start_id = LOGICAL_DATE.strftime("%Y%m%d"), str(LOGICAL_DATE.toordinal() * ID_STRIDE)
        steps = [
            [
                "generate",
                "--rows",
                str(args.rows),
                "--seed",
                seed,
                "--start-id",
                start_id,
                "--output",
                str(batch),
            ],
            ["ingest", "--input", str(batch), "--batch-id", f"synthetic_{LOGICAL_DATE:%Y%m%d}"],
            ["train", *budget],
        ]
        cli_seconds, cli_output = 0.0, ""
        for step in steps:
            seconds, output = timed([str(BIN / "price-alchemy"), *step], env, cli_home)
            print(f"  cli {step[0]:<8} {seconds:6.1f} s")
            cli_seconds += seconds
            cli_output += output

        env = environment(af_home, args.params_file)
        migrate_seconds, _ = timed([str(BIN / "airflow"), "db", "migrate"], env, af_home)
        conf = {"rows": args.rows, "max_evals": args.max_evals, "timeout": args.timeout}
        dag_seconds, dag_output = timed(
            [
                str(BIN / "airflow"),
                *("dags", "test", "price_alchemy_training", LOGICAL_DATE.isoformat()),
                *("-c", json.dumps(conf)),
            ],
            env,
            af_home,
        )
        # the run's state as Airflow records it (not a grep of its log)
        _, state = timed(
            [str(BIN / "airflow"), "dags", "state", "price_alchemy_training", LOGICAL_DATE.isoformat()],
            env,
            af_home,
        )
        if not re.search(r"^success\b", state, re.MULTILINE):  # "success, {conf}"
            sys.exit(f"the DAG run did not succeed ({state.strip()[-200:]}):\n{dag_output[-4000:]}")

    overhead = dag_seconds - cli_seconds
    print(f"rows {args.rows}, max_evals {args.max_evals}, timeout {args.timeout:.0f}s")
    print(f"CLI (generate + ingest + train):       {cli_seconds:6.1f} s   test RMSLE {rmsle(cli_output)}")
    print(f"Airflow (dags test, 7 tasks):          {dag_seconds:6.1f} s   test RMSLE {rmsle(dag_output)}")
    print(f"  one-off `airflow db migrate`:        {migrate_seconds:6.1f} s (not counted)")
    verdict = "OK" if overhead < TARGET_OVERHEAD_S else "OVER TARGET"
    print(
        f"Airflow overhead:                      {overhead:6.1f} s   (target < {TARGET_OVERHEAD_S:.0f} s: {verdict})"
    )
    return 0 if overhead < TARGET_OVERHEAD_S else 1


if __name__ == "__main__":
    sys.exit(main())
