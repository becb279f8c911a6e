"""Live GPU telemetry: the node agent, the samples it sends, and the monitor that keeps one stream per node."""
