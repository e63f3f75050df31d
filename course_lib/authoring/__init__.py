"""Developer tools: the exercise generator and the notebook runner."""
