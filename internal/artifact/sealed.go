package artifact

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"

	"filippo.io/age"
)

// Sealed is a small document carried inside a manifest (a container's create spec), encrypted
// with the artifact's age recipients when the artifact is, and checksummed like the artifact.
type Sealed struct {
	// Encryption is "" (plain) or "age".
	Encryption string `json:"encryption"`
	// SHA256 is the checksum of the plain document.
	SHA256 string `json:"sha256"`
	// Data is the (encrypted) document; base64 in JSON.
	Data []byte `json:"data"`
}

// Seal checksums plain and encrypts it to recipients (none: stored plain).
func Seal(plain []byte, recipients []age.Recipient) (*Sealed, error) {
	sum := sha256.Sum256(plain)
	s := &Sealed{SHA256: hex.EncodeToString(sum[:]), Data: plain}
	if len(recipients) == 0 {
		return s, nil
	}
	var buf bytes.Buffer
	w, err := age.Encrypt(&buf, recipients...)
	if err != nil {
		return nil, fmt.Errorf("seal: %w", err)
	}
	if _, err := w.Write(plain); err != nil {
		return nil, fmt.Errorf("seal: %w", err)
	}
	if err := w.Close(); err != nil {
		return nil, fmt.Errorf("seal: %w", err)
	}
	s.Encryption, s.Data = "age", buf.Bytes()
	return s, nil
}

// Open decrypts (with identities when sealed with age) and verifies the document's checksum.
func (s *Sealed) Open(identities []age.Identity) ([]byte, error) {
	plain := s.Data
	switch s.Encryption {
	case "":
	case "age":
		if len(identities) == 0 {
			return nil, fmt.Errorf("open sealed document: it is encrypted and no age identity is configured (encryption.identity_file)")
		}
		r, err := age.Decrypt(bytes.NewReader(s.Data), identities...)
		if err != nil {
			return nil, fmt.Errorf("open sealed document: %w", err)
		}
		if plain, err = io.ReadAll(io.LimitReader(r, 16<<20)); err != nil {
			return nil, fmt.Errorf("open sealed document: %w", err)
		}
	default:
		return nil, fmt.Errorf("open sealed document: unknown encryption %q", s.Encryption)
	}
	sum := sha256.Sum256(plain)
	if hex.EncodeToString(sum[:]) != s.SHA256 {
		return nil, fmt.Errorf("open sealed document: %w", ErrChecksum)
	}
	return plain, nil
}
