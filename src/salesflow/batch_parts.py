"""A large batch validated in parts: cut by region, validated side by side, put back together.

The parts are ordinary staged batches in the batch's staging folder; merging them gives the
files and counts of the whole batch, so the load cannot tell it was split.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from decimal import Decimal
from operator import attrgetter

import polars as pl

from salesflow.manifest import BatchManifest
from salesflow.staged_files import require_staged


def split_by_region(manifest: BatchManifest) -> list[BatchManifest]:
    """Cut a staged batch into one part per region, to validate side by side.

    Exact copies of a record share its region text, so the within-batch duplicate check gives
    the same answer per part as over the whole batch; parts keep their source rows. Regions
    are compared as validation compares them: trimmed, blank equal to empty. The parts live
    in the batch's staging folder; the whole raw file stays for the load's own checks.
    """
    if manifest.skipped or "region" not in manifest.column_map:
        return [manifest]
    require_staged(manifest, manifest.raw_path)
    region = pl.col(manifest.column_map["region"]).str.strip_chars().fill_null("")
    raw = pl.read_parquet(manifest.raw_path, glob=False).with_columns(region.alias(_PART_KEY))
    pieces = raw.partition_by(_PART_KEY, maintain_order=True, as_dict=True)
    parts = []
    for number, (key, rows) in enumerate(sorted(pieces.items(), key=lambda item: item[0])):
        part = manifest.model_copy(
            update={
                "staging_dir": manifest.raw_path.parent / "parts" / f"{number:04d}",
                "part": str(key[0]),
                "rows_in": rows.height,
            }
        )
        part.raw_path.parent.mkdir(parents=True, exist_ok=True)
        rows.drop(_PART_KEY).write_parquet(part.raw_path, compression="lz4")
        parts.append(part)
    return parts


_PART_KEY = "__part"


def merge_parts(manifest: BatchManifest, parts: list[BatchManifest]) -> BatchManifest:
    """Put the validated parts of a split batch back together, in source row order, as the
    files and counts of the whole batch: the load cannot tell it was split."""
    if len(parts) == 1 and parts[0].part is None:
        return parts[0]
    for path_of in _MERGED_FILES:
        paths = [path_of(part) for part in parts]
        require_staged(manifest, *paths)
        pl.scan_parquet(paths, glob=False).sort("source_row").sink_parquet(
            path_of(manifest), compression="lz4"
        )
    return manifest.model_copy(
        update={
            "rows_valid": sum(part.rows_valid for part in parts),
            "rows_rejected": sum(part.rows_rejected for part in parts),
            "amount": sum((part.amount for part in parts), Decimal(0)),
            "reason_counts": _summed(part.reason_counts for part in parts),
            "odd_counts": _summed(part.odd_counts for part in parts),
        }
    )


# The staged files merge_parts puts together, each read off a manifest.
_MERGED_FILES = (attrgetter("rejected_path"), attrgetter("sales_path"))


def _summed(counts: Iterable[dict[str, int]]) -> dict[str, int]:
    total: Counter[str] = Counter()
    for one in counts:
        total.update(one)
    return dict(total.most_common())
