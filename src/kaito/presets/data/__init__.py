"""Packaged catalog data (models.yaml, skus.yaml); a package so the wheel includes the YAML files."""
