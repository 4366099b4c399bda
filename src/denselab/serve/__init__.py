"""The prediction service: `app` (FastAPI, /predict, /health, /model) and `static/index.html`, its page."""
