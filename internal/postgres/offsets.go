package postgres

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
)

// A custom-format archive (pg_dump --format=custom) written to a pipe carries no data offsets in
// its table of contents: pg_dump can only fill them in by seeking back, so every entry's offset
// field says "not set" and `pg_restore --jobs N` reaches each table's data by skipping every data
// chunk before it (one lseek per chunk; `-Z0` writes one chunk per row). SetDataOffsets writes
// the offsets into the fields afterwards, as pg_dump does for a seekable output, so each worker
// seeks once per table (and pg_restore orders the tables by size, which it estimates from the
// offsets). The layout follows PostgreSQL's pg_backup_archiver.c (ReadHead, ReadToc, ReadInt,
// ReadStr, ReadOffset) and pg_backup_custom.c (_ReadExtraToc, _StartData, _StartLOs, _skipData,
// _skipLOs).

// Archive versions (MAKE_ARCHIVE_VERSION) whose layout SetDataOffsets knows: K_VERS_1_14
// (pg_dump 12-15), K_VERS_1_15 (16: the compression algorithm in the header) and K_VERS_1_16
// (17: relkind in each TOC entry).
const (
	archVers114 = (1*256+14)*256 + 0
	archVers115 = (1*256+15)*256 + 0
	archVers116 = (1*256+16)*256 + 0
)

const (
	archCustom = 1 // archiveFormat archCustom

	blkData  = 1 // BLK_DATA: a table's COPY data
	blkBlobs = 3 // BLK_BLOBS: large objects

	offsetPosNotSet = 1 // K_OFFSET_POS_NOT_SET
	offsetPosSet    = 2 // K_OFFSET_POS_SET
	offsetNoData    = 3 // K_OFFSET_NO_DATA
)

// ErrNotArchive means a file is not a complete, well-formed custom-format archive (or one whose
// data blocks do not match its table of contents); SetDataOffsets leaves such a file unchanged.
var ErrNotArchive = errors.New("not a complete custom-format pg_dump archive")

// ErrUnsupportedArchive means a custom-format archive of a version (or with integer sizes) whose
// layout SetDataOffsets does not know; the file is left unchanged and pg_restore reads it as is.
var ErrUnsupportedArchive = errors.New("unsupported custom-format archive version")

// tocSlot is one TOC entry's offset field.
type tocSlot struct {
	dumpID int64
	field  int64 // position of the field's flag byte
	state  byte  // offsetPosNotSet, offsetPosSet or offsetNoData
	value  int64 // the offset the field holds
	block  int64 // where the entry's data block starts, -1 until found
}

// archiveLayout is what scanning an archive found.
type archiveLayout struct {
	version int
	offSize int
	slots   []*tocSlot
	size    int64 // bytes scanned (the whole archive)
}

// archReader reads an archive's integers and strings as pg_restore does, counting its position.
type archReader struct {
	r       *bufio.Reader
	pos     int64
	size    int64 // the file's size, -1 when unknown (a bound on lengths read)
	intSize int
	offSize int
}

func (a *archReader) fail(what string, err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("%w: truncated at byte %d (%s)", ErrNotArchive, a.pos, what)
	}
	if errors.Is(err, ErrNotArchive) || errors.Is(err, ErrUnsupportedArchive) {
		return err
	}
	return fmt.Errorf("read archive (%s): %w", what, err)
}

func (a *archReader) byte(what string) (byte, error) {
	b, err := a.r.ReadByte()
	if err != nil {
		return 0, a.fail(what, err)
	}
	a.pos++
	return b, nil
}

// int reads ReadInt's encoding: a sign byte, then intSize bytes, least significant first.
func (a *archReader) int(what string) (int64, error) {
	n := 1 + a.intSize
	b, err := a.r.Peek(n) // an archive holds millions of these: no call per byte
	if err != nil {
		if errors.Is(err, io.EOF) && len(b) > 0 {
			err = io.ErrUnexpectedEOF
		}
		return 0, a.fail(what, err)
	}
	var v uint64
	for i, c := range b[1:] {
		v |= uint64(c) << (8 * i)
	}
	sign := b[0]
	if sign > 1 || v > 1<<62 {
		return 0, fmt.Errorf("%w: bad integer at byte %d (%s)", ErrNotArchive, a.pos, what)
	}
	a.r.Discard(n)
	a.pos += int64(n)
	if sign == 1 {
		return -int64(v), nil
	}
	return int64(v), nil
}

