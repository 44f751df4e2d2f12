package repository

// OnWriter runs statement on the writer's connection, for the tests that
// make the database refuse writes as a full disk or a read-only server does.
func OnWriter(db *DB, statement string) error { return db.writer.Exec(statement).Error }

// PostgresSchema creates an empty schema for t and returns a DSN whose
// connections use it; the schema is dropped when t ends.
var PostgresSchema = postgresSchema
