"""The edge: HTTP and WebSocket server, the JSON API, signaling, the web client's routes, metrics
and webhooks. Turns requests and messages into commands on the control plane (sfu/calls) and the
clinic domain (sfu/rooms), and renders their notifications. Holds no call state."""
