package s3

import (
	"context"
	"crypto/md5"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/wopr-network/opsd/internal/storage"
)

// How the store proves a part arrived intact. The cheapest proof is a CRC32C header
// (x-amz-checksum-crc32c) the store verifies and echoes; a store that ignores or rejects it gets
// Content-MD5 instead (every S3-compatible store verifies that), decided once per store by the
// first part it receives.
const (
	integrityUnknown int32 = iota
	integrityCRC32C
	integrityMD5
)

const (
	hdrChecksumCRC32C = "X-Amz-Checksum-Crc32c"
	hdrChecksumAlgo   = "X-Amz-Checksum-Algorithm"
	maxParts          = 10000
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// part is one part of an upload: chunks of the store's budget.
type part struct {
	num    int
	chunks [][]byte
	size   int64
	crc    uint32
	md5    []byte // set when the part was sent with Content-MD5
	etag   string
	crcOK  bool // the store confirmed the CRC32C
	credit int  // budget credits held

	// readers are the request bodies handed to the HTTP client. net/http may still be reading a
	// body after the response came back (a store that answers 400 before reading the body, a
	// timed-out request): free detaches them before the chunks go back to the budget, so a late
	// read gets an error and never the bytes of another part.
	readers []*chunkReader
}

func (p *part) crcBase64() string {
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], p.crc)
	return base64.StdEncoding.EncodeToString(b[:])
}

func (p *part) md5Sum() []byte {
	if p.md5 == nil {
		h := md5.New()
		for _, c := range p.chunks {
			h.Write(c)
		}
		p.md5 = h.Sum(nil)
	}
	return p.md5
}

// reader returns the part's bytes as a seekable reader (minio-go seeks back to retry). It is
// detached when the part is freed.
func (p *part) reader() *chunkReader {
	r := &chunkReader{chunks: p.chunks, size: p.size}
	p.readers = append(p.readers, r)
	return r
}

// fill reads up to n chunks from r; eof reports the stream's end.
func (p *part) fill(r io.Reader, b *budget, n int) (eof bool, err error) {
	for len(p.chunks) < n {
		c := b.chunk()
		k, rerr := io.ReadFull(r, c)
		if k > 0 {
			c = c[:k]
			p.chunks = append(p.chunks, c)
			p.size += int64(k)
			p.crc = crc32.Update(p.crc, castagnoli, c)
		} else {
			b.putChunks([][]byte{c[:cap(c)]})
		}
		switch {
		case rerr == io.EOF || rerr == io.ErrUnexpectedEOF:
			// The source's own errors are *storage.ReadError (StrictReader): these two come
			// from ReadFull and mean the stream ended.
			return true, nil
		case rerr != nil:
			return false, rerr
		}
	}
	return false, nil
}

// free returns the part's chunks and credits to the budget, once no request body can read them.
func (p *part) free(b *budget) {
	for _, r := range p.readers {
		r.detach()
	}
	p.readers = nil
	for i, c := range p.chunks {
		p.chunks[i] = c[:cap(c)]
	}
	b.putChunks(p.chunks)
	b.release(p.credit)
	p.chunks, p.credit = nil, 0
}

// chunkReader reads a list of chunks; it seeks (minio-go's retries rewind the body).
type chunkReader struct {
	mu       sync.Mutex // held while copying, so detach waits for a read in progress
	chunks   [][]byte
	size     int64
	off      int64
	detached bool
}

// errDetached is what a request body read after its part was freed returns.
var errDetached = errors.New("chunk reader: part already released")

// detach ends the reader's access to the chunks; it returns once no Read is copying from them.
func (r *chunkReader) detach() {
	r.mu.Lock()
	r.chunks, r.detached = nil, true
	r.mu.Unlock()
}

func (r *chunkReader) Read(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.detached {
		return 0, errDetached
	}
	if r.off >= r.size {
		return 0, io.EOF
	}
	n := 0
	for n < len(p) && r.off < r.size {
		i, o := int(r.off/chunkSize), r.off%chunkSize
		k := copy(p[n:], r.chunks[i][o:])
		n += k
		r.off += int64(k)
	}
	return n, nil
}

