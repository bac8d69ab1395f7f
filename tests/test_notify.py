"""Webhook notifications: real flow runs report to a real HTTP receiver, secrets never leave the
process unmasked (not in the payload, the console, Prefect's logs or parameters), and a webhook
that cannot be reached never fails a run."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from uuid import UUID

import duckdb
import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
from prefect.settings import PREFECT_API_URL, temporary_settings

from salesflow.config import load_settings
from salesflow.errors import UsageError
from salesflow.notify import build_payload, redact, run_failed, send_webhook, url_origin
from salesflow.server import PrefectServer, free_port
from tests.conftest import CANONICAL_HEADER, write_csv
from tests.prefect_server import client_env

WEBHOOK_TOKEN = "SECRET-TOKEN-123"
QUERY_SECRET = "QUERY-SECRET-789"
DSN_PASSWORD = "DSN-PASSWORD-456"
SECRETS = (WEBHOOK_TOKEN, QUERY_SECRET, DSN_PASSWORD)
GOOD_ROW = "O1,2024-01-01,C1,S1,P,C,1,2,N"


@dataclass
class Received:
    path: str
    content_type: str | None
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Receiver:
    """A webhook endpoint on 127.0.0.1 that records every POST and answers `statuses` in turn
    (then 200)."""

    port: int
    requests: list[Received] = field(default_factory=list)
    statuses: deque[int] = field(default_factory=deque)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", 0))
            body = self.rfile.read(length)
            received.requests.append(Received(self.path, self.headers["Content-Type"], body))
            status = received.statuses.popleft() if received.statuses else 200
            self.send_response(status)
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, format: str, *args: Any) -> None:
            pass  # keep the test output clean

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    received = Receiver(port=server.server_address[1])
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield received
    finally:
        server.shutdown()
        server.server_close()


def secret_webhook(base: str) -> str:
    return f"{base}/hook/T000/{WEBHOOK_TOKEN}?token={QUERY_SECRET}"


def run_salesflow(
    server: PrefectServer, cwd: Path, extra_env: dict[str, str], *args: str
) -> subprocess.CompletedProcess[str]:
    """`salesflow -v ARGS` in its own process against the test Prefect server (verbose, so that
    Prefect's run logs are on the console the test checks for secrets)."""
    env = client_env(server, cwd / "prefect-home") | extra_env
    return subprocess.run(
        [sys.executable, "-m", "salesflow.cli", "-v", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def flow_run_record(server: PrefectServer, flow_run_id: UUID) -> tuple[str, str]:
    """The flow run's parameters and log messages as stored by the server, as text."""
    with temporary_settings({PREFECT_API_URL: server.api_url}), get_client(sync_client=True) as c:
        flow_run = c.read_flow_run(flow_run_id)
        logs = c.read_logs(LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id])))
    return json.dumps(flow_run.parameters, default=str), "\n".join(log.message for log in logs)


def run_id_of(payload: dict[str, Any], server: PrefectServer) -> UUID:
    link = payload["salesflow"]["ui_url"]
    assert link.startswith(f"{server.ui_url}/runs/flow-run/")
    return UUID(link.rsplit("/", 1)[1])


