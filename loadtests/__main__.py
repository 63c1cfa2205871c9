"""``python -m loadtests loadtest|loadtest-compare ...``."""

from loadtests.cli import main

raise SystemExit(main())
