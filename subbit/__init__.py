"""subbit: neural-network weights below one bit per weight, decoded in hardware."""

__version__ = "0.1.0"
