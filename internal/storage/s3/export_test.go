package s3

// Test hooks.

// CorruptChecksums makes the store send a wrong CRC32C header with every part.
func CorruptChecksums(s *Store) { s.corruptCRC = true }

// Integrity returns the integrity header the store settled on: "", "crc32c" or "md5".
func Integrity(s *Store) string {
	return [...]string{"", "crc32c", "md5"}[s.integrity.Load()]
}
