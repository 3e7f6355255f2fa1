"""bunga: MLOps for the flowers of Kebun Raya ITERA."""

__version__ = "0.1.0"