func (r *chunkReader) Seek(offset int64, whence int) (int64, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	switch whence {
	case io.SeekStart:
	case io.SeekCurrent:
		offset += r.off
	case io.SeekEnd:
		offset += r.size
	default:
		return 0, errors.New("chunk reader: bad whence")
	}
	if offset < 0 {
		return 0, errors.New("chunk reader: negative offset")
	}
	r.off = offset
	return offset, nil
}

// partChunks returns how many chunks part num holds: the configured part size, larger for large
// known sizes (S3 allows 10,000 parts), doubling every 2,000 parts of an unknown-length stream,
// and small enough that three parts fit in the budget (one filling while two upload), or two, but
// never below S3's minimum of 5 MiB (a budget that small holds one part at a time).
func (s *Store) partChunks(num int, size int64) int {
	n := int((s.partSize + chunkSize - 1) / chunkSize)
	if size > 0 {
		n = max(n, int(size/9000/chunkSize)+1)
	} else {
		n <<= min((num-1)/2000, 4)
	}
	const minPart = (5 << 20) / chunkSize
	limit := s.budget.limit
	for _, k := range []int{3, 2} {
		if s.budget.limit/k >= minPart {
			limit = s.budget.limit / k
			break
		}
	}
	return max(min(n, limit), 1)
}

// upload is one Put in progress.
type upload struct {
	s      *Store
	key    string
	id     string // multipart upload id ("" until started)
	crc    bool   // the parts carry CRC32C (the upload declared the algorithm)
	parts  []*part
	mu     sync.Mutex
	err    error
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

func (u *upload) fail(err error) {
	u.mu.Lock()
	if u.err == nil {
		u.err = err
		u.cancel()
	}
	u.mu.Unlock()
}

func (u *upload) failed() error {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.err
}

// unsupported reports whether err may be a store refusing a checksum header it does not
// implement (the codes differ between stores: NotImplemented, InvalidArgument, InvalidRequest, a
// bare 400). Only the first request with the header is retried on it, with Content-MD5 instead:
// a request that fails for another reason fails again and its error is returned. BadDigest is
// never one: the store checked the header and the bytes did not match.
func unsupported(err error) bool {
	var resp minio.ErrorResponse
	if !errors.As(err, &resp) || resp.Code == "BadDigest" {
		return false
	}
	switch resp.Code {
	case "NotImplemented", "InvalidArgument", "InvalidRequest":
		return true
	}
	return resp.StatusCode == http.StatusNotImplemented || resp.StatusCode == http.StatusBadRequest
}

// Put uploads the stream in parts cut from the store's memory budget (Config.UploadMemory):
// parts are filled from fixed, reused chunks, and part size times parts in flight stays inside
// the budget for every upload of the store together, whatever the stream's size. A stream that
// ends within the first part goes up as one PUT. Every part carries an integrity header the store
// verifies (CRC32C, or Content-MD5 where the store does not confirm CRC32C), so a part damaged on
// the way is refused; the completed object's checksum (or ETag) is compared with the parts sent.
// A failed or cancelled upload is aborted, so nothing appears at the key, and every read error of
// r fails the upload (see storage.ReadError).
func (s *Store) Put(ctx context.Context, key string, r io.Reader, opts storage.PutOptions) (storage.ObjectInfo, error) {
	r = storage.StrictReader(r)
	s.budget.begin()
	defer s.budget.end()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	u := &upload{s: s, key: key, cancel: cancel}
	ct := opts.ContentType
	if ct == "" {
		ct = "application/octet-stream"
	}
	slots := make(chan struct{}, s.threads)
	var total int64
	var last *part
	fail := func(err error) (storage.ObjectInfo, error) {
		u.fail(err)
		u.wg.Wait()
		if last != nil {
			last.free(s.budget)
		}
		if u.id != "" {
			actx, acancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
			s.core.AbortMultipartUpload(actx, s.bucket, key, u.id)
			acancel()
		}
		return storage.ObjectInfo{}, fmt.Errorf("put %s: %w", key, u.failed())
	}
	for num := 1; ; num++ {
		if num > maxParts {
			return fail(fmt.Errorf("the stream is longer than %d parts", maxParts))
		}
		want := s.partChunks(num, opts.Size)
		if opts.Size >= 0 && num == 1 {
			want = min(want, int(opts.Size/chunkSize)+1) // small known sizes (manifests) take little
		}
		if err := s.budget.acquire(ctx, want); err != nil {
			return fail(err)
		}
		p := &part{num: num, credit: want}
		last = p
		eof, err := p.fill(r, s.budget, want)
		if used := len(p.chunks); used < p.credit {
			s.budget.release(p.credit - used)
			p.credit = used
		}
		if err != nil {
			return fail(err)
		}
		if err := u.failed(); err != nil {
			return fail(err)
		}
		total += p.size
		if eof && u.id == "" {
			last = nil
			info, err := u.single(ctx, p, ct, opts.Metadata)
			p.free(s.budget)
			if err != nil {
				return storage.ObjectInfo{}, fmt.Errorf("put %s: %w", key, err)
			}
			return info, nil
		}
		if u.id == "" {
			if err := u.start(ctx, ct, opts.Metadata); err != nil {
				return fail(err)
			}
		}
		if p.size == 0 {
			p.free(s.budget)
			last = nil
			break
		}
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
			return fail(context.Cause(ctx))
		}
		last = nil
		u.parts = append(u.parts, p)
		u.wg.Add(1)
		go func() {
			defer u.wg.Done()
			defer func() { <-slots }()
			err := u.sendPart(ctx, p)
			p.free(s.budget)
			if err != nil {
				u.fail(fmt.Errorf("part %d: %w", p.num, err))
			}
		}()
		if eof {
			break
		}
	}
	u.wg.Wait()
	if err := u.failed(); err != nil {
		return fail(err)
	}
	if err := u.complete(ctx); err != nil {
		return fail(err)
	}
	return storage.ObjectInfo{Key: key, Size: total, ModTime: time.Now().UTC(), Metadata: opts.Metadata}, nil
}

