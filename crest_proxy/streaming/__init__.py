"""Stream dialects: how chat/completions chunks and Responses API events carry text, and SSE framing.

Pure over event payloads: ``server.relay`` owns the upstream stream, the hold-back lives in
``screening.holdback``. Nothing here imports a web framework or an HTTP client.
"""
