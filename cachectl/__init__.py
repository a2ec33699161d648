"""cachectl: administer the caches of Flask-Caching applications from outside the app."""

# The one place the version is written: the build reads it (pyproject.toml's dynamic
# version), `cachectl --version` prints it, and CHANGELOG.md's latest release must name it.
__version__ = "0.1.0"
