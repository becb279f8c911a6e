"""Jobs: the model and its state machine, the TinyDB store, placement (pure) and the dispatcher."""
