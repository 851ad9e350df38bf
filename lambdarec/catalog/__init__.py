"""The item catalog and the business rules, one module per job: what an item is and how an upsert is read
(``item``), the request filter expression (``filters``), which items may be shown (``rules``), the rules over a
snapshot's item indices (``view``), catalog changes as events in the log (``events``), upserts (``ingest``), and
what explain says a rule did (``explain``). Pure, except ``ingest``'s two writes.

Nothing is imported here, so the settings can validate a filter (``filters``) without loading the rest.
"""
