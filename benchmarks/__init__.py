"""Side-by-side benchmarks of `salesflow run` against a plain DuckDB floor, pandas and dlt.

Run with `.venv/bin/python -m benchmarks.run --help`; see the README's Benchmarks section.
"""
