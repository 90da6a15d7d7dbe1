"""The device API's routes, one module per resource (STYLE.md 13); each calls `DeviceService`."""
