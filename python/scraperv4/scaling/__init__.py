"""Compatibility layer for scripts written against the ScraperV4 scaling guide.

The guide's modules live here under the same names (``scraperv4.scaling.distributed_queue``,
``scraperv4.scaling.worker``, ``scraperv4.scaling.data_partitioner``,
``scraperv4.scaling.resource_manager``, ...): a seed script changes only its import line.
Each module is a thin layer over the Rust core and documents where it deliberately differs
from the seed (usually: where the seed lost jobs, mocked numbers or blocked).
"""
