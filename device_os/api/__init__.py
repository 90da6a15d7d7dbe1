"""The device's HTTP API (DESIGN.md "Device API"), on top of the device core.

device_os.api.app       create_app(settings, device)
device_os.api.access    every route's access policy and body limit (one table)
device_os.api.gate      Host check, policy, body limits, bearer tokens; the catch-all
device_os.api.problems  the one exception handler (problem+json from protocol.problems)
device_os.api.service   what the routes call: the core plus bearer tokens and the answers' shapes
device_os.api.settings  ServiceSettings (+ listen address), load_settings, EnvironmentFile syntax
"""
