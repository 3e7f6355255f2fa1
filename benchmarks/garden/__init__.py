"""The garden loop and its scale: the review loop's gain, pipeline costs, training at 10x, `bunga monitor` on large logs."""
