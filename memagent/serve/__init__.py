"""`memagent serve`: every agent behind an OpenAI-compatible chat-completions endpoint."""
