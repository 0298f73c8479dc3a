"""Sub-commands of the `edged` CLI, one module each."""
