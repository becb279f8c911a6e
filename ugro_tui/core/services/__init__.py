"""Services: jobs that run until cancelled, with a port, a health probe, a restart policy and roles."""
