"""Shared core: used by both roles, imports nothing outside shipper.core."""
