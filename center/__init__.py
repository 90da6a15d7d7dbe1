"""Coffer center, selling side (DESIGN.md "Center API"; the patent's ST1–ST3).

Layout: `settings` (one typed settings class), `errors` (the error tree), `keys` (root/signing/payment/data
keys),
`blobs` (blob store), `db` (SQLAlchemy models, engine, Alembic migrations), `media` (kind detection, previews,
bundles), `repository` → `services` (own the transactions) → `api` (FastAPI routes, one problem handler),
`cli` (the `center` command), `demo` (a sample catalog).
"""