def test_a_failed_batch_is_reported_with_its_file_and_no_secret_anywhere(
    prefect_server: PrefectServer, receiver: Receiver, tmp_path: Path
) -> None:
    write_csv(tmp_path / "landing" / "good.csv", CANONICAL_HEADER, GOOD_ROW)
    write_csv(
        tmp_path / "landing" / "bad.csv",
        "order_id,order_ts,sku,quantity,region",
        "O2,2024-01-01,S1,1,N",
    )
    settings_env = {
        "SALESFLOW_WEBHOOK_URL": secret_webhook(receiver.url),
        "SALESFLOW_PREFECT_DB_URL": f"postgresql://prefect:{DSN_PASSWORD}@db.internal/prefect",
        "SALESFLOW_DATA_DIR": str(tmp_path / "data"),
    }

    result = run_salesflow(prefect_server, tmp_path, settings_env, "run", "landing")

    assert result.returncode == 1, result.stderr
    assert len(receiver.requests) == 1
    request = receiver.requests[0]
    assert request.path == f"/hook/T000/{WEBHOOK_TOKEN}?token={QUERY_SECRET}"
    assert request.content_type == "application/json"
    payload = request.json()
    facts = payload["salesflow"]
    assert (facts["flow"], facts["state"], facts["outcome"]) == (
        "salesflow-etl",
        "Completed",
        "failed",
    )
    assert facts["counts"]["batches"] == 2
    assert (facts["counts"]["loaded"], facts["counts"]["failed"]) == (1, 1)
    bad_file = tmp_path / "landing" / "bad.csv"
    assert payload["text"] == (
        f"salesflow-etl run {facts['flow_run']} Completed with 1 failed batch: "
        f"{bad_file}: missing required column 'unit_price' "
        "(found: order_id, order_ts, sku, quantity, region)"
    )
    assert "\n" not in payload["text"]
    assert payload["blocks"][0]["text"]["text"].startswith(":x: salesflow-etl run")
    parameters, logs = flow_run_record(prefect_server, run_id_of(payload, prefect_server))
    assert "missing required column" in logs  # the run's logs did reach the server
    for secret in SECRETS:
        assert secret not in request.body.decode()
        assert secret not in result.stdout + result.stderr
        assert secret not in parameters
        assert secret not in logs


FAILING_FLOW = """
from prefect import flow
from salesflow.flows.hooks import notify_run

@flow(name="salesflow-doomed", on_failure=[notify_run])
def doomed() -> None:
    raise ConnectionError("could not reach postgresql://etl:DSN-PASSWORD-456@db.internal/sales")

print(doomed(return_state=True).name)
"""


