package main

import (
	"fmt"

	"github.com/wopr-network/opsd/config"
	"github.com/wopr-network/opsd/internal/layout"
)

// keyLayout is the object-key layout of a config: every backup job's key template, by kind
// (disabled jobs too: their backups are still in the store).
func keyLayout(cfg *config.Config) (*layout.Layout, error) {
	var t layout.Templates
	add := func(list *[]string, key string) {
		if key != "" {
			*list = append(*list, key)
		}
	}
	for _, j := range cfg.Jobs {
		switch {
		case j.SQLiteBackup != nil:
			add(&t.SQLite, j.SQLiteBackup.Key)
		case j.ContainerExport != nil && j.ContainerExport.ChangedOnly:
			add(&t.Hot, j.ContainerExport.Key)
		case j.ContainerExport != nil:
			add(&t.Nightly, j.ContainerExport.Key)
		case j.DirSnapshot != nil:
			add(&t.Snapshot, j.DirSnapshot.Key)
		case j.PostgresBackup != nil:
			add(&t.Postgres, j.PostgresBackup.Key)
		}
	}
	l, err := layout.New(t)
	if err != nil {
		return nil, fmt.Errorf("key templates: %w", err)
	}
	return l, nil
}
