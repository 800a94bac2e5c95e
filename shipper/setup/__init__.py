"""`shipper setup`: provisions a master or a slave (config, secrets, receiver, units)."""
