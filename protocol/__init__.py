"""Coffer's wire formats, shared by the center, the device and the terminal (DESIGN.md "Wire formats").

High-level recipes live in the public modules (`hpke`, `stream`, `jws`, `messages`, `pricing`, `problems`);
raw primitives sit in private modules that HTTP handlers never import.
"""

__all__ = ["__version__"]
__version__ = "0.1.0"
