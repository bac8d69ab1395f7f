"""Webhook notifications of flow runs: one Slack-compatible JSON message saying what happened.

Nothing here imports Prefect (the flow hook lives in flows/hooks.py). Every text that leaves the
process goes through `redact` first, and a notification that cannot be delivered is a warning,
never a failed run.
"""

from __future__ import annotations

import http.client
import json
import logging
import re
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from pydantic import SecretStr

if TYPE_CHECKING:
    from salesflow.config import Settings

MASK = "***"
SLACK_TEXT_LIMIT = 3000  # Slack rejects a section text longer than this
RETRY_DELAYS = (0.5, 1.5)  # seconds before the 2nd and 3rd attempt

_log = logging.getLogger(__name__)

# postgresql://user:secret@host -> postgresql://user:***@host (the password ends at the last @
# of the authority, so an unescaped @ in it is masked too).
_URL_PASSWORD = re.compile(r"(?P<head>\b[a-z][a-z0-9+.\-]*://[^\s/:@]*:)[^\s/]+(?=@)", re.I)
# A URL with "hook" in it carries its token in the path or query (Slack, Teams, Discord, ...).
_WEBHOOK_URL = re.compile(r"\b(?P<origin>https?://[^\s/?#]*)[^\s\"'<>]*", re.I)
# token=..., password=..., api_key: ... in query strings, libpq DSNs, headers and messages.
_SECRET_PAIR = re.compile(
    r"(?P<key>\b(?:password|passwd|pwd|secret|token|access_token|api_key|apikey|sig|"
    r"signature|authorization)\b\s*[=:]\s*)(?:Bearer\s+)?[^\s&;,'\"]+",
    re.I,
)
# Tokens with a recognisable shape: Slack (xoxb-..., xapp-...), bearer tokens.
_TOKEN = re.compile(r"\b(?:xox[abposr]|xapp)-[A-Za-z0-9-]+|\bBearer\s+[A-Za-z0-9._~+/=-]+")


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """Mask passwords in URLs, webhook URLs and anything shaped like a token or secret value.

    `secrets` are exact values to mask wherever they appear (the configured webhook URL, say),
    which catches what no pattern could guess.
    """
    for secret in sorted((s for s in secrets if s and len(s) >= 4), key=len, reverse=True):
        text = text.replace(secret, MASK)
    text = _URL_PASSWORD.sub(lambda m: m["head"] + MASK, text)
    text = _WEBHOOK_URL.sub(_mask_webhook_url, text)
    text = _SECRET_PAIR.sub(lambda m: m["key"] + MASK, text)
    return _TOKEN.sub(MASK, text)


def _mask_webhook_url(match: re.Match[str]) -> str:
    url = match.group(0)
    if "hook" not in url.lower():
        return url
    return f"{match['origin']}/{MASK}"


def secrets_of(settings: Settings) -> list[str]:
    """Every secret setting's value, and the webhook URL's path and query (its token alone)."""
    values = [getattr(settings, name) for name in type(settings).model_fields]
    found = [value.get_secret_value() for value in values if isinstance(value, SecretStr)]
    if settings.webhook_url is not None:
        parts = urlsplit(settings.webhook_url.get_secret_value())
        found += [part for part in (parts.path, parts.query) if len(part) >= 8]
    return found


def run_failed(state_name: str, counts: Mapping[str, Any]) -> bool:
    """A run failed unless it Completed with no failed batch (a bad file does not fail the
    flow itself: the other files still load)."""
    return state_name != "Completed" or int(counts.get("failed", 0) or 0) > 0


def url_origin(url: str) -> str:
    """scheme://host[:port] of a URL: all of a webhook address that may be logged."""
    parts = urlsplit(url)
    host = parts.hostname or "?"
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme or '?'}://{host}{port}"


