"""Widgets of the IKD Studio window; each can also be run on its own with `python -m`."""