def test_a_failed_flow_run_is_reported_with_its_error_and_the_password_masked(
    prefect_server: PrefectServer, receiver: Receiver, tmp_path: Path
) -> None:
    env = client_env(prefect_server, tmp_path / "prefect-home") | {
        "SALESFLOW_WEBHOOK_URL": secret_webhook(receiver.url),
        "SALESFLOW_DATA_DIR": str(tmp_path / "data"),
    }
    result = subprocess.run(
        [sys.executable, "-c", FAILING_FLOW],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["Failed"]
    assert len(receiver.requests) == 1
    payload = receiver.requests[0].json()
    assert payload["salesflow"]["state"] == "Failed"
    assert payload["text"].startswith(
        f"salesflow-doomed run {payload['salesflow']['flow_run']} Failed: "
    )
    assert "could not reach postgresql://etl:***@db.internal/sales" in payload["text"]
    assert DSN_PASSWORD not in receiver.requests[0].body.decode()


def test_successful_runs_are_reported_only_with_notify_on_always(
    prefect_server: PrefectServer, receiver: Receiver, tmp_path: Path
) -> None:
    write_csv(tmp_path / "landing" / "good.csv", CANONICAL_HEADER, GOOD_ROW)
    settings_env = {
        "SALESFLOW_WEBHOOK_URL": secret_webhook(receiver.url),
        "SALESFLOW_DATA_DIR": str(tmp_path / "data"),
    }

    quiet = run_salesflow(prefect_server, tmp_path, settings_env, "run", "landing")
    assert quiet.returncode == 0, quiet.stderr
    assert receiver.requests == []  # notify_on defaults to failure

    # A fresh data dir: the same load again, not a skip.
    always = settings_env | {
        "SALESFLOW_NOTIFY_ON": "always",
        "SALESFLOW_DATA_DIR": str(tmp_path / "data-2"),
    }
    reported = run_salesflow(prefect_server, tmp_path, always, "run", "landing")
    assert reported.returncode == 0, reported.stderr
    assert len(receiver.requests) == 1
    payload = receiver.requests[0].json()
    assert payload["salesflow"]["outcome"] == "succeeded"
    assert payload["salesflow"]["counts"] == {
        "batches": 1,
        "loaded": 1,
        "skipped": 0,
        "failed": 0,
        "rows_in": 1,
        "rows_loaded": 1,
        "rows_rejected": 0,
        "amount_loaded": "2.0000",
    }
    assert payload["text"] == f"salesflow-etl run {payload['salesflow']['flow_run']} Completed"
    assert payload["blocks"][0]["text"]["text"].startswith(":white_check_mark:")


def test_an_unreachable_webhook_is_a_warning_and_the_run_still_succeeds(
    prefect_server: PrefectServer, tmp_path: Path
) -> None:
    write_csv(tmp_path / "landing" / "good.csv", CANONICAL_HEADER, GOOD_ROW)
    closed = free_port()
    settings_env = {
        "SALESFLOW_WEBHOOK_URL": secret_webhook(f"http://127.0.0.1:{closed}"),
        "SALESFLOW_NOTIFY_ON": "always",
        "SALESFLOW_DATA_DIR": str(tmp_path / "data"),
    }

    result = run_salesflow(prefect_server, tmp_path, settings_env, "run", "landing")

    assert result.returncode == 0, result.stderr
    warehouse = tmp_path / "data" / "warehouse.duckdb"
    with duckdb.connect(str(warehouse), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM sales").fetchone() == (1,)
        assert con.execute("SELECT state FROM runs").fetchall() == [("Completed",)]
    console = result.stdout + result.stderr
    assert f"webhook notification not sent to http://127.0.0.1:{closed}: " in console
    for secret in SECRETS:
        assert secret not in console


def test_secret_settings_never_print(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SALESFLOW_WEBHOOK_URL", secret_webhook("https://hooks.example.com"))
    monkeypatch.setenv("SALESFLOW_PREFECT_DB_URL", f"postgresql://u:{DSN_PASSWORD}@db/prefect")

    settings = load_settings()

    shown = repr(settings) + str(settings) + settings.model_dump_json()
    for secret in SECRETS:
        assert secret not in shown
    assert settings.webhook_url is not None
    assert WEBHOOK_TOKEN in settings.webhook_url.get_secret_value()  # still usable
    assert settings.notify_on == "failure"


def test_notify_on_accepts_only_failure_or_always(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SALESFLOW_NOTIFY_ON", "sometimes")

    with pytest.raises(UsageError, match="bad configuration: notify_on: Input should be"):
        load_settings()


# --- redact, payload, delivery ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("postgresql://user:secret@host/db", "postgresql://user:***@host/db"),
        ("postgresql+asyncpg://u:p%40ss@h:5432/d", "postgresql+asyncpg://u:***@h:5432/d"),
        ("at postgres://u:p@ss@db/x failed", "at postgres://u:***@db/x failed"),
        ("https://hooks.slack.com/services/T0/B0/XyZ", "https://hooks.slack.com/***"),
        ("see https://discord.com/api/webhooks/1/abc.", "see https://discord.com/***"),
        (
            "https://x.webhook.office.com/webhookb2/a@b/IncomingWebhook/c/d",
            "https://x.webhook.office.com/***",
        ),
        ("GET /notify?token=abc123&x=1", "GET /notify?token=***&x=1"),
        (
            "host=db user=etl password=s3cr3t dbname=sales",
            "host=db user=etl password=*** dbname=sales",
        ),
        ("Authorization: Bearer eyJhbGciOi.x.y", "Authorization: ***"),
        ("slack token xoxb-123-456-abcdef here", "slack token *** here"),
    ],
)
def test_redact_masks_passwords_webhooks_and_tokens(text: str, expected: str) -> None:
    assert redact(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "sales_2024-01-03.csv: missing required column 'unit_price' (found: order_id, sku)",
        "http://127.0.0.1:4200/runs/flow-run/0b7a1f2c-6d7e-4a4f-9c5e-1f2e3d4c5b6a",
        "/srv/salesflow/data/warehouse.duckdb",
        "postgresql://etl@db/sales",
    ],
)
def test_redact_leaves_ordinary_text_alone(text: str) -> None:
    assert redact(text) == text


def test_redact_masks_exact_secrets_wherever_they_appear() -> None:
    assert redact("the token is Zq8-unguessable!", ["Zq8-unguessable"]) == "the token is ***!"


def test_a_failure_payload_is_one_slack_line_with_counts_and_a_link() -> None:
    payload = build_payload(
        "salesflow-etl",
        "brave-otter",
        "Completed",
        "b.csv: missing required column 'unit_price'\n(found: order_id)",
        {"batches": 2, "loaded": 1, "failed": 1},
        "http://127.0.0.1:4200/runs/flow-run/abc",
    )

    line = (
        "salesflow-etl run brave-otter Completed with 1 failed batch: "
        "b.csv: missing required column 'unit_price' (found: order_id)"
    )
    assert payload["text"] == line
    assert payload["blocks"] == [
        {"type": "section", "text": {"type": "mrkdwn", "text": f":x: {line}"}},
        {
            "type": "section",
            "fields": [
                {"type": "mrkdwn", "text": "*batches*: 2"},
                {"type": "mrkdwn", "text": "*loaded*: 1"},
                {"type": "mrkdwn", "text": "*failed*: 1"},
            ],
        },
        {
            "type": "context",
            "elements": [
                {
                    "type": "mrkdwn",
                    "text": "<http://127.0.0.1:4200/runs/flow-run/abc|Open in Prefect>",
                }
            ],
        },
    ]
    assert payload["salesflow"]["outcome"] == "failed"
    json.dumps(payload)  # serialisable as it is


def test_a_payload_escapes_slack_markup_and_stays_within_slack_limits() -> None:
    payload = build_payload("f", "r", "Crashed", "<!channel> & " + "x" * 5000, {}, None)

    section = payload["blocks"][0]["text"]["text"]
    assert section.startswith(":x: f run r Crashed: &lt;!channel&gt; &amp; xxx")
    assert len(payload["text"]) <= 3000
    assert [block["type"] for block in payload["blocks"]] == ["section"]  # no counts, no link


def test_a_payload_never_carries_a_secret_from_the_message() -> None:
    message = f"postgresql://u:{DSN_PASSWORD}@db/x and https://hooks.slack.com/services/T/B/{WEBHOOK_TOKEN}"

    body = json.dumps(build_payload("f", "r", "Failed", message, {}, None))

    assert DSN_PASSWORD not in body
    assert WEBHOOK_TOKEN not in body
    assert "postgresql://u:***@db/x" in body


@pytest.mark.parametrize(
    ("state", "failed", "expected"),
    [("Completed", 0, False), ("Completed", 2, True), ("Failed", 0, True), ("Crashed", 0, True)],
)
def test_a_run_failed_unless_it_completed_without_failed_batches(
    state: str, failed: int, expected: bool
) -> None:
    assert run_failed(state, {"failed": failed}) is expected


def test_delivery_is_retried_on_a_server_error(receiver: Receiver) -> None:
    receiver.statuses.extend([503])

    send_webhook(f"{receiver.url}/hook", {"text": "hello"})

    assert [request.json() for request in receiver.requests] == [{"text": "hello"}] * 2


def test_a_refused_payload_is_not_retried_and_is_a_warning(
    receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    receiver.statuses.extend([400])

    with caplog.at_level(logging.WARNING, logger="salesflow.notify"):
        send_webhook(secret_webhook(receiver.url), {"text": "hello"})

    assert len(receiver.requests) == 1
    assert caplog.messages == [
        f"webhook notification not sent to {receiver.url}: HTTP 400 Bad Request"
    ]


def test_an_unreachable_webhook_is_retried_then_only_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    url = secret_webhook(f"http://127.0.0.1:{free_port()}")
    started = time.monotonic()

    with caplog.at_level(logging.WARNING, logger="salesflow.notify"):
        send_webhook(url, {"text": "hello"}, timeout=2)

    assert 2 <= time.monotonic() - started < 10  # two retries, then it gives up
    [message] = caplog.messages
    assert message.startswith(f"webhook notification not sent to {url_origin(url)}: ")
    assert "refused" in message.lower()
    for secret in SECRETS:
        assert secret not in message


def test_url_origin_keeps_only_scheme_host_and_port() -> None:
    assert url_origin("https://hooks.slack.com/services/T/B/X?y=1") == "https://hooks.slack.com"
    assert url_origin("http://user:pw@127.0.0.1:8080/hook") == "http://127.0.0.1:8080"
