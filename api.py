"""Old entry point kept for people who know it: `uvicorn api:app` serves bunga's API."""

from bunga.serving.app import create_app

app = create_app()
