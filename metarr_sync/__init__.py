"""metarr-sync: tell media players exactly what Metarr changed."""

__version__ = "0.1.0"
