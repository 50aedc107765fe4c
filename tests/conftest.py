pytest_plugins = ("kreconcile.testing.pytest_plugin",)
