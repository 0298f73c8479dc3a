"""Service: the pipeline wiring the stages, the daemon run loop, systemd integration."""
