"""Helpers the tests share: real servers, a whole running system, HTTP clients."""
