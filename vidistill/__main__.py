import sys

from vidistill.cli import main

sys.exit(main())
