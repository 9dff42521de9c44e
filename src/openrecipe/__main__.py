"""`python -m openrecipe <verb>`: the single entry point of every stage and tool."""

from openrecipe.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
