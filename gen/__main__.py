"""``python -m gen``: the same as the ``sofa`` console script."""

import sys

from gen.cli import main


sys.exit(main())
