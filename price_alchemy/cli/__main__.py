"""``python -m price_alchemy.cli``: the same as the ``price-alchemy`` command."""

import sys

from price_alchemy.cli.commands import app

sys.exit(app())
