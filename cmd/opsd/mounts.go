package main

import (
	"bufio"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// singleFileMountWarning is logged when the job file is itself a mount point.
const singleFileMountWarning = "the job file is a single-file bind mount: edits that replace the file on the host (editors' rename-writes, mv) are never seen here, so live reload misses them; mount its directory instead"

// isMountPoint reports whether path is a mount point in a /proc/self/mountinfo listing (a
// single-file bind mount shows up as a mount point that is a file).
func isMountPoint(mountinfo io.Reader, path string) bool {
	path = filepath.Clean(path)
	sc := bufio.NewScanner(mountinfo)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) > 4 && unescapeMountPath(f[4]) == path {
			return true
		}
	}
	return false
}

// unescapeMountPath decodes mountinfo's octal escapes (\040 for a space).
func unescapeMountPath(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// configMountWarning returns singleFileMountWarning when the job file at path is a single-file
// bind mount (Linux), else "".
func configMountWarning(path string) string {
	abs, err := filepath.Abs(path)
	if err != nil || path == "" {
		return ""
	}
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return ""
	}
	defer f.Close()
	if isMountPoint(f, abs) {
		return singleFileMountWarning
	}
	return ""
}
