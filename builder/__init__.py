"""Golden-image builder for a highly available Saleor stack."""

__version__ = "0.1.0"
