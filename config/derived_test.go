package config

import (
	"strings"
	"testing"
)

// TestSingleFileMountDetected: a job file that is itself a mount point (a single-file bind
// mount, whose host-side rename-writes are never seen) is recognised from mountinfo; its
// directory being the mount point is fine.
func TestSingleFileMountDetected(t *testing.T) {
	info := `22 27 0:21 / /proc rw,relatime - proc proc rw
812 790 8:1 /srv/opsd/opsd.yaml /etc/opsd/opsd.yaml ro,relatime - ext4 /dev/sda1 rw
813 790 8:1 /srv/my\040conf /etc/my\040conf ro,relatime - ext4 /dev/sda1 rw
`
	if !isMountPoint(strings.NewReader(info), "/etc/opsd/opsd.yaml") {
		t.Error("the single-file mount is not detected")
	}
	if isMountPoint(strings.NewReader(info), "/etc/opsd/other.yaml") {
		t.Error("a file in a plain directory is taken for a mount point")
	}
	if !isMountPoint(strings.NewReader(info), "/etc/my conf") {
		t.Error("an escaped mount path is not decoded")
	}
}
