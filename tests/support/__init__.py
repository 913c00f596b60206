"""Helpers shared by the test-suite (real servers started on loopback, stopped by PID)."""
