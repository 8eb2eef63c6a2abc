"""One inbound message: receive and process (gateway), one turn (engine), effects, compliance."""
