"""``python -m earthcast.cli`` (also how Lightning re-launches DDP worker processes)."""

from earthcast.cli import main

raise SystemExit(main())
