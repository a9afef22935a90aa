"""``python -m polyepo`` runs the command line."""

from polyepo.cli import main

main()
