-- A new connection per request: the server is asked to close after each response.
wrk.headers["Connection"] = "close"
