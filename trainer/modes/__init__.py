"""The CLI's modes, one module per family; each takes a flags.Args."""
