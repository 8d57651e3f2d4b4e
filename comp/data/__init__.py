"""Stage 1, the data: comp.toml, the competition tables and their text, the fixed folds, the demo."""
