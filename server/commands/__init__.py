"""The `perception-llm` subcommands, one module per group, imported only when they run."""
