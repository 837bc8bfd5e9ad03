// Package s3 is the S3-compatible object store (DigitalOcean Spaces in production, SeaweedFS in
// the integration tier) over minio-go. Uploads are driven part by part (minio.Core) from one
// fixed memory budget per store, with the cheapest integrity header the store verifies on every
// part: CRC32C where the store confirms it, Content-MD5 where it does not (see upload.go).
package s3

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/wopr-network/opsd/internal/storage"
)

// Config configures the store.
type Config struct {
	Endpoint  string // host[:port]
	Region    string
	Bucket    string
	AccessKey string
	SecretKey string
	Secure    bool
	// CAFile adds a CA to trust (self-signed test servers); RootCAs does the same in code.
	CAFile  string
	RootCAs *x509.CertPool
	// PartSize of multipart uploads (default 16 MiB).
	PartSize int64
	// CreateBucket creates the bucket when missing (tests, the integration tier).
	CreateBucket bool
	// MaxRetries per request (0: minio-go's default of 10, backoff capped at 1s).
	MaxRetries int
	// Parallel is how many parts of one upload are in flight at most (default 2): filling a part
	// overlaps the upload of the others.
	Parallel int
	// UploadMemory is the memory budget of all uploads of the store together (default 16 MiB, at
	// least two parts): part buffers come out of it, so part size times parts in flight (being
	// filled or sent) stays inside it whatever the streams' sizes and however many run at once.
	UploadMemory int64
	// MultipartCopyAbove: Copy uses a multipart copy (UploadPartCopy, parts of PartSize) for
	// objects larger than this (default 5 GiB, S3's limit for a single copy; tests lower it).
	MultipartCopyAbove int64
	// RequestTimeout bounds how long one request may wait for the server: for the response
	// headers, and for any read or write on the connection to make progress (a server that
	// accepts and never answers fails the request instead of hanging the run). 0: 2 minutes.
	RequestTimeout time.Duration
}

// Store is an S3 bucket.
type Store struct {
	client   *minio.Client
	core     *minio.Core
	bucket   string
	endpoint string
	partSize uint64
	threads  uint
	copyMax  int64
	budget   *budget
	// integrity is how parts prove they arrived intact (integrityUnknown until the first part).
	integrity atomic.Int32
	// signPayload signs the payload's SHA-256 (minio-go's streaming signature): only over plain
	// http to another host. TLS protects the payload otherwise, and on loopback nothing sits
	// between; the integrity header is signed either way.
	signPayload bool
	corruptCRC  bool // tests: send wrong CRC32C headers
}

