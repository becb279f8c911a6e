"""The UI-free core: SSH transport, telemetry and jobs. Never imports textual (tests/test_import_hygiene.py)."""
