"""Projects: configuration files, the ``chariots`` command and the ``chariots new`` template."""
