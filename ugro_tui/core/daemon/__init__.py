"""The daemon: one process per master and state dir owns the runtime; everything else is its client."""
