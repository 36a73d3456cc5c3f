"""`python -m service.cli`: the `ferry` command."""

from service.cli import main

main()