// skip discards n bytes.
func (a *archReader) skip(n int64, what string) error {
	if n < 0 || (a.size >= 0 && a.pos+n > a.size) {
		return fmt.Errorf("%w: %s of %d bytes at byte %d runs past the end", ErrNotArchive, what, n, a.pos)
	}
	for n > 0 {
		step := min(n, 1<<30)
		d, err := a.r.Discard(int(step))
		a.pos += int64(d)
		if err != nil {
			return a.fail(what, err)
		}
		n -= step
	}
	return nil
}

// str reads ReadStr's encoding (a length, -1 for NULL, then the bytes) and returns the string
// when it is at most keep bytes long (the rest are skipped); null reports a NULL.
func (a *archReader) str(what string, keep int) (s string, null bool, err error) {
	n, err := a.int(what)
	if err != nil {
		return "", false, err
	}
	switch {
	case n == -1:
		return "", true, nil
	case n < 0:
		return "", false, fmt.Errorf("%w: bad string length %d at byte %d (%s)", ErrNotArchive, n, a.pos, what)
	case n <= int64(keep):
		b := make([]byte, n)
		if _, err := io.ReadFull(a.r, b); err != nil {
			return "", false, a.fail(what, err)
		}
		a.pos += n
		return string(b), false, nil
	}
	return "", false, a.skip(n, what)
}

