"""The fast tier: no servers, no restic, seconds."""
