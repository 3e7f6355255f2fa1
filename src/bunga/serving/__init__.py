"""The inference service: FastAPI app, model store with blue/green swaps, web page."""
