"""The no-op job RQ workers run in the queue benchmark (RQ imports jobs by dotted path)."""


def noop() -> None:
    """Do nothing: the benchmark measures the queue, not the job."""
