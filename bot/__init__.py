"""Atelier: a self-hosted, Midjourney-style image bot for Discord.

`bot/` is the core (settings, store, credits, queue, engine) and knows nothing about Discord;
`cogs/` is the thin Discord layer on top of it.
"""
