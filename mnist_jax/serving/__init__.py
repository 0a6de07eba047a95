"""The draw-a-digit web page: a stdlib HTTP server, its page, and a load test."""
