"""HTTP and WebSocket: routers, their dependencies, request and response schemas, authentication and the
mapping of domain errors to status codes."""
