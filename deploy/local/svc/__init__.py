"""Stdlib-only tools behind ``deploy/local/services``, one module per job; ``svctool.py`` is their command line.

- :mod:`svc.templates`: fill ``@KEY@`` placeholders of a config template; a Kafka cluster id;
- :mod:`svc.supervisor`: detached launch into a session of its own, is-it-ours checks, the session's pids, port checks;
- :mod:`svc.wire`: the byte reader both probes share;
- :mod:`svc.cql` and :mod:`svc.kafka`: readiness probes speaking just enough of the CQL native protocol v4 and the
  Kafka protocol to prove a server answers a query, without a client library;
- :mod:`svc.wait`: wait until several services answer, or say which did not and show their logs.
"""
