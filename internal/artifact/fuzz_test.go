package artifact

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"testing"

	"github.com/wopr-network/opsd/internal/storage"
	"github.com/wopr-network/opsd/internal/storage/local"
)

// FuzzManifest: a manifest from the store, however malformed, never panics ReadManifest; one it
// accepts names the artifact it sits beside and has a checksum; and opening the artifact with it
// never yields all of the content unless the stored bytes match the manifest's size and
// checksum. Seeds: testdata/fuzz/FuzzManifest.
func FuzzManifest(f *testing.F) {
	f.Add([]byte(`{"version":1,"key":"platform/20261130/auth.db","kind":"sqlite","size":5,"sha256":"2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824","compression":"none"}`), []byte("hello"))
	f.Fuzz(func(t *testing.T, manifest, payload []byte) {
		const key = "platform/20261130/auth.db"
		ctx := context.Background()
		store, err := local.New(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		put := func(k string, b []byte) {
			if _, err := store.Put(ctx, k, bytes.NewReader(b), storage.PutOptions{Size: int64(len(b))}); err != nil {
				t.Fatal(err)
			}
		}
		put(key, payload)
		put(ManifestKey(key), manifest)
		m, err := ReadManifest(ctx, store, key)
		if err != nil {
			return
		}
		if m.Key != key || m.SHA256 == "" {
			t.Fatalf("accepted a manifest for %q with checksum %q", m.Key, m.SHA256)
		}
		rc, err := Open(ctx, store, m, nil)
		if err != nil {
			return
		}
		defer rc.Close()
		if _, err := io.Copy(io.Discard, io.LimitReader(rc, 64<<20)); err != nil {
			return
		}
		sum := sha256.Sum256(payload)
		if int64(len(payload)) != m.Size || hex.EncodeToString(sum[:]) != m.SHA256 {
			t.Fatalf("read to the end without error, but the stored bytes (%d, %x) do not match the manifest (%d, %s)", len(payload), sum, m.Size, m.SHA256)
		}
	})
}

// FuzzTarVerifier: the verifier passes every byte through unchanged, never panics or hangs, and
// only accepts a stream that archive/tar reads to its end with the same number of entries.
// Seeds: testdata/fuzz/FuzzTarVerifier.
func FuzzTarVerifier(f *testing.F) {
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	tw.WriteHeader(&tar.Header{Name: "etc/hostname", Mode: 0o644, Size: 5})
	tw.Write([]byte("node\n"))
	tw.WriteHeader(&tar.Header{Name: "data/", Typeflag: tar.TypeDir, Mode: 0o755})
	tw.Close()
	f.Add(b.Bytes())
	f.Add(b.Bytes()[:1024])
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		v := NewTarVerifier(bytes.NewReader(data))
		out, err := io.ReadAll(v)
		if !bytes.Equal(out, data[:len(out)]) {
			t.Fatal("the verifier changed the bytes passing through")
		}
		if err != nil {
			return
		}
		if !bytes.Equal(out, data) {
			t.Fatalf("accepted after passing %d of %d bytes", len(out), len(data))
		}
		tr := tar.NewReader(bytes.NewReader(data))
		n := 0
		for {
			_, err := tr.Next()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatalf("verifier accepted a stream archive/tar rejects after %d entries: %v", n, err)
			}
			n++ // bodies are skipped by Next, not read: a sparse entry's holes are not expanded
		}
		if n != v.Entries {
			t.Fatalf("verifier counted %d entries, archive/tar %d", v.Entries, n)
		}
	})
}
