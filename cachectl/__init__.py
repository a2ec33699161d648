"""cachectl: administer the caches of Flask-Caching applications from outside the app."""

__version__ = "0.1.0"
