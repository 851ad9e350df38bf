"""Offline replay evaluation: drives the layers' public functions in-process and writes a report."""
