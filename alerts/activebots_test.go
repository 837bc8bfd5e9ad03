package alerts

import (
	"context"
	"testing"

	"github.com/wopr-network/opsd/internal/docker"
)

// TestActiveBotsWithoutFleet: without coordination the figure is this node's, known only when it
// exports containers and its engine answers.
func TestActiveBotsWithoutFleet(t *testing.T) {
	engine, err := docker.New("unix:///nonexistent/docker.sock")
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if n, ok := ActiveBots(nil, func() bool { return false }, engine)(ctx); ok || n != 0 {
		t.Fatalf("no container exports: (%d, %v), want unknown", n, ok)
	}
	if n, ok := ActiveBots(nil, func() bool { return true }, engine)(ctx); ok || n != 0 {
		t.Fatalf("engine down: (%d, %v), want unknown", n, ok)
	}
}