// putOptions are the options of a new object: content type, metadata, payload signing.
func (u *upload) putOptions(ct string, meta map[string]string) minio.PutObjectOptions {
	m := make(map[string]string, len(meta)+1)
	for k, v := range meta {
		m[k] = v
	}
	return minio.PutObjectOptions{ContentType: ct, UserMetadata: m, DisableContentSha256: !u.s.signPayload}
}

// start begins the multipart upload, declaring CRC32C unless the store is known to ignore it.
func (u *upload) start(ctx context.Context, ct string, meta map[string]string) error {
	opts := u.putOptions(ct, meta)
	u.crc = u.s.integrity.Load() != integrityMD5
	if u.crc {
		opts.UserMetadata[hdrChecksumAlgo] = "CRC32C"
	}
	id, err := u.s.core.NewMultipartUpload(ctx, u.s.bucket, u.key, opts)
	if err != nil && u.crc && u.s.integrity.Load() == integrityUnknown && unsupported(err) {
		u.s.integrity.Store(integrityMD5)
		u.crc = false
		delete(opts.UserMetadata, hdrChecksumAlgo)
		id, err = u.s.core.NewMultipartUpload(ctx, u.s.bucket, u.key, opts)
	}
	if err != nil {
		return fmt.Errorf("start multipart upload: %w", err)
	}
	u.id = id
	return nil
}