// scanArchive reads a custom-format archive from r (size bytes long, or -1 when unknown): its
// header and table of contents, where each entry's offset field is, then every data block to
// the end, where each starts. It fails on anything pg_restore would not read the same way.
func scanArchive(r io.Reader, size int64) (*archiveLayout, error) {
	a := &archReader{r: bufio.NewReaderSize(r, 1<<20), size: size}
	magic := make([]byte, 5)
	if _, err := io.ReadFull(a.r, magic); err != nil || !bytes.Equal(magic, []byte("PGDMP")) {
		return nil, fmt.Errorf("%w: no PGDMP header", ErrNotArchive)
	}
	a.pos = 5
	var v [3]byte
	for i := range v {
		b, err := a.byte("version")
		if err != nil {
			return nil, err
		}
		v[i] = b
	}
	version := (int(v[0])*256+int(v[1]))*256 + int(v[2])
	if version < archVers114 || version > archVers116 {
		return nil, fmt.Errorf("%w: archive version %d.%d.%d (known: 1.14 to 1.16, pg_dump 12 to 17)", ErrUnsupportedArchive, v[0], v[1], v[2])
	}
	intSize, err := a.byte("intSize")
	if err != nil {
		return nil, err
	}
	offSize, err := a.byte("offSize")
	if err != nil {
		return nil, err
	}
	if intSize < 1 || intSize > 8 || offSize < 1 || offSize > 8 {
		return nil, fmt.Errorf("%w: integer size %d, offset size %d", ErrUnsupportedArchive, intSize, offSize)
	}
	a.intSize, a.offSize = int(intSize), int(offSize)
	format, err := a.byte("format")
	if err != nil {
		return nil, err
	}
	if format != archCustom {
		return nil, fmt.Errorf("%w: archive format %d is not custom (%d)", ErrUnsupportedArchive, format, archCustom)
	}
	if version >= archVers115 {
		_, err = a.byte("compression algorithm")
	} else {
		_, err = a.int("compression level")
	}
	if err != nil {
		return nil, err
	}
	for range 7 { // the creation time: tm_sec, tm_min, tm_hour, tm_mday, tm_mon, tm_year, tm_isdst
		if _, err := a.int("timestamp"); err != nil {
			return nil, err
		}
	}
	for _, what := range []string{"database name", "server version", "pg_dump version"} {
		if _, _, err := a.str(what, 0); err != nil {
			return nil, err
		}
	}

	count, err := a.int("TOC count")
	if err != nil {
		return nil, err
	}
	if count < 0 || (size >= 0 && count > size) {
		return nil, fmt.Errorf("%w: TOC count %d", ErrNotArchive, count)
	}
	l := &archiveLayout{version: version, offSize: a.offSize}
	byID := make(map[int64]*tocSlot, count)
	for range count {
		s, err := readTocEntry(a, version)
		if err != nil {
			return nil, err
		}
		if _, dup := byID[s.dumpID]; dup || s.dumpID <= 0 {
			return nil, fmt.Errorf("%w: TOC entry with dump id %d twice or invalid", ErrNotArchive, s.dumpID)
		}
		byID[s.dumpID] = s
		l.slots = append(l.slots, s)
	}

	// The data blocks follow the TOC up to the end of the file.
	for {
		start := a.pos
		typ, err := a.r.ReadByte()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, a.fail("block type", err)
		}
		a.pos++
		id, err := a.int("block dump id")
		if err != nil {
			return nil, err
		}
		s := byID[id]
		if s == nil || s.state == offsetNoData || s.block >= 0 {
			return nil, fmt.Errorf("%w: data block at byte %d for dump id %d, which has no (other) data in the TOC", ErrNotArchive, start, id)
		}
		if s.state == offsetPosSet && s.value != start {
			return nil, fmt.Errorf("%w: data block of dump id %d at byte %d, its TOC entry says %d", ErrNotArchive, id, start, s.value)
		}
		s.block = start
		switch typ {
		case blkData:
			if err := skipChunks(a); err != nil {
				return nil, err
			}
		case blkBlobs:
			for {
				oid, err := a.int("large object oid")
				if err != nil {
					return nil, err
				}
				if oid == 0 {
					break
				}
				if err := skipChunks(a); err != nil {
					return nil, err
				}
			}
		default:
			return nil, fmt.Errorf("%w: unknown data block type %d at byte %d", ErrNotArchive, typ, start)
		}
	}
	if size >= 0 && a.pos != size {
		return nil, fmt.Errorf("%w: read %d of %d bytes", ErrNotArchive, a.pos, size)
	}
	l.size = a.pos
	return l, nil
}

// readTocEntry reads one TOC entry (ReadToc, then the custom format's _ReadExtraToc) and
// returns its offset field.
func readTocEntry(a *archReader, version int) (*tocSlot, error) {
	id, err := a.int("dump id")
	if err != nil {
		return nil, err
	}
	if _, err := a.int("hadDumper"); err != nil {
		return nil, err
	}
	// tableoid, oid, tag, desc
	for _, what := range []string{"tableoid", "oid", "tag", "desc"} {
		if _, _, err := a.str(what, 0); err != nil {
			return nil, err
		}
	}
	if _, err := a.int("section"); err != nil {
		return nil, err
	}
	for _, what := range []string{"defn", "dropStmt", "copyStmt", "namespace", "tablespace", "tableam"} {
		if _, _, err := a.str(what, 0); err != nil {
			return nil, err
		}
	}
	if version >= archVers116 {
		if _, err := a.int("relkind"); err != nil {
			return nil, err
		}
	}
	if _, _, err := a.str("owner", 0); err != nil {
		return nil, err
	}
	if _, _, err := a.str("withOids", 0); err != nil {
		return nil, err
	}
	for { // dependencies, ended by a NULL string
		_, null, err := a.str("dependency", 0)
		if err != nil {
			return nil, err
		}
		if null {
			break
		}
	}
	s := &tocSlot{dumpID: id, field: a.pos, block: -1}
	flag, err := a.byte("offset flag")
	if err != nil {
		return nil, err
	}
	var v uint64
	for i := 0; i < a.offSize; i++ {
		b, err := a.byte("offset")
		if err != nil {
			return nil, err
		}
		v |= uint64(b) << (8 * i)
	}
	switch flag {
	case offsetPosNotSet, offsetPosSet, offsetNoData:
	default:
		return nil, fmt.Errorf("%w: offset flag %d of dump id %d", ErrNotArchive, flag, id)
	}
	if v > 1<<62 {
		return nil, fmt.Errorf("%w: offset %d of dump id %d", ErrNotArchive, v, id)
	}
	s.state, s.value = flag, int64(v)
	return s, nil
}

