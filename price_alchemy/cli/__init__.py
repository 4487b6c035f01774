"""The ``price-alchemy`` command line (Typer): commands in :mod:`.commands`, what they show in :mod:`.screens`."""

from price_alchemy.cli.commands import app

__all__ = ["app"]
