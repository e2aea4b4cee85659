"""Real-time scoring service: source -> frame buffer -> windows -> inference engine -> alerts -> subscribers."""
