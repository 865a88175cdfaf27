"""crest-proxy inside the LiteLLM proxy: the ``CustomGuardrail`` and the screening of its streams."""
