"""Code sync: a job's working tree, content-addressed, copied to its nodes over their SSH connections."""
