"""Atelier's Discord layer: thin adapters from interactions to the services in `bot/`."""
