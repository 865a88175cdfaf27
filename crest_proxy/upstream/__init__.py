"""Upstreams: pooled clients per tenant upstream, header hygiene, error mapping, and the transports.

``pool`` is what the server uses; ``aiohttp_transport`` (OpenAI-compatible URLs) and
``litellm_transport`` (any provider through litellm) are httpx transports, the seam tests replace.
"""
