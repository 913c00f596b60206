"""``python -m scraperv4`` is the ``scraperv4`` command."""

from scraperv4.cli import main

raise SystemExit(main())
