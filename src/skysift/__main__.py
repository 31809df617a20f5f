"""Allow ``python -m skysift``, which is how the workflow rules call the CLI."""

from skysift.cli import main

raise SystemExit(main())
