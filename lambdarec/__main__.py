"""``python -m lambdarec``: the same as the ``lambdarec`` command."""

from lambdarec.cli import main

main()
