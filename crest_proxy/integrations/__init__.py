"""Integrations with other gateways (LiteLLM)."""
