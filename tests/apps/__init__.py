"""WSGI applications the black-box tests serve (importable as `apps.<module>:<callable>`)."""
