"""``lambdarec demo``: the whole loop on embedded defaults (SQLite store and event log, no servers to install).

:mod:`demo.cli` is the command, :mod:`demo.steps` its eight steps, :mod:`demo.workspace` the folder it writes,
:mod:`demo.services` the child processes it starts, :mod:`demo.live` and :mod:`demo.loop` what it shows over HTTP,
:mod:`demo.console` how it prints.
"""