def build_payload(
    flow_name: str,
    flow_run_name: str,
    state_name: str,
    message: str | None,
    counts: Mapping[str, int | Decimal | str],
    ui_url: str | None,
    secrets: Iterable[str] = (),
) -> dict[str, Any]:
    """A Slack-compatible message (`text` plus `blocks`) about one flow run, and the same facts
    machine-readable under `salesflow` for receivers that are not Slack.

    The run failed when its state is not Completed or any batch failed; the first line says so.
    `message` and names are redacted; `ui_url` (a link to the run) is built by us, not user text.
    """
    secrets = list(secrets)
    failed_batches = int(counts.get("failed", 0) or 0)
    succeeded = not run_failed(state_name, counts)
    outcome = "succeeded" if succeeded else "failed"
    icon = ":white_check_mark:" if succeeded else ":x:"
    headline = f"{flow_name} run {flow_run_name} {state_name}"
    if state_name == "Completed" and failed_batches:
        headline += f" with {failed_batches} failed batch{'es' if failed_batches > 1 else ''}"
    detail = " ".join((message or "").split())  # one line
    line = redact(f"{headline}: {detail}" if detail else headline, secrets)
    line = _shorten(line, SLACK_TEXT_LIMIT - 100)
    shown_counts = {key: str(value) for key, value in counts.items()}

    blocks: list[dict[str, Any]] = [
        {"type": "section", "text": {"type": "mrkdwn", "text": f"{icon} {_escape(line)}"}}
    ]
    if shown_counts:
        fields = [
            {"type": "mrkdwn", "text": f"*{_escape(key)}*: {_escape(value)}"}
            for key, value in shown_counts.items()
        ]
        blocks.append({"type": "section", "fields": fields[:10]})  # Slack allows 10 fields
    if ui_url:
        blocks.append(
            {
                "type": "context",
                "elements": [{"type": "mrkdwn", "text": f"<{ui_url}|Open in Prefect>"}],
            }
        )
    return {
        "text": line,
        "blocks": blocks,
        "salesflow": {
            "flow": flow_name,
            "flow_run": redact(flow_run_name, secrets),
            "state": state_name,
            "outcome": outcome,
            "message": _shorten(redact(detail, secrets), SLACK_TEXT_LIMIT) or None,
            # numbers stay numbers; money (Decimal) is text, so it stays exact
            "counts": {k: v if isinstance(v, int) else str(v) for k, v in counts.items()},
            "ui_url": ui_url,
        },
    }


def send_webhook(
    url: str,
    payload: Mapping[str, Any],
    timeout: float = 10,
    logger: logging.Logger | logging.LoggerAdapter[Any] | None = None,
) -> None:
    """POST `payload` as JSON; retry connection errors, 429 and 5xx a couple of times.

    A notification is a side show: when it cannot be delivered, a warning naming only the
    webhook's scheme and host is logged and the caller carries on.
    """
    log = logger or _log
    body = json.dumps(payload, default=str).encode("utf-8")
    request = urllib.request.Request(
        url, data=body, method="POST", headers={"Content-Type": "application/json"}
    )
    problem = "not attempted"
    for attempt, delay in enumerate((0.0, *RETRY_DELAYS)):
        time.sleep(delay)
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                response.read()
            return
        except urllib.error.HTTPError as error:
            problem = f"HTTP {error.code} {error.reason}"
            if error.code != 429 and error.code < 500:
                break  # the receiver refused this payload: sending it again will not help
        except (urllib.error.URLError, OSError, http.client.HTTPException) as error:
            # refused, DNS, timeout, reset, a garbled answer: may pass, so try again
            reason = error.reason if isinstance(error, urllib.error.URLError) else error
            problem = str(reason) or type(error).__name__
        except ValueError as error:  # not a URL urllib can send to
            problem = str(error)
            break
        _log.debug("webhook attempt %d failed: %s", attempt + 1, redact(problem, [url]))
    log.warning("webhook notification not sent to %s: %s", url_origin(url), redact(problem, [url]))


def _shorten(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."


def _escape(text: str) -> str:
    """Slack mrkdwn treats &, < and > as control characters."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
