package artifact

// PostgresInfo describes a PostgreSQL dump (pg_dump --format=custom).
type PostgresInfo struct {
	Database string `json:"database"`
	// ServerVersion is the server's version ("16.4"), ServerVersionNum its number (160004).
	ServerVersion    string `json:"serverVersion"`
	ServerVersionNum int    `json:"serverVersionNum"`
	// DumpVersion is `pg_dump --version`.
	DumpVersion  string          `json:"dumpVersion"`
	Format       string          `json:"format"` // custom
	DatabaseSize int64           `json:"databaseSize"`
	Tables       []PostgresTable `json:"tables"`
}

// PostgresTable is one table of a dump with the planner's row estimate at dump time (-1: the
// table was never analyzed).
type PostgresTable struct {
	Schema       string `json:"schema"`
	Name         string `json:"name"`
	RowsEstimate int64  `json:"rowsEstimate"`
}
