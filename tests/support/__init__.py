"""Helpers shared by the test suites (real local servers, definition builders)."""
