"""The generation engine. Importing this package does not import torch.

Public, torch-free: `bot.engine.types` (requests, recipes, results, model profiles) and
`bot.engine.prompt` (the Midjourney-style flag parser). The torch side is `bot.engine.engine.Engine`,
imported explicitly by the queue's workers and the command line.
"""
