package config

import (
	"errors"
	"fmt"
	"io"
	"os"
	"syscall"
)

// ReadSecretFile reads a secret or key file the way the job file's *_file settings are read: a
// regular file of at most MaxSecretFileSize bytes, never blocking on a FIFO or reading a device.
func ReadSecretFile(path string) ([]byte, error) {
	b, err := readRegular(path, MaxSecretFileSize)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	return b, nil
}

// readRegular reads a regular file of at most limit bytes. It opens without blocking (a FIFO
// would otherwise hang the reload until a writer appears) and refuses FIFOs, devices (/dev/zero
// would be read until memory runs out), sockets and directories before reading a byte.
func readRegular(path string, limit int64) ([]byte, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK|syscall.O_NOCTTY, 0)
	if err != nil {
		var pe *os.PathError
		if errors.As(err, &pe) {
			return nil, pe.Err
		}
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if what := notRegular(fi.Mode()); what != "" {
		return nil, fmt.Errorf("%s, not a regular file", what)
	}
	if fi.Size() > limit {
		return nil, fmt.Errorf("larger than the %s limit (%d bytes)", formatSize(limit), fi.Size())
	}
	b, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("larger than the %s limit", formatSize(limit))
	}
	return b, nil
}

func notRegular(m os.FileMode) string {
	switch {
	case m.IsRegular():
		return ""
	case m.IsDir():
		return "a directory"
	case m&os.ModeNamedPipe != 0:
		return "a named pipe (FIFO)"
	case m&os.ModeCharDevice != 0:
		return "a character device"
	case m&os.ModeDevice != 0:
		return "a block device"
	case m&os.ModeSocket != 0:
		return "a socket"
	}
	return "a special file"
}

// formatSize writes a power-of-two size the way the job file does (64KiB, 4MiB).
func formatSize(n int64) string {
	switch {
	case n >= 1<<30 && n%(1<<30) == 0:
		return fmt.Sprintf("%dGiB", n>>30)
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%dMiB", n>>20)
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%dKiB", n>>10)
	}
	return fmt.Sprintf("%d bytes", n)
}
