"""The flow on a Dask cluster (prefect-dask) gives the same warehouse as on threads, with the
stages on the cluster's worker processes and the warehouse writes kept in the flow's process."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest

from salesflow.config import Settings
from salesflow.flows.etl import run_etl
from salesflow.manifest import BatchStatus
from salesflow.options import RunOptions
from salesflow.sources.generator import generate_sales
from salesflow.warehouse import DuckDBWarehouse

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("prefect_harness")]

BATCHES = 4
# What must be byte for byte the same: every public table but run times and ids.
SAME = {
    "sales": "SELECT * FROM sales ORDER BY batch_id, source_row",
    "sales_rejected": "SELECT * FROM sales_rejected ORDER BY batch_id, source_row",
    "daily_sales": "SELECT * FROM daily_sales ORDER BY order_date, region, category",
    "batches": "SELECT batch_id, sha256, rows_in, rows_loaded, rows_rejected, amount_loaded, "
    "status, error, contract_version FROM batches ORDER BY batch_id",
}


@pytest.fixture(scope="module")
def cluster() -> Iterator[str]:
    """A local distributed cluster: a scheduler and 2 single-threaded worker processes on
    loopback, as a real cluster would be, only smaller."""
    from distributed import LocalCluster

    with LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        dashboard_address=None,
    ) as local:
        yield local.scheduler_address


@pytest.fixture(scope="module")
def landing(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("landing")
    generate_sales(folder, date(2024, 7, 1), BATCHES, 400, seed=5, dirty_ratio=0.05, fmt="csv")
    return folder


def test_a_dask_cluster_loads_the_same_warehouse_as_threads(
    cluster: str, landing: Path, tmp_path: Path, settings: Settings
) -> None:
    from distributed import Client, get_task_stream

    on_threads = run_etl([landing], settings, RunOptions(accept_rejects=True))
    on_dask_settings = settings.model_copy(
        update={"task_runner": "dask", "dask_address": cluster, "data_dir": tmp_path / "dask"}
    )
    with Client(cluster) as client, get_task_stream(client) as stream:
        on_dask = run_etl([landing], on_dask_settings, RunOptions(accept_rejects=True))

    assert [o.status for o in on_dask.outcomes] == [BatchStatus.LOADED] * BATCHES
    threads, dask = DuckDBWarehouse(on_threads.warehouse), DuckDBWarehouse(on_dask.warehouse)
    for table, query in SAME.items():
        assert dask.fetch(query) == threads.fetch(query), table
    # Each batch's one extract-validate task (which transforms too) ran on the cluster's
    # workers; plan and load (which touch the warehouse) did not.
    ran_on_workers = [task for task in stream.data if task.get("worker")]
    assert len(ran_on_workers) == BATCHES
    assert len({task["worker"] for task in ran_on_workers}) == 2


def test_an_unreachable_scheduler_is_one_line_before_anything_runs(tmp_path: Path) -> None:
    from tests.conftest import COURSE_CSV
    from tests.test_cli import run_in_fresh_process

    result = run_in_fresh_process(
        tmp_path, "run", str(COURSE_CSV), "--dask-address", "tcp://127.0.0.1:1"
    )

    assert result.returncode == 1
    assert "cannot reach the Dask scheduler at tcp://127.0.0.1:1" in result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    assert not (tmp_path / "data" / "warehouse.duckdb").exists()
