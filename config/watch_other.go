//go:build !linux

package config

// watchEvents has no file events here: the watcher polls.
func watchEvents(string) (<-chan struct{}, func()) { return nil, nil }
