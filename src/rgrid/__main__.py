"""``python -m rgrid`` → the CLI."""

from rgrid.cli import main

main()
