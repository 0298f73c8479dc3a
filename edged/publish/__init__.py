"""Publisher: MQTT client, broker URLs, topics and payloads (with their JSON Schemas)."""
