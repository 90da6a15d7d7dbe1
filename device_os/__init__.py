"""Coffer device_os (DESIGN.md)."""
