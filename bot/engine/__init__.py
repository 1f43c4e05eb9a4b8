"""The generation engine. Importing this package does not import torch.

Torch-free, for cogs, the queue and the credit store:
- `bot.engine.types`: requests, recipes, results, model profiles;
- `bot.engine.prompt`: the Midjourney-style prompt language (`parse_prompt`, `ASPECT_CHOICES`);
- `bot.engine.images`: checking uploads (`load_image`) and making grids;
- `bot.engine.png`: PNGs that carry their recipe (`encode_png`, `read_recipe`, `parameters_text`);
- `bot.engine.profile`: a model's family and defaults from its configs;
- `bot.engine.recipes`: re-running an image from its recipe.

The torch side is `bot.engine.engine.Engine` (with `device`, `encode`, `batching`, `preview` and
`upscalers` beside it), imported explicitly by the queue's workers and the command line.
"""
