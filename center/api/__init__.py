"""The center's HTTP API: `create_app(settings)` (center.api.app)."""
