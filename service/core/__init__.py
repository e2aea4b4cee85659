"""What every stage shares and none owns: settings, persistence (Store), the message bus (Bus) and its
typed messages, metrics, the source policy and the domain errors. Imports nothing else of the service."""
