"""evo: evolution of genomes on Ray through EvoTorch, runs, checkpoints and the CLI."""
