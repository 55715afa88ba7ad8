"""``python -m earthcast.cli`` (also how Lightning re-launches DDP worker processes)."""

from earthcast.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
