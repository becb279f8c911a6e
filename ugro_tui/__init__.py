"""ugro: the Unified GPU Resource Orchestrator."""

__version__ = "0.1.0"
