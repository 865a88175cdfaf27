"""The edge: app factory, endpoints, middleware, stream relay, probes, metrics, logs. Nothing imports it."""
