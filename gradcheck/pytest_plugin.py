"""pytest plugin for gradcheck (registered as the ``pytest11`` entry point ``gradcheck``).

Placeholder while the plugin is being written: it registers nothing.
"""
