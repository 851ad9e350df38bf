"""Request and response bodies of the HTTP API, one module per resource as in ``routes/``, declared so the OpenAPI
document is exact."""