// skipChunks skips a data block's chunks (_skipData): each a length and that many bytes, the
// last of length 0.
func skipChunks(a *archReader) error {
	for {
		n, err := a.int("chunk length")
		if err != nil {
			return err
		}
		if n == 0 {
			return nil
		}
		if err := a.skip(n, "data chunk"); err != nil {
			return err
		}
	}
}

// field renders an offset field set to off (WriteOffset: the flag, then offSize bytes).
func (l *archiveLayout) field(off int64) []byte {
	b := make([]byte, 1+l.offSize)
	b[0] = offsetPosSet
	for i := 0; i < l.offSize; i++ {
		b[1+i] = byte(uint64(off) >> (8 * i))
	}
	return b
}

// SetDataOffsets writes the data offsets into the table of contents of the custom-format archive
// at path, where pg_dump left them unset (it wrote to a pipe), and returns how many it set. The
// whole file is read first; a file that is not a complete archive of a known version is refused
// (ErrNotArchive, ErrUnsupportedArchive) and left unchanged, and an archive whose offsets are
// already set is left as is (0, nil). Only the offset fields change (one write over the table
// of contents): the archive stays the same size and every other byte is the same.
func SetDataOffsets(path string) (int, error) {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return 0, fmt.Errorf("set data offsets: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return 0, fmt.Errorf("set data offsets: %w", err)
	}
	l, err := scanArchive(f, st.Size())
	if err != nil {
		return 0, fmt.Errorf("set data offsets: %w", err)
	}
	var todo []*tocSlot
	for _, s := range l.slots {
		if s.state == offsetPosNotSet && s.block >= 0 {
			todo = append(todo, s)
		}
	}
	if len(todo) == 0 {
		return 0, nil
	}
	// One read-modify-write of the span holding the fields (the TOC lies before any data).
	first, last := todo[0].field, todo[len(todo)-1].field+int64(1+l.offSize)
	span := make([]byte, last-first)
	if _, err := f.ReadAt(span, first); err != nil {
		return 0, fmt.Errorf("set data offsets: %w", err)
	}
	for _, s := range todo {
		at := s.field - first
		if span[at] != offsetPosNotSet {
			return 0, fmt.Errorf("set data offsets: %w: the file changed while it was read", ErrNotArchive)
		}
		if l.offSize < 8 && s.block >= int64(1)<<(8*l.offSize) {
			return 0, fmt.Errorf("set data offsets: %w: offset %d does not fit in %d bytes", ErrUnsupportedArchive, s.block, l.offSize)
		}
		copy(span[at:], l.field(s.block))
	}
	if _, err := f.WriteAt(span, first); err != nil {
		return 0, fmt.Errorf("set data offsets: %w", err)
	}
	if err := f.Close(); err != nil {
		return 0, fmt.Errorf("set data offsets: %w", err)
	}
	return len(todo), nil
}

// DataOffsets reads the custom-format archive at path and counts its TOC entries with a data
// block whose offset is set and not set (pg_restore --jobs seeks to the former and skips through
// the data to the latter). Set offsets are checked against where the blocks are.
func DataOffsets(path string) (set, unset int, err error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, 0, fmt.Errorf("read data offsets: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return 0, 0, fmt.Errorf("read data offsets: %w", err)
	}
	l, err := scanArchive(f, st.Size())
	if err != nil {
		return 0, 0, fmt.Errorf("read data offsets: %w", err)
	}
	for _, s := range l.slots {
		switch {
		case s.block < 0:
		case s.state == offsetPosSet:
			set++
		default:
			unset++
		}
	}
	return set, unset, nil
}
