package jobs

import (
	"context"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/wopr-network/opsd/internal/docker"
	"github.com/wopr-network/opsd/internal/docker/dockertest"
	"github.com/wopr-network/opsd/internal/storage"
	"github.com/wopr-network/opsd/internal/storage/local"
)

// renamingEngine is the real engine, except that its Export first renames the container on the
// real engine: the platform renaming a tenant's container as its export begins.
type renamingEngine struct {
	*docker.Client
	to string
}

func (e renamingEngine) Export(ctx context.Context, id string) (io.ReadCloser, error) {
	if err := e.Client.Rename(ctx, id, e.to); err != nil {
		return nil, err
	}
	return e.Client.Export(ctx, id)
}

// TestContainerRenamedAsItsExportBegins: a container renamed between the listing and its export
// fails that export with nothing stored, instead of a backup under the old name whose captured
// spec names the new one (which every restore of that backup refuses: "spec naming another
// container").
func TestContainerRenamedAsItsExportBegins(t *testing.T) {
	dc := dockertest.Client(t)
	r := newRig(t)
	store, _ := local.New(t.TempDir())
	name := exportPrefix + "renamed"
	dockertest.Run(t, dc, name, nil, "echo x > /data/x.txt; sleep 3600")
	j := newExport(t, dc, r.state, store, func(c *ContainerExportConfig) { c.Only = []string{name} })
	j.engine = renamingEngine{Client: dc, to: exportPrefix + "renamed-new"}
	o := r.runner.Run(context.Background(), j, time.Minute, TriggerManual)
	if o.OK() {
		t.Fatal("the export of a container renamed as it began succeeded")
	}
	if len(o.Result.Targets) != 1 || o.Result.Targets[0].Err == nil || !strings.Contains(o.Result.Targets[0].Err.Error(), "was renamed to "+exportPrefix+"renamed-new") {
		t.Fatalf("targets: %+v", o.Result.Targets)
	}
	key := "nightly/n1/" + name + "/" + name + "_20261125.tar.gz"
	if _, err := store.Stat(context.Background(), key); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("the old name's key after the failed export: %v", err)
	}
}
