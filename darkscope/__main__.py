"""`python -m darkscope`: the CLI."""

from darkscope.cli import main

main()
