"""shipper: keeps a spare server ready to take over from a production server."""

__version__ = "0.1.0"
