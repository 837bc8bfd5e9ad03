package main

import (
	"github.com/wopr-network/opsd/config"
	"github.com/wopr-network/opsd/internal/layout"
)

// keyLayout is the config's object-key layout (config.Config.Layout).
func keyLayout(cfg *config.Config) (*layout.Layout, error) { return cfg.Layout() }
