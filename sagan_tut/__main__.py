"""``python -m sagan_tut ...`` is the ``sagan-tut`` command (see :mod:`sagan_tut.cli`)."""
import sys

from .cli import main

sys.exit(main())
