"""Coffer terminal_cli (DESIGN.md)."""
