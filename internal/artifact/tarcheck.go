package artifact

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
)

// TarVerifier passes a tar stream through unchanged while parsing it; at EOF it fails when the
// stream was not a complete tar archive (truncated, corrupt, or without its end-of-archive marker
// of two zero blocks), so a cut-off `docker export` never becomes a backup, not even one cut
// exactly between two files.
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
		var err error
		// A panic while parsing (a bug) fails the stream like a corrupt archive would, instead
		// of taking the daemon down: the Runner's recover does not reach this goroutine.
		defer func() {
			if p := recover(); p != nil {
				err = PanicError(p)
				pr.CloseWithError(err)
			}
			v.done <- err
		}()
		err = v.parse(pr)
	}()
	return v
}

// testHookTarEntry, when set (by tests), is called with each entry parsed.
var testHookTarEntry func(*tar.Header)

// parse reads the archive's headers from pr until its end marker and the padding after it; on
// an error it closes pr with it, so the writer side fails too.
func (v *TarVerifier) parse(pr *io.PipeReader) error {
	er := &eofReader{r: pr}
	tr := tar.NewReader(er)
	for {
		hdr, err := tr.Next()
		if err == io.EOF && er.eof {
			// archive/tar also reports io.EOF when the stream stops at a header boundary
			// or after one zero block: only two zero blocks followed by more of the stream
			// (or its end, read later) are the end marker.
			err = errNoEndMarker
		}
		if err == io.EOF {
			io.Copy(io.Discard, pr) // padding after the end marker
			return nil
		}
		// The entry's body is not read through tr: Next skips its stored bytes, while reading
		// would expand a sparse entry's holes (a 3 KiB archive can declare 1 EiB of zeros).
		if err != nil {
			pr.CloseWithError(err)
			return err
		}
		if testHookTarEntry != nil {
			testHookTarEntry(hdr)
		}
		v.Entries++
	}
}

// Read implements io.Reader.
func (v *TarVerifier) Read(p []byte) (int, error) {
	n, err := v.r.Read(p)
	if n > 0 {
		if _, werr := v.pw.Write(p[:n]); werr != nil {
			if errors.Is(werr, ErrPanic) {
				return n, fmt.Errorf("verify tar stream: %w", werr)
			}
			return n, fmt.Errorf("not a valid tar stream: %w", werr)
		}
	}
	if errors.Is(err, io.EOF) {
		v.pw.Close()
		if verr := <-v.done; errors.Is(verr, ErrPanic) {
			return n, fmt.Errorf("verify tar stream: %w", verr)
		} else if verr != nil {
			return n, fmt.Errorf("tar stream ended before the end of the archive: %w", verr)
		}
	} else if err != nil {
		v.pw.CloseWithError(err)
	}
	return n, err
}

var errNoEndMarker = errors.New("no end-of-archive marker (two zero blocks)")

// eofReader records whether its reader reached the end.
type eofReader struct {
	r   io.Reader
	eof bool
}

func (e *eofReader) Read(p []byte) (int, error) {
	n, err := e.r.Read(p)
	if err == io.EOF {
		e.eof = true
	}
	return n, err
}

// VerifyTar reads a whole tar stream and fails unless it is a complete archive with its end
// marker; it returns the number of entries.
func VerifyTar(r io.Reader) (int, error) {
	v := NewTarVerifier(r)
	if _, err := io.Copy(io.Discard, v); err != nil {
		return 0, err
	}
	return v.Entries, nil
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
