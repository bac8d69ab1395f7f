"""The Prefect layer: tasks and flows, thin over the plain stage functions."""
