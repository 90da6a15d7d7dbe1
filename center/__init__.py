"""Coffer center (DESIGN.md)."""
