"""The prediction API: FastAPI app, schemas, storage, rules and auth."""
