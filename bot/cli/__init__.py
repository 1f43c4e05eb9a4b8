"""Command-line front ends of `python -m bot`."""
