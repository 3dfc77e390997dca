import KairosCLI
