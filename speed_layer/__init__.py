"""The speed layer: consume events, update fresh per-user and per-item state, commit log positions."""
