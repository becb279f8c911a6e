"""The headless verbs. Each module is imported only when its verb runs, so `ugro --help` stays fast."""
