"""``python -m nadkit`` runs the command-line interface."""

from nadkit.cli import main

if __name__ == "__main__":
    main()
