"""The command layer: what every ``python -m checker.NAME`` command shares (the option table,
presets and run files, argument parsing and the guarded entry point).

The top layer: may import every other layer; nothing below imports it.
"""
