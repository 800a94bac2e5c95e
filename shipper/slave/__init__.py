"""Slave side: receives sets, keeps them (retention, check) and promotes one in place."""
