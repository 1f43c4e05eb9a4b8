"""`python -m bot bench`: Atelier against plain diffusers on the same jobs (the command is `bot.cli.bench`).

- `sd15`: Stable Diffusion 1.5's architecture from its published configs, random weights, built offline;
- `tokenizer`: the small CLIP-style tokenizer it (and the tests' tiny models) use;
- `baseline`: the plain diffusers sides; `atelier`: Atelier's side through the real queue and engine;
- `measure`: counted FLOPs, the measured matmul peak, memory, pixel differences;
- `report`: the figures, their definitions, the table and the JSON line.
"""
