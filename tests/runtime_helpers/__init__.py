"""Helpers for the servicekit runtime tests: a tiny JSON-over-gRPC service that needs no generated code."""
