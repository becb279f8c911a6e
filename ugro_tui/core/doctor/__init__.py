"""The preflight doctor: per-node and cross-node checks of the distributed stack, and a smoke run."""
