package config

import (
	"errors"
	"os"
	"time"
)

// NodeDrillSettings configures the `node_drill` kind: a sample of a node's tenant containers is
// restored into a sandbox on this node and the whole node's restore time is projected.
type NodeDrillSettings struct {
	// FromNode is the node whose backups are drilled (required).
	FromNode string `yaml:"from_node"`
	// Sample containers restored into the sandbox (default 3; 0 means the default).
	Sample int `yaml:"sample"`
	// Parallel is the parallelism a real node restore uses (default 4); the projection divides
	// by it.
	Parallel     int      `yaml:"parallel"`
	Probe        Duration `yaml:"probe"`
	IdentityFile string   `yaml:"identity_file"`
	// RTOTarget is the whole-node objective (default 2h: the runbook's "1-2 h").
	RTOTarget Duration `yaml:"rto_target"`
	RTOBreach string   `yaml:"rto_breach"`
	TempDir   string   `yaml:"temp_dir"`
}

func (d *NodeDrillSettings) setDefaults() {
	setDefault(&d.RTOBreach, "fail")
	setDefault(&d.Sample, 3)
	setDefault(&d.Parallel, 4)
	setDefault(&d.Probe, Duration(5*time.Second))
	setDefault(&d.RTOTarget, Duration(2*time.Hour))
}

func (d *NodeDrillSettings) validate(p string, bad func(path, format string, args ...any)) {
	if d.FromNode == "" {
		bad(p+".from_node", "is required (the node whose container backups are drilled)")
	}
	if d.Sample < 1 || d.Sample > 1000 {
		bad(p+".sample", "must be between 1 and 1000, got %d", d.Sample)
	}
	if d.Parallel < 1 || d.Parallel > 64 {
		bad(p+".parallel", "must be between 1 and 64, got %d", d.Parallel)
	}
	if d.Probe <= 0 || d.Probe > Duration(time.Hour) {
		bad(p+".probe", "must be between 1s and 1h")
	}
	if d.RTOTarget <= 0 {
		bad(p+".rto_target", "must be positive")
	}
	if d.RTOBreach != "fail" && d.RTOBreach != "warn" {
		bad(p+".rto_breach", "must be fail or warn, got %q", d.RTOBreach)
	}
	if d.IdentityFile != "" {
		if _, err := os.Stat(d.IdentityFile); err != nil {
			bad(p+".identity_file", "cannot read %s: %v", d.IdentityFile, errors.Unwrap(err))
		}
	}
}
