"""``python -m benchmarks`` (``make bench``): the whole benchmark suite, one table (see suite.py)."""

from benchmarks.suite import main

raise SystemExit(main())