// New connects to the endpoint and checks the bucket exists (creating it when asked).
func New(ctx context.Context, cfg Config) (*Store, error) {
	if cfg.PartSize == 0 {
		cfg.PartSize = 16 << 20
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.DialContext = (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext
	tr.ResponseHeaderTimeout = 2 * time.Minute
	if cfg.RequestTimeout > 0 {
		tr.ResponseHeaderTimeout = cfg.RequestTimeout
		tr.DialContext = idleTimeoutDialer(cfg.RequestTimeout)
	}
	tr.MaxIdleConnsPerHost = 16
	if cfg.Secure {
		pool := cfg.RootCAs
		if cfg.CAFile != "" {
			pem, err := os.ReadFile(cfg.CAFile)
			if err != nil {
				return nil, fmt.Errorf("s3 store: read ca_file: %w", err)
			}
			if pool == nil {
				pool, _ = x509.SystemCertPool()
				if pool == nil {
					pool = x509.NewCertPool()
				}
			}
			if !pool.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("s3 store: ca_file %s holds no PEM certificate", cfg.CAFile)
			}
		}
		tr.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: pool}
	}
	client, err := minio.New(cfg.Endpoint, &minio.Options{
		Creds:      credentials.NewStaticV4(cfg.AccessKey, cfg.SecretKey, ""),
		Secure:     cfg.Secure,
		Region:     cfg.Region,
		Transport:  guardedTransport{tr},
		MaxRetries: cfg.MaxRetries,
	})
	if err != nil {
		return nil, fmt.Errorf("s3 store %s: %w", cfg.Endpoint, err)
	}
	if cfg.Parallel < 1 {
		cfg.Parallel = 2
	}
	if cfg.MultipartCopyAbove <= 0 {
		cfg.MultipartCopyAbove = 5 << 30
	}
	if cfg.UploadMemory <= 0 {
		cfg.UploadMemory = 16 << 20
	}
	cfg.UploadMemory = max(cfg.UploadMemory, 2*cfg.PartSize)
	s := &Store{client: client, core: &minio.Core{Client: client}, bucket: cfg.Bucket, endpoint: cfg.Endpoint, partSize: uint64(cfg.PartSize), threads: uint(cfg.Parallel), copyMax: cfg.MultipartCopyAbove,
		budget: newBudget(cfg.UploadMemory), signPayload: !cfg.Secure && !loopback(cfg.Endpoint)}
	ok, err := client.BucketExists(ctx, cfg.Bucket)
	if err != nil {
		return nil, fmt.Errorf("s3 store %s: check bucket %s: %w", cfg.Endpoint, cfg.Bucket, err)
	}
	if !ok {
		if !cfg.CreateBucket {
			return nil, fmt.Errorf("s3 store %s: bucket %s does not exist", cfg.Endpoint, cfg.Bucket)
		}
		if err := client.MakeBucket(ctx, cfg.Bucket, minio.MakeBucketOptions{Region: cfg.Region}); err != nil {
			return nil, fmt.Errorf("s3 store %s: create bucket %s: %w", cfg.Endpoint, cfg.Bucket, err)
		}
	}
	return s, nil
}

// CopyMovesBytes reports true: a server-side copy reads and writes the whole object again, and
// user metadata (the upload marker) is kept.
func (s *Store) CopyMovesBytes() bool { return true }

func (s *Store) String() string { return fmt.Sprintf("s3://%s at %s", s.bucket, s.endpoint) }

func notFound(err error) bool {
	var resp minio.ErrorResponse
	if errors.As(err, &resp) {
		return resp.StatusCode == http.StatusNotFound || resp.Code == "NoSuchKey"
	}
	return false
}

// Copy replaces dst with src by a server-side copy (multipart copy above 5 GiB), keeping src's
// metadata. S3 makes the new object visible at dst only when the copy completed.
func (s *Store) Copy(ctx context.Context, src, dst string) (storage.ObjectInfo, error) {
	from, err := s.Stat(ctx, src)
	if err != nil {
		return storage.ObjectInfo{}, fmt.Errorf("copy %s to %s: %w", src, dst, err)
	}
	dstOpts := minio.CopyDestOptions{Bucket: s.bucket, Object: dst}
	srcOpts := minio.CopySrcOptions{Bucket: s.bucket, Object: src}
	if from.Size <= s.copyMax {
		_, err = s.client.CopyObject(ctx, dstOpts, srcOpts)
	} else {
		// Multipart copy; S3 allows 10,000 parts of at least 5 MiB.
		part := max(s.partSize, uint64(from.Size/9000)+1, 5<<20)
		dstOpts.PartSize = part
		_, err = s.client.ComposeObject(ctx, dstOpts, srcOpts)
	}
	if err != nil {
		if notFound(err) {
			return storage.ObjectInfo{}, fmt.Errorf("copy %s to %s: %w", src, dst, storage.ErrNotFound)
		}
		return storage.ObjectInfo{}, fmt.Errorf("copy %s to %s: %w", src, dst, err)
	}
	st, err := s.Stat(ctx, dst)
	if err != nil {
		return storage.ObjectInfo{}, fmt.Errorf("copy %s to %s: %w", src, dst, err)
	}
	return st, nil
}

