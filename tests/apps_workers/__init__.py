"""Apps for test_cli.py, test_workers.py and test_serve_api.py."""
