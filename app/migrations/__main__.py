"""python -m app.migrations "what changes": a new revision file in versions/,
numbered after the head, for a change to a table or an index in schema.sql."""

from __future__ import annotations

import sys

from alembic import command

from app.migrations import config, head


def main() -> int:
    if len(sys.argv) != 2 or not sys.argv[1].strip():
        print(__doc__, file=sys.stderr)
        return 2
    command.revision(config(), sys.argv[1], rev_id=f"{int(head()) + 1:04d}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
