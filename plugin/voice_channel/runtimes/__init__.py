"""Built-in runtimes, registered as default plugins through the same hooks as third-party ones."""
