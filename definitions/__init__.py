"""The workflow JSON Schema and example workflows, shipped as package data."""
