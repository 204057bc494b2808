"""Helpers for vLLM Module 1.6, Model Loading and Caching.

They run real vLLM and the real Hugging Face Hub client; they hide plumbing (ports, env vars, log parsing), never
the call a lesson teaches."""

__version__ = "0.1.0"
