"""One settings model for every role, loaded in layers (later wins):

built-in defaults < a config file (TOML or YAML: ``--config FILE`` or ``$SCRAPERV4_CONFIG``)
< ``SCRAPERV4_<NAME>`` environment variables < command-line flags < keyword arguments in
Python.

>>> from scraperv4.settings import WorkerSettings, load
>>> settings = load(WorkerSettings, environ={"SCRAPERV4_CONCURRENCY": "64"},
...                 overrides={"allow_private_networks": True})
>>> settings.concurrency, str(settings.source("concurrency"))
(64, 'env SCRAPERV4_CONCURRENCY')
>>> str(settings.source("allow_private_networks")), str(settings.source("lease"))
('argument allow_private_networks', 'default')

The CLI, the Python API (:class:`~scraperv4.worker.Worker`,
:class:`~scraperv4.coordinator.Coordinator`, :class:`~scraperv4.autoscale.Autoscaler`,
:func:`~scraperv4.crawl.run_crawl`) and the guide's classes (``scraperv4.scaling.*``) all
read it. ``docs/configuration.md`` lists every setting (``scraperv4 config docs`` writes it).
"""

from __future__ import annotations

from scraperv4.settings._load import (
    CONFIG_ENV,
    DEFAULT,
    ENV_PREFIX,
    ROLE_ENV,
    SettingSpec,
    Source,
    known_variables,
    load,
    read_config_file,
    resolve,
    specs,
    with_overrides,
)
from scraperv4.settings.model import (
    ROLES,
    SECTIONS,
    AutoscalerSettings,
    ClientSettings,
    CoordinatorSettings,
    RunSettings,
    Settings,
    WorkerSettings,
)

__all__ = [
    "CONFIG_ENV",
    "DEFAULT",
    "ENV_PREFIX",
    "ROLES",
    "ROLE_ENV",
    "SECTIONS",
    "AutoscalerSettings",
    "ClientSettings",
    "CoordinatorSettings",
    "RunSettings",
    "SettingSpec",
    "Settings",
    "Source",
    "WorkerSettings",
    "known_variables",
    "load",
    "read_config_file",
    "resolve",
    "specs",
    "with_overrides",
]
