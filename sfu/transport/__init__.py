"""WebRTC transport and the forwarding core. Knows nothing about clinics."""
