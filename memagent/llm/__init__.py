"""LLM backends: the embedded llama.cpp model and OpenAI-compatible servers."""
