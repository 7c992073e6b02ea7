"""Widgets only: the desktop app's window, tabs and views (threads live in ``kpdesk.workers``)."""
