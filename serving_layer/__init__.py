"""The serving layer: FastAPI app factory, routes, and the call into the shared merge + re-rank."""
