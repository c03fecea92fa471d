"""Commands after a study: promote the front to compliant runs, reproduce a record."""
