"""The CLI's commands, registered on `terminal_cli.cli.app` when imported."""

from terminal_cli.commands import device, shop

__all__ = ["device", "shop"]
