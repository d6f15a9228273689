"""``python -m gradcheck``: the same command line as the ``gradcheck`` script."""
import sys

from gradcheck.cli import main

sys.exit(main())
