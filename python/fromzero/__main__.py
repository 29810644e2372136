"""``python -m fromzero train`` is ``fromzero train``."""
import sys

from .cli import main

sys.exit(main())
