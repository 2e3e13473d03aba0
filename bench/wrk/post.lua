-- A 1 MiB POST body, echoed back by the app (wrk.format adds the Content-Length).
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/octet-stream"
wrk.body = string.rep("p", 1024 * 1024)
