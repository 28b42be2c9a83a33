"""Shared building blocks: role interfaces, configuration, logging, process utilities."""
