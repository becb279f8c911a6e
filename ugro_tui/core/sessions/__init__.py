"""Interactive GPU sessions: a job of kind `session` that holds its GPUs for a person's shell, notebook or editor."""
