"""kpdesk: real-time facial landmark detection desktop app and its training toolkit."""

__version__ = "0.1.0"
