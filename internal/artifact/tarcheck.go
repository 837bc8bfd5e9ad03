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
			if err == nil {
				_, err = io.Copy(io.Discard, tr)
			}
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

// errAbandoned ends the parser of a stream that was not read to its end.
var errAbandoned = errors.New("tar stream abandoned before its end")

// Close releases the parsing goroutine of a stream abandoned before its end (an upload or
// import that failed half way); without it the goroutine would wait for bytes forever. It is
// safe after EOF and more than once.
func (v *TarVerifier) Close() error {
	v.pw.CloseWithError(errAbandoned)
	return nil
}
