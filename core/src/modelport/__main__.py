"""``python -m modelport`` runs the CLI."""

from .cli import main

raise SystemExit(main())
