"""The quality report of a run: what was rejected, why, and whether every batch reconciled.

Pure functions from batch outcomes (and a sample of rejected rows) to Markdown and table rows;
the Prefect layer publishes them as artifacts.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from salesflow.contract import CONTRACT_VERSION
from salesflow.manifest import BatchOutcome, BatchStatus

SAMPLE_ROWS = 20


def batches_table(outcomes: Sequence[BatchOutcome]) -> list[dict[str, Any]]:
    """One row per batch with its reconciliation, for a Prefect table artifact."""
    return [
        {
            "batch": outcome.batch_id,
            "status": str(outcome.status),
            "rows_in": outcome.rows_in if outcome.status == BatchStatus.LOADED else None,
            "rows_loaded": outcome.rows_loaded if outcome.status == BatchStatus.LOADED else None,
            "rows_rejected": outcome.rows_rejected
            if outcome.status == BatchStatus.LOADED
            else None,
            "amount_loaded": str(outcome.amount_loaded)
            if outcome.status == BatchStatus.LOADED
            else None,
            "reconciled": _reconciled(outcome),
            "error": outcome.error or "",
        }
        for outcome in outcomes
    ]


def _reconciled(outcome: BatchOutcome) -> str:
    if outcome.status != BatchStatus.LOADED:
        return "n/a"
    balanced = outcome.rows_in == outcome.rows_loaded + outcome.rows_rejected
    return "yes" if balanced else "NO"


def quality_markdown(
    outcomes: Sequence[BatchOutcome], samples: Sequence[tuple[str, int, list[str], str]]
) -> str:
    """A Markdown quality report: totals, reasons overall and per file, failures, a sample."""
    loaded = [o for o in outcomes if o.status == BatchStatus.LOADED]
    failed = [o for o in outcomes if o.status == BatchStatus.FAILED]
    skipped = [o for o in outcomes if o.status == BatchStatus.SKIPPED]
    rows_in = sum(o.rows_in or 0 for o in loaded)
    rejected = sum(o.rows_rejected for o in loaded)
    amount = sum((o.amount_loaded for o in loaded), Decimal(0))
    rate = f"{rejected / rows_in:.2%}" if rows_in else "n/a"
    lines = [
        "# salesflow data quality",
        "",
        f"Contract version {CONTRACT_VERSION}. Batches: {len(loaded)} loaded, "
        f"{len(skipped)} unchanged, {len(failed)} failed.",
        "",
        "| rows in | loaded | rejected | reject rate | amount loaded |",
        "|---:|---:|---:|---:|---:|",
        f"| {rows_in:,} | {rows_in - rejected:,} | {rejected:,} | {rate} | {amount:,.2f} |",
        "",
    ]
    totals: Counter[str] = Counter()
    for outcome in loaded:
        totals.update(outcome.reason_counts)
    if totals:
        lines += ["## Rejections by reason", "", "| reason | rows |", "|---|---:|"]
        lines += [f"| `{code}` | {count:,} |" for code, count in totals.most_common()]
        lines += ["", "## Rejections by file", ""]
        codes = [code for code, _ in totals.most_common()]
        lines.append("| file | rows in | rejected | rate | " + " | ".join(codes) + " |")
        lines.append("|---|---:|---:|---:|" + "---:|" * len(codes))
        for outcome in loaded:
            file_rate = (
                f"{outcome.rows_rejected / outcome.rows_in:.2%}" if outcome.rows_in else "n/a"
            )
            counts = " | ".join(str(outcome.reason_counts.get(code, 0)) for code in codes)
            lines.append(
                f"| {_cell(outcome.batch_id)} | {outcome.rows_in:,} | "
                f"{outcome.rows_rejected:,} | {file_rate} | {counts} |"
            )
        lines.append("")
    if failed:
        lines += ["## Failed batches", ""]
        lines += [f"- **{_cell(o.batch_id)}**: {_cell(o.error or '')}" for o in failed]
        lines.append("")
    if samples:
        lines += [
            f"## Sample of rejected rows (first {len(samples)})",
            "",
            "| batch | row | reasons | record as read |",
            "|---|---:|---|---|",
        ]
        lines += [
            f"| {_cell(batch)} | {row} | {', '.join(reasons)} | `{_cell(raw, 160)}` |"
            for batch, row, reasons, raw in samples
        ]
    return "\n".join(lines) + "\n"


def _cell(text: str, width: int = 300) -> str:
    """Text safe inside a Markdown table cell."""
    flat = text.replace("\r", " ").replace("\n", " ").replace("|", "\\|").replace("`", "'")
    return flat if len(flat) <= width else flat[: width - 1] + "…"
