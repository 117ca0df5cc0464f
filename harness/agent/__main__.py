"""``python -m movedisk.agent --root DIR``: run the storage agent simulator."""

import sys

from .server import main

sys.exit(main())
