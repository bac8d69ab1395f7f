"""salesflow: a sales ETL on Prefect 3 that loads validated, transformed sales into a warehouse."""

__version__ = "0.1.0"
