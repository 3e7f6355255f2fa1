"""Monitoring: the prediction log serving writes, the reference profile training makes, and the
checks `bunga monitor` runs. Serving imports only :mod:`bunga.monitor.log`."""
