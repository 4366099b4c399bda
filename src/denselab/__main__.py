"""`python -m denselab` runs the command-line interface."""

from denselab.cli import main

main()
