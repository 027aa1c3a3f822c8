"""Test helpers for modelport and for provider-plugin authors.

``modelport.testing.upstream.FakeUpstream`` is a scriptable OpenAI-compatible server on
127.0.0.1. Nothing here is imported by ``import modelport``.
"""
