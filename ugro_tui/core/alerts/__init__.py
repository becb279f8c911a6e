"""Events and alerts: what happened to jobs, nodes and GPUs, kept, shown and sent to a notify command."""
