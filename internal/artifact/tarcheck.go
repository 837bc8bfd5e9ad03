package artifact

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
)

// TarVerifier passes a tar stream through unchanged while parsing it; at EOF it fails when the
// stream was not a complete tar archive (truncated, corrupt, or without its end marker), so a
// cut-off `docker export` never becomes a backup.
type TarVerifier struct {
	r    io.Reader
	pw   *io.PipeWriter
	done chan error
	// Entries counts the archive's entries once the stream is read to the end.
	Entries int
}

// NewTarVerifier wraps r.
func NewTarVerifier(r io.Reader) *TarVerifier {
	pr, pw := io.Pipe()
	v := &TarVerifier{r: r, pw: pw, done: make(chan error, 1)}
	go func() {
		tr := tar.NewReader(pr)
		for {
			_, err := tr.Next()
			if err == io.EOF {
				io.Copy(io.Discard, pr) // padding after the end marker
				v.done <- nil
				return
			}
			// The entry's body is not read through tr: Next skips its stored bytes, while reading
			// would expand a sparse entry's holes (a 3 KiB archive can declare 1 EiB of zeros).
			if err != nil {
				pr.CloseWithError(err)
				v.done <- err
				return
			}
			v.Entries++
		}
	}()
	return v
}

// Read implements io.Reader.
func (v *TarVerifier) Read(p []byte) (int, error) {
	n, err := v.r.Read(p)
	if n > 0 {
		if _, werr := v.pw.Write(p[:n]); werr != nil {
			return n, fmt.Errorf("not a valid tar stream: %w", werr)
		}
	}
	if errors.Is(err, io.EOF) {
		v.pw.Close()
		if verr := <-v.done; verr != nil {
			return n, fmt.Errorf("tar stream ended before the end of the archive: %w", verr)
		}
	} else if err != nil {
		v.pw.CloseWithError(err)
	}
	return n, err
}
