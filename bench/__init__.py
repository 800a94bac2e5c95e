"""Benchmarks of shipper against plain restic, and the dataset generator they and the tests share."""
