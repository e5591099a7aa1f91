"""`python -m genlab.cli`."""

from genlab.cli.app import main

main()
