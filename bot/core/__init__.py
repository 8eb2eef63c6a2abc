"""The ground floor: settings, errors, database and tables, schemas, the channel port, clock, templates."""