// Get opens the object. The stat is done first so a missing key is reported here, not on Read.
func (s *Store) Get(ctx context.Context, key string) (io.ReadCloser, storage.ObjectInfo, error) {
	obj, err := s.client.GetObject(ctx, s.bucket, key, minio.GetObjectOptions{})
	if err != nil {
		return nil, storage.ObjectInfo{}, fmt.Errorf("get %s: %w", key, err)
	}
	st, err := obj.Stat()
	if err != nil {
		obj.Close()
		if notFound(err) {
			return nil, storage.ObjectInfo{}, fmt.Errorf("get %s: %w", key, storage.ErrNotFound)
		}
		return nil, storage.ObjectInfo{}, fmt.Errorf("get %s: %w", key, err)
	}
	return obj, storage.ObjectInfo{Key: key, Size: st.Size, ModTime: st.LastModified.UTC()}, nil
}

// Stat returns the object's size and time.
func (s *Store) Stat(ctx context.Context, key string) (storage.ObjectInfo, error) {
	st, err := s.client.StatObject(ctx, s.bucket, key, minio.StatObjectOptions{})
	if err != nil {
		if notFound(err) {
			return storage.ObjectInfo{}, fmt.Errorf("stat %s: %w", key, storage.ErrNotFound)
		}
		return storage.ObjectInfo{}, fmt.Errorf("stat %s: %w", key, err)
	}
	return storage.ObjectInfo{Key: key, Size: st.Size, ModTime: st.LastModified.UTC(), Metadata: userMeta(st.UserMetadata)}, nil
}

// userMeta returns user metadata with lower-case keys (servers differ in the case they return).
func userMeta(m minio.StringMap) map[string]string {
	if len(m) == 0 {
		return nil
	}
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[strings.ToLower(k)] = v
	}
	return out
}

// List pages through the bucket (ListObjectsV2, 1,000 keys a page). A server that hands back a
// continuation token it already answered fails the listing (listGuard).
func (s *Store) List(ctx context.Context, prefix string, fn func(storage.ObjectInfo) error) error {
	ctx, cancel := context.WithCancel(withListGuard(ctx))
	defer cancel()
	for o := range s.client.ListObjects(ctx, s.bucket, minio.ListObjectsOptions{Prefix: prefix, Recursive: true}) {
		if o.Err != nil {
			return fmt.Errorf("list %s: %w", prefix, o.Err)
		}
		if strings.HasSuffix(o.Key, "/") {
			continue // directory marker
		}
		if err := fn(storage.ObjectInfo{Key: o.Key, Size: o.Size, ModTime: o.LastModified.UTC()}); err != nil {
			return err
		}
	}
	return ctx.Err()
}

// Delete removes an object.
func (s *Store) Delete(ctx context.Context, key string) error {
	if err := s.client.RemoveObject(ctx, s.bucket, key, minio.RemoveObjectOptions{}); err != nil && !notFound(err) {
		return fmt.Errorf("delete %s: %w", key, err)
	}
	return nil
}

// AbortIncompleteUploads aborts multipart uploads under prefix started more than olderThan ago.
func (s *Store) AbortIncompleteUploads(ctx context.Context, prefix string, olderThan time.Duration) (int, error) {
	cutoff := time.Now().Add(-olderThan)
	n := 0
	// Returning early must stop minio-go's listing goroutine, which is blocked sending the next
	// upload (and, once cancelled, sends the context's error): cancel it and drain the channel
	// on every way out.
	ctx, cancel := context.WithCancel(ctx)
	uploads := s.client.ListIncompleteUploads(ctx, s.bucket, prefix, true)
	defer func() {
		cancel()
		for range uploads {
		}
	}()
	for u := range uploads {
		if u.Err != nil {
			var resp minio.ErrorResponse
			if errors.As(u.Err, &resp) && (resp.Code == "NoSuchUpload" || resp.Code == "NotImplemented") {
				return n, nil // the store keeps no list of unfinished uploads (e.g. in-process test servers)
			}
			return n, fmt.Errorf("list incomplete uploads %s: %w", prefix, u.Err)
		}
		if u.Initiated.After(cutoff) {
			continue
		}
		if err := s.core.AbortMultipartUpload(ctx, s.bucket, u.Key, u.UploadID); err != nil && !notFound(err) {
			return n, fmt.Errorf("abort upload of %s: %w", u.Key, err)
		}
		n++
	}
	return n, nil
}
