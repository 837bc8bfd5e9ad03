package docker

import (
	"strings"
	"testing"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/mount"
)

// TestSpecHostAccess: an ordinary tenant spec (its own bridge network, a local named volume, a
// bind under the WOPR_HOME base) asks for nothing; each kind of host access is named.
func TestSpecHostAccess(t *testing.T) {
	roots := []string{"/data/instances"}
	plain := Spec{Name: "tenant_a", HostConfig: &container.HostConfig{NetworkMode: "wopr", Binds: []string{"/data/instances/a:/home", "named:/cache"},
		Mounts:  []mount.Mount{{Type: mount.TypeBind, Source: "/data/instances/a/x", Target: "/x"}, {Type: mount.TypeVolume, Source: "v", Target: "/v"}},
		CapDrop: []string{"ALL"}, SecurityOpt: []string{"no-new-privileges"}},
		Networks: map[string]NetworkSpec{"wopr": {Driver: "bridge"}, "bridge": {Predefined: true}}, Volumes: []VolumeSpec{{Name: "v", Driver: "local"}}}
	if got := plain.HostAccess(roots); len(got) != 0 {
		t.Fatalf("an ordinary spec: %q", got)
	}
	for _, c := range []struct {
		spec Spec
		want string
	}{
		{Spec{HostConfig: &container.HostConfig{Binds: []string{"/data/instances/../../etc:/etc"}}}, "bind mount of /data/instances/../../etc"},
		{Spec{HostConfig: &container.HostConfig{Binds: []string{"/data/instances-other:/x"}}}, "bind mount of /data/instances-other"},
		{Spec{HostConfig: &container.HostConfig{Mounts: []mount.Mount{{Type: mount.TypeBind, Source: "/var/run/docker.sock", Target: "/s"}}}}, "bind mount of /var/run/docker.sock"},
		{Spec{HostConfig: &container.HostConfig{NetworkMode: "container:other"}}, "network namespace container:other"},
		{Spec{HostConfig: &container.HostConfig{IpcMode: "host"}}, "ipc namespace host"},
		{Spec{HostConfig: &container.HostConfig{UsernsMode: "host"}}, "user namespace host"},
		{Spec{HostConfig: &container.HostConfig{SecurityOpt: []string{"apparmor=unconfined"}}}, "security option apparmor=unconfined"},
		{Spec{HostConfig: &container.HostConfig{VolumesFrom: []string{"tenant_b"}}}, "volumes of container tenant_b"},
		{Spec{HostConfig: &container.HostConfig{Resources: container.Resources{DeviceCgroupRules: []string{"c *:* rmw"}}}}, "device rule c *:* rmw"},
		{Spec{Volumes: []VolumeSpec{{Name: "v", Driver: "local", Options: map[string]string{"type": "none", "o": "bind", "device": "/"}}}}, "volume v with driver local"},
		{Spec{Networks: map[string]NetworkSpec{"lan": {Driver: "macvlan"}}}, "network lan with driver macvlan"},
	} {
		if got := strings.Join(c.spec.HostAccess(roots), "; "); !strings.Contains(got, c.want) {
			t.Errorf("want %q, got %q", c.want, got)
		}
	}
}
