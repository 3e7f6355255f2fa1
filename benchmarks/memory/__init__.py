"""Memory: serving RSS and install size against peers, and the clean peak-memory launcher."""
