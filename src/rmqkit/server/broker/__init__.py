"""The Broker: request processors over the message store, client and topic tables, registration."""
