"""Built-in applications (load files) of the emulated card."""
