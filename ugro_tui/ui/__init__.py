"""The Textual app. Only this package imports textual; it turns typed messages from the core into widgets."""