// sendPart uploads one part with its integrity header.
func (u *upload) sendPart(ctx context.Context, p *part) error {
	useMD5 := !u.crc || u.s.integrity.Load() == integrityMD5
	for attempt := 0; ; attempt++ {
		opts := minio.PutObjectPartOptions{DisableContentSha256: !u.s.signPayload, CustomHeader: http.Header{}}
		want := p.crcBase64()
		if u.crc {
			sent := want
			if u.s.corruptCRC {
				sent = "AAAAAA=="
				if want == sent {
					sent = "AAAAAQ=="
				}
			}
			opts.CustomHeader.Set(hdrChecksumCRC32C, sent)
		}
		if useMD5 {
			opts.Md5Base64 = base64.StdEncoding.EncodeToString(p.md5Sum())
		}
		op, err := u.s.core.PutObjectPart(ctx, u.s.bucket, u.key, u.id, p.num, p.reader(), p.size, opts)
		if err != nil {
			if !useMD5 && attempt == 0 && u.s.integrity.Load() == integrityUnknown && unsupported(err) {
				u.s.integrity.Store(integrityMD5)
				useMD5 = true
				continue
			}
			return err
		}
		p.etag = op.ETag
		if u.crc {
			switch op.ChecksumCRC32C {
			case want:
				p.crcOK = true
				u.s.integrity.CompareAndSwap(integrityUnknown, integrityCRC32C)
			case "":
				if !useMD5 {
					// The store ignores the header: it did not check this part. Send it again with
					// Content-MD5, which it does check, and use that from now on.
					u.s.integrity.CompareAndSwap(integrityUnknown, integrityMD5)
					useMD5 = true
					continue
				}
			default:
				return fmt.Errorf("the store computed CRC32C %s, %s was sent", op.ChecksumCRC32C, want)
			}
		}
		return nil
	}
}

// complete finishes the multipart upload and compares the object's checksum with the parts sent.
func (u *upload) complete(ctx context.Context) error {
	parts := make([]minio.CompletePart, len(u.parts))
	for i, p := range u.parts {
		parts[i] = minio.CompletePart{PartNumber: p.num, ETag: p.etag}
		if u.crc {
			parts[i].ChecksumCRC32C = p.crcBase64()
		}
	}
	info, err := u.s.core.CompleteMultipartUpload(ctx, u.s.bucket, u.key, u.id, parts, minio.PutObjectOptions{})
	if err != nil {
		return fmt.Errorf("complete multipart upload: %w", err)
	}
	u.id = "" // nothing to abort any more; a failed check below deletes the object
	if err := u.verify(ctx, info); err != nil {
		u.s.Delete(context.WithoutCancel(ctx), u.key)
		return err
	}
	return nil
}

// verify checks the completed object against the parts: the composite CRC32C the store reports,
// else (parts sent with Content-MD5) the AWS ETag, else a read-back.
func (u *upload) verify(ctx context.Context, info minio.UploadInfo) error {
	allCRC := u.crc
	allMD5 := true
	for _, p := range u.parts {
		allCRC = allCRC && p.crcOK
		allMD5 = allMD5 && p.md5 != nil
	}
	if got, n, ok := strings.Cut(info.ChecksumCRC32C, "-"); ok && u.crc {
		want := compositeCRC(u.parts)
		if got != want || n != fmt.Sprint(len(u.parts)) {
			return fmt.Errorf("stored object's CRC32C %s, the parts sent make %s-%d", info.ChecksumCRC32C, want, len(u.parts))
		}
		return nil
	}
	if allCRC {
		return nil // every part confirmed by the store, in order
	}
	if allMD5 {
		h := md5.New()
		for _, p := range u.parts {
			h.Write(p.md5)
		}
		if want := fmt.Sprintf("%s-%d", hex.EncodeToString(h.Sum(nil)), len(u.parts)); strings.EqualFold(strings.Trim(info.ETag, `"`), want) {
			return nil
		}
	}
	// A store whose ETags follow another scheme: read the object back.
	return u.s.reread(ctx, u.key, u.parts)
}

