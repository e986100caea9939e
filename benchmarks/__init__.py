"""Measurements that print figures and write JSON (not tests)."""
