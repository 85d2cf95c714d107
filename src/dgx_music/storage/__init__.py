"""Generation history: ORM models, database engines and sessions, migrations, output files."""