// compositeCRC is S3's checksum of a multipart object: the CRC32C of the parts' CRC32Cs.
func compositeCRC(parts []*part) string {
	var c uint32
	var b [4]byte
	for _, p := range parts {
		binary.BigEndian.PutUint32(b[:], p.crc)
		c = crc32.Update(c, castagnoli, b[:])
	}
	binary.BigEndian.PutUint32(b[:], c)
	return base64.StdEncoding.EncodeToString(b[:])
}

// single uploads a stream that fits in one part with one PUT.
func (u *upload) single(ctx context.Context, p *part, ct string, meta map[string]string) (storage.ObjectInfo, error) {
	useMD5 := u.s.integrity.Load() == integrityMD5
	for attempt := 0; ; attempt++ {
		opts := u.putOptions(ct, meta)
		want := p.crcBase64()
		md5b64 := ""
		if useMD5 {
			md5b64 = base64.StdEncoding.EncodeToString(p.md5Sum())
		} else {
			sent := want
			if u.s.corruptCRC {
				sent = "AAAAAA=="
				if want == sent {
					sent = "AAAAAQ=="
				}
			}
			opts.UserMetadata[hdrChecksumCRC32C] = sent
		}
		info, err := u.s.core.PutObject(ctx, u.s.bucket, u.key, p.reader(), p.size, md5b64, "", opts)
		if err != nil {
			if !useMD5 && attempt == 0 && u.s.integrity.Load() == integrityUnknown && unsupported(err) {
				u.s.integrity.Store(integrityMD5)
				useMD5 = true
				continue
			}
			return storage.ObjectInfo{}, err
		}
		if !useMD5 {
			switch info.ChecksumCRC32C {
			case want:
				u.s.integrity.CompareAndSwap(integrityUnknown, integrityCRC32C)
			case "":
				u.s.integrity.CompareAndSwap(integrityUnknown, integrityMD5)
				useMD5 = true
				continue
			default:
				u.s.Delete(context.WithoutCancel(ctx), u.key)
				return storage.ObjectInfo{}, fmt.Errorf("the store computed CRC32C %s, %s was sent", info.ChecksumCRC32C, want)
			}
		} else if !strings.EqualFold(strings.Trim(info.ETag, `"`), hex.EncodeToString(p.md5)) {
			if err := u.s.reread(ctx, u.key, []*part{p}); err != nil {
				u.s.Delete(context.WithoutCancel(ctx), u.key)
				return storage.ObjectInfo{}, err
			}
		}
		mod := info.LastModified
		if mod.IsZero() {
			mod = time.Now().UTC()
		}
		return storage.ObjectInfo{Key: u.key, Size: p.size, ModTime: mod, Metadata: meta}, nil
	}
}

// reread downloads key and checks it holds exactly the parts sent (their CRC32Cs).
func (s *Store) reread(ctx context.Context, key string, parts []*part) error {
	rc, _, err := s.Get(ctx, key)
	if err != nil {
		return fmt.Errorf("read back: %w", err)
	}
	defer rc.Close()
	buf := make([]byte, 256<<10)
	for _, p := range parts {
		var c uint32
		lr := io.LimitReader(rc, p.size)
		var n int64
		for {
			k, err := lr.Read(buf)
			c = crc32.Update(c, castagnoli, buf[:k])
			n += int64(k)
			if err == io.EOF {
				break
			}
			if err != nil {
				return fmt.Errorf("read back: %w", err)
			}
		}
		if n != p.size || c != p.crc {
			return fmt.Errorf("read back: part %d differs from the bytes sent", p.num)
		}
	}
	if k, _ := rc.Read(buf[:1]); k > 0 {
		return errors.New("read back: the stored object is longer than the bytes sent")
	}
	return nil
}

// loopback reports whether the endpoint is on this host.
func loopback(endpoint string) bool {
	host := endpoint
	if h, _, err := net.SplitHostPort(endpoint); err == nil {
		host = h
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// UploadStats reports the most bytes of part buffers that existed at once since the store was
// created, and the budget they are cut from (tests check the first never exceeds the second).
func (s *Store) UploadStats() (peak, budget int64) { return s.budget.stats() }
