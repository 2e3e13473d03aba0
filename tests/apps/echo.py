"""Environ echo for any path (JSON, see lab.r_echo), plus every lab route (/hello, /gen, ...)."""

from apps.lab import echo_app as app

application = app
