"""The test kit: one of each thing tests used to write for themselves.

- ``classifiers.FakeClassifier``: the scriptable classifier (keywords, scores, failures, a gate).
- ``policies.make_policy``: a valid ``Policy`` from a few overrides.
- ``waiting.wait_for`` / ``wait_for_async``: wait for a condition (never a bare sleep as synchronisation).
- ``harness.running_proxy``: crest-proxy on loopback in front of ``upstream.FakeUpstream``;
  ``harness.proxy_app`` builds the app alone (e.g. on an httpx ``MockTransport``) and
  ``harness.LoopbackClient`` serves it for the length of a ``with`` block (``servers.serve``: any ASGI app).
- ``records.make_record``: an audit record.
"""
