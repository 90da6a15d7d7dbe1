"""HTTP pieces the center and the device share (STYLE.md 17: one rule, one place).

- `ranges`: RFC 9110 §14 byte ranges: parse `Range`, format `Content-Range`, map a range of a content
  stream v1 to the whole segments that produce it;
- `problems`: RFC 9457 problem documents from the `protocol.problems` registry, and the mapping of bare HTTP
  statuses and request-validation errors onto it;
- `access`: the access-policy table type and the check that every route has a policy;
- `errors`: `HttpProblem` (an exception that is an answer), `RangeNotSatisfiable`, `MissingPolicyError`;
- `asgi`: the one thin adapter to Starlette/FastAPI (responses, the exception mapping, an app's route keys).

Only `asgi` imports a web framework; nothing here is imported by `protocol/__init__`, so the terminal never
loads it.
"""
