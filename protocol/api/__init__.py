"""Shared HTTP API models (DESIGN.md "Center API"): what the center answers and terminal_cli reads."""
