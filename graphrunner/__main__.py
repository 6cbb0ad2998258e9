"""``python -m graphrunner``: the CLI."""

from graphrunner.client._cli import main

main()
