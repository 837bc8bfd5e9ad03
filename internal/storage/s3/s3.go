// Package s3 is the S3-compatible object store (DigitalOcean Spaces in production, SeaweedFS in
// the integration tier) over minio-go. Streams of unknown length go up as multipart uploads with
// an explicit part size (minio-go otherwise buffers ~528 MiB per part) and Content-MD5 on every
// part, which S3-compatible stores accept where newer AWS checksum headers are rejected.
package s3

import (
	"bufio"
	"bytes"
	"context"
	"crypto/md5"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
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
	// Parallel is how many parts of one upload are in flight (default 2): filling a part overlaps
	// the upload of the others. Memory per upload is about Parallel x PartSize.
	Parallel int
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
		Transport:  tr,
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
	s := &Store{client: client, core: &minio.Core{Client: client}, bucket: cfg.Bucket, endpoint: cfg.Endpoint, partSize: uint64(cfg.PartSize), threads: uint(cfg.Parallel), copyMax: cfg.MultipartCopyAbove}
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

func (s *Store) String() string { return fmt.Sprintf("s3://%s at %s", s.bucket, s.endpoint) }

func notFound(err error) bool {
	var resp minio.ErrorResponse
	if errors.As(err, &resp) {
		return resp.StatusCode == http.StatusNotFound || resp.Code == "NoSuchKey"
	}
	return false
}

// Put uploads the stream. Unknown sizes go up in parts of the configured size; a failed or
// cancelled upload is aborted by minio-go, so nothing appears at the key. Every read error of r
// fails the upload (see storage.ReadError). The stored object is checked against the bytes sent:
// its ETag must be the MD5 (or, for a multipart upload, the MD5 of the parts' MD5s) of what was
// read; a store whose ETags follow another scheme is re-read instead.
func (s *Store) Put(ctx context.Context, key string, r io.Reader, opts storage.PutOptions) (storage.ObjectInfo, error) {
	r = storage.StrictReader(r)
	size := opts.Size
	if size < 0 {
		// Some S3-compatible stores reject an empty stream of unknown length: look ahead one byte.
		br := bufio.NewReaderSize(r, 64<<10)
		if _, err := br.Peek(1); err == io.EOF {
			size, r = 0, bytes.NewReader(nil)
		} else if err != nil {
			return storage.ObjectInfo{}, fmt.Errorf("put %s: %w", key, err)
		} else {
			r = br
		}
	}
	ct := opts.ContentType
	if ct == "" {
		ct = "application/octet-stream"
	}
	part := s.partSize
	if size > 0 {
		// S3 allows 10,000 parts: grow the part for very large known sizes.
		if min := uint64(size/9000) + 1; min > part {
			part = min
		}
	}
	// minio-go sends streams of unknown length, and known sizes above one part, as multipart
	// uploads cut every part bytes; smaller known sizes as one PUT.
	multipart := size < 0 || uint64(size) > part
	sent := newPartHasher(r, int64(part))
	info, err := s.client.PutObject(ctx, s.bucket, key, sent, size, minio.PutObjectOptions{
		PartSize:              part,
		SendContentMd5:        true,
		ContentType:           ct,
		UserMetadata:          opts.Metadata,
		NumThreads:            s.threads,
		ConcurrentStreamParts: size < 0 && s.threads > 1,
	})
	if err != nil {
		return storage.ObjectInfo{}, fmt.Errorf("put %s: %w", key, err)
	}
	if info.Size != sent.n {
		s.Delete(context.WithoutCancel(ctx), key)
		return storage.ObjectInfo{}, fmt.Errorf("put %s: store reports %d bytes, %d were read", key, info.Size, sent.n)
	}
	if want := sent.etag(multipart); !strings.EqualFold(strings.Trim(info.ETag, `"`), want) {
		// Not the AWS scheme, or not these bytes: read the object back to tell which.
		if err := s.reread(ctx, key, sent); err != nil {
			s.Delete(context.WithoutCancel(ctx), key)
			return storage.ObjectInfo{}, fmt.Errorf("put %s: stored object differs from the bytes sent (etag %s, want %s): %w", key, info.ETag, want, err)
		}
	}
	mod := info.LastModified
	if mod.IsZero() {
		mod = time.Now().UTC()
	}
	return storage.ObjectInfo{Key: key, Size: info.Size, ModTime: mod, Metadata: opts.Metadata}, nil
}

// partHasher passes a stream through, hashing it in parts of a fixed size (as minio-go cuts them).
type partHasher struct {
	r     io.Reader
	part  int64
	cur   hash.Hash
	inCur int64
	sums  [][]byte
	n     int64
}

func newPartHasher(r io.Reader, part int64) *partHasher {
	return &partHasher{r: r, part: part, cur: md5.New()}
}

func (h *partHasher) Read(p []byte) (int, error) {
	n, err := h.r.Read(p)
	h.write(p[:n])
	return n, err
}

func (h *partHasher) write(p []byte) {
	h.n += int64(len(p))
	for len(p) > 0 {
		take := h.part - h.inCur
		if int64(len(p)) < take {
			take = int64(len(p))
		}
		h.cur.Write(p[:take])
		h.inCur += take
		p = p[take:]
		if h.inCur == h.part {
			h.sums = append(h.sums, h.cur.Sum(nil))
			h.cur.Reset()
			h.inCur = 0
		}
	}
}

// etag is the AWS ETag of the bytes seen: the MD5, or for a multipart upload the MD5 of the
// parts' MD5s and "-N".
func (h *partHasher) etag(multipart bool) string {
	sums := h.sums
	if h.inCur > 0 || len(sums) == 0 {
		sums = append(sums[:len(sums):len(sums)], h.cur.Sum(nil))
	}
	if !multipart {
		return hex.EncodeToString(sums[0])
	}
	all := md5.New()
	for _, s := range sums {
		all.Write(s)
	}
	return fmt.Sprintf("%s-%d", hex.EncodeToString(all.Sum(nil)), len(sums))
}

// reread downloads key and checks it holds exactly the bytes sent.
func (s *Store) reread(ctx context.Context, key string, sent *partHasher) error {
	rc, _, err := s.Get(ctx, key)
	if err != nil {
		return err
	}
	defer rc.Close()
	got := newPartHasher(nil, sent.part)
	buf := make([]byte, 256<<10)
	for {
		n, err := rc.Read(buf)
		got.write(buf[:n])
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("read back: %w", err)
		}
	}
	if got.n != sent.n || got.etag(true) != sent.etag(true) {
		return fmt.Errorf("read back %d bytes, sent %d, content differs", got.n, sent.n)
	}
	return nil
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

// List pages through the bucket (ListObjectsV2, 1,000 keys a page).
func (s *Store) List(ctx context.Context, prefix string, fn func(storage.ObjectInfo) error) error {
	ctx, cancel := context.WithCancel(ctx)
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
