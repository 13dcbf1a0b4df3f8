package bolt

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"os"
	"strings"
	"syscall"
)

// CorruptError is a store file that is not a sound bbolt file: truncated,
// overwritten, or not a store at all.
type CorruptError struct {
	Path    string
	Problem string
}

func (e *CorruptError) Error() string {
	return fmt.Sprintf("store file %s is damaged: %s", e.Path, e.Problem)
}

// The bbolt file format (go.etcd.io/bbolt, file version 2), as far as
// Verify reads it. Pages start with a 16-byte header: id uint64, flags
// uint16, count uint16, overflow uint32. Integers are in the machine's
// byte order, little-endian on every platform Ward builds for.
const (
	pageHeaderSize  = 16
	elementSize     = 16 // branch: pos, ksize uint32, pgid uint64; leaf: flags, pos, ksize, vsize uint32
	inBucketSize    = 16 // root pgid uint64, sequence uint64
	branchPageFlag  = 0x01
	leafPageFlag    = 0x02
	metaPageFlag    = 0x04
	freelistFlag    = 0x10
	bucketLeafFlag  = 0x01
	boltMagic       = 0xED0CDAED
	boltVersion     = 2
	noFreelist      = ^uint64(0)
	metaChecksumEnd = pageHeaderSize + 56 // the checksum covers the meta up to itself
	maxTreeDepth    = 64
)

var le = binary.LittleEndian

// meta is a meta page's fields Verify uses.
type meta struct {
	pageSize uint32
	root     uint64 // the root bucket's page
	freelist uint64
	pgid     uint64 // the high-water mark: pages below it are in use or free
	txid     uint64
}

// Verify checks the structure of the bbolt file at path without bbolt: its
// meta pages (magic, version, checksum), its size against the pages in
// use, and every page reachable from the newest valid meta page: in
// bounds, of the right type, naming itself, referenced once, with every
// key and value inside its page. bbolt trusts the file it maps: a
// truncated or damaged one makes it read past its memory map (SIGSEGV or
// SIGBUS) or fail an assertion in a goroutine of its own, and neither can
// be recovered. Open calls Verify first. A missing or empty file passes
// (bbolt creates it); a file another process holds is reported as in use.
func Verify(path string) error {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("bolt: open store file %s: %w", path, err)
	}
	defer f.Close()
	// A shared lock: a coordinator writing the file holds an exclusive one,
	// and a file changing under the check would look damaged.
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_SH|syscall.LOCK_NB); err != nil {
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return &InUseError{Path: path}
		}
		return fmt.Errorf("bolt: lock store file %s: %w", path, err)
	}
	defer syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("bolt: stat store file %s: %w", path, err)
	}
	if fi.Size() == 0 {
		return nil
	}
	if problem := verifyFile(f, fi.Size()); problem != "" {
		return &CorruptError{Path: path, Problem: problem}
	}
	return nil
}

// InUseError is a store file another process holds.
type InUseError struct{ Path string }

func (e *InUseError) Error() string {
	return fmt.Sprintf("store file %s is in use by another process (a running coordinator holds it)", e.Path)
}

// verifyFile returns what is wrong with the bbolt file r of size bytes,
// or "" when nothing is.
func verifyFile(r io.ReaderAt, size int64) string {
	m, problem := readMeta(r, size)
	if problem != "" {
		return problem
	}
	ps := int64(m.pageSize)
	if need := int64(m.pgid) * ps; m.pgid < 4 || need/ps != int64(m.pgid) || size < need {
		return fmt.Sprintf("it is %d bytes, but its newest meta page says %d pages of %d bytes are in use: it was truncated", size, m.pgid, ps)
	}
	// Every element is read once in a sound file; the budget stops a
	// damaged one whose values overlap from costing more.
	v := &verifier{r: r, pageSize: ps, hwm: m.pgid, seen: map[uint64]bool{0: true, 1: true}, budget: size/elementSize + 1024}
	if m.freelist != noFreelist {
		if p := v.page(m.freelist, freelistFlag, "the freelist"); p == nil {
			return v.problem
		}
	}
	v.tree(m.root, "the root bucket", nil, nil, 0)
	return v.problem
}

// readMeta finds the page size from the first valid meta page and returns
// the valid meta page with the highest transaction ID, as bbolt does.
func readMeta(r io.ReaderAt, size int64) (meta, string) {
	if size < 2*1024 {
		return meta{}, fmt.Sprintf("it is %d bytes, too short for the two meta pages a store file starts with", size)
	}
	var metas []meta
	var reasons []string
	try := func(off int64) {
		buf := make([]byte, metaChecksumEnd+8)
		if _, err := r.ReadAt(buf, off); err != nil {
			reasons = append(reasons, fmt.Sprintf("meta page at offset %d cannot be read (%v)", off, err))
			return
		}
		m, why := parseMeta(buf)
		if why != "" {
			reasons = append(reasons, fmt.Sprintf("meta page at offset %d: %s", off, why))
			return
		}
		metas = append(metas, m)
	}
	try(0)
	if len(metas) == 1 {
		if int64(metas[0].pageSize)*2 > size {
			return meta{}, fmt.Sprintf("it is %d bytes, shorter than its two meta pages of %d bytes: it was truncated", size, metas[0].pageSize)
		}
		try(int64(metas[0].pageSize))
	} else {
		// The first meta page is bad: find the second at a plausible page size.
		for ps := int64(1024); ps <= 64<<10 && len(metas) == 0; ps *= 2 {
			if 2*ps <= size {
				try(ps)
			}
		}
	}
	if len(metas) == 0 {
		return meta{}, "neither meta page is valid, so this is not a Ward store file or its start was overwritten (" + joinReasons(reasons) + ")"
	}
	best := metas[0]
	for _, m := range metas[1:] {
		if m.pageSize != best.pageSize {
			return meta{}, fmt.Sprintf("its meta pages disagree on the page size (%d and %d)", best.pageSize, m.pageSize)
		}
		if m.txid > best.txid {
			best = m
		}
	}
	return best, ""
}

func joinReasons(rs []string) string {
	out := ""
	for i, r := range rs {
		if i > 0 {
			out += "; "
		}
		out += r
	}
	return out
}

// parseMeta reads a meta page's header and fields and checks its magic,
// version and checksum.
func parseMeta(b []byte) (meta, string) {
	if flags := le.Uint16(b[8:10]); flags != metaPageFlag {
		return meta{}, fmt.Sprintf("page type %#x is not a meta page", flags)
	}
	mb := b[pageHeaderSize:]
	if magic := le.Uint32(mb[0:4]); magic != boltMagic {
		return meta{}, fmt.Sprintf("magic number %#x is not bbolt's", magic)
	}
	if v := le.Uint32(mb[4:8]); v != boltVersion {
		return meta{}, fmt.Sprintf("file format version %d is not %d", v, boltVersion)
	}
	h := fnv.New64a()
	h.Write(b[pageHeaderSize:metaChecksumEnd])
	if sum := le.Uint64(b[metaChecksumEnd:]); sum != h.Sum64() {
		return meta{}, "its checksum does not match its content"
	}
	m := meta{pageSize: le.Uint32(mb[8:12]), root: le.Uint64(mb[16:24]), freelist: le.Uint64(mb[32:40]), pgid: le.Uint64(mb[40:48]), txid: le.Uint64(mb[48:56])}
	if m.pageSize < 1024 || m.pageSize > 64<<10 || m.pageSize&(m.pageSize-1) != 0 {
		return meta{}, fmt.Sprintf("page size %d is not a power of two between 1 KiB and 64 KiB", m.pageSize)
	}
	return m, ""
}

// verifier walks the page tree, recording the first problem.
type verifier struct {
	r        io.ReaderAt
	pageSize int64
	hwm      uint64
	seen     map[uint64]bool
	budget   int64 // elements left to read
	problem  string
}

func (v *verifier) fail(format string, args ...any) {
	if v.problem == "" {
		v.problem = fmt.Sprintf(format, args...)
	}
}

// page reads page id, which what refers to, checks its header against
// wantFlags, and marks it and its overflow pages seen. It returns nil (and
// records why) when the page is unsound.
func (v *verifier) page(id uint64, wantFlags uint16, what string) []byte {
	if v.problem != "" {
		return nil
	}
	if id < 2 || id >= v.hwm {
		v.fail("%s points to page %d, outside the pages in use (2 to %d)", what, id, v.hwm-1)
		return nil
	}
	hdr := make([]byte, pageHeaderSize)
	if _, err := v.r.ReadAt(hdr, int64(id)*v.pageSize); err != nil {
		v.fail("page %d (%s) cannot be read: %v", id, what, err)
		return nil
	}
	if got := le.Uint64(hdr[0:8]); got != id {
		v.fail("page %d (%s) names itself page %d", id, what, got)
		return nil
	}
	if flags := le.Uint16(hdr[8:10]); flags != wantFlags {
		v.fail("page %d (%s) has type %#x, want %#x", id, what, flags, wantFlags)
		return nil
	}
	overflow := uint64(le.Uint32(hdr[12:16]))
	if id+overflow >= v.hwm || id+overflow < id {
		v.fail("page %d (%s) runs over %d more pages, past the pages in use", id, what, overflow)
		return nil
	}
	for p := id; p <= id+overflow; p++ {
		if v.seen[p] {
			v.fail("page %d is referred to twice (again by %s)", p, what)
			return nil
		}
		v.seen[p] = true
	}
	buf := make([]byte, int64(1+overflow)*v.pageSize)
	if _, err := v.r.ReadAt(buf, int64(id)*v.pageSize); err != nil {
		v.fail("page %d (%s) cannot be read: %v", id, what, err)
		return nil
	}
	return buf
}

// tree checks the B+tree of a bucket rooted at page id, whose keys must
// lie in [minKey, maxKey) (nil: unbounded), and returns its largest key.
// bbolt checks the same order when it opens the file, and a problem it
// finds there crashes it (its checker goroutine goes on with a closed
// transaction), so Verify must find every one first.
func (v *verifier) tree(id uint64, what string, minKey, maxKey []byte, depth int) []byte {
	if depth > maxTreeDepth {
		v.fail("%s nests deeper than %d pages", what, maxTreeDepth)
		return nil
	}
	if v.problem != "" || id < 2 || id >= v.hwm {
		v.page(id, leafPageFlag, what) // records the bounds problem
		return nil
	}
	hdr := make([]byte, pageHeaderSize)
	if _, err := v.r.ReadAt(hdr, int64(id)*v.pageSize); err != nil {
		v.fail("page %d (%s) cannot be read: %v", id, what, err)
		return nil
	}
	flags := le.Uint16(hdr[8:10])
	if flags != branchPageFlag && flags != leafPageFlag {
		v.fail("page %d (%s) has type %#x, not a branch or leaf page", id, what, flags)
		return nil
	}
	buf := v.page(id, flags, what)
	if buf == nil {
		return nil
	}
	return v.elements(buf, id, what, minKey, maxKey, depth)
}

// elements checks a branch or leaf page's elements and their key order,
// recursing into child pages and sub-buckets, and returns the largest key
// under the page. buf is the page (or an inline bucket's page).
func (v *verifier) elements(buf []byte, id uint64, what string, minKey, maxKey []byte, depth int) []byte {
	flags := le.Uint16(buf[8:10])
	count := int(le.Uint16(buf[10:12]))
	if pageHeaderSize+count*elementSize > len(buf) {
		v.fail("page %d (%s) claims %d elements, more than fit in it", id, what, count)
		return nil
	}
	if flags == branchPageFlag && count == 0 {
		v.fail("page %d (%s) is a branch page without elements", id, what)
		return nil
	}
	if v.budget -= int64(count); v.budget < 0 {
		v.fail("page %d (%s): the file holds more elements than fit in it", id, what)
		return nil
	}
	inline := strings.HasPrefix(what, "inline ")
	prev := minKey
	for i := 0; i < count && v.problem == ""; i++ {
		off := pageHeaderSize + i*elementSize
		e := buf[off : off+elementSize]
		var pos, ksize, vsize int64
		var eflags uint32
		if flags == branchPageFlag {
			pos, ksize = int64(le.Uint32(e[0:4])), int64(le.Uint32(e[4:8]))
		} else {
			eflags, pos, ksize, vsize = le.Uint32(e[0:4]), int64(le.Uint32(e[4:8])), int64(le.Uint32(e[8:12])), int64(le.Uint32(e[12:16]))
		}
		start := int64(off) + pos
		if start+ksize+vsize > int64(len(buf)) {
			v.fail("page %d (%s) element %d: its key and value run past the page", id, what, i)
			return nil
		}
		key := buf[start : start+ksize]
		switch c := bytes.Compare(prev, key); {
		case prev != nil && i == 0 && c > 0, i > 0 && c >= 0:
			v.fail("page %d (%s) element %d: its key is out of order", id, what, i)
			return nil
		case maxKey != nil && bytes.Compare(key, maxKey) >= 0:
			v.fail("page %d (%s) element %d: its key is beyond its parent's next key", id, what, i)
			return nil
		}
		if flags == branchPageFlag {
			next := maxKey
			if i+1 < count {
				ne := buf[off+elementSize : off+2*elementSize]
				np, nk := int64(off+elementSize)+int64(le.Uint32(ne[0:4])), int64(le.Uint32(ne[4:8]))
				if np+nk > int64(len(buf)) {
					v.fail("page %d (%s) element %d: its key runs past the page", id, what, i+1)
					return nil
				}
				next = buf[np : np+nk]
			}
			// As bbolt: the next key must be above this subtree's largest.
			prev = v.tree(le.Uint64(e[8:16]), fmt.Sprintf("a branch of page %d", id), key, next, depth+1)
			continue
		}
		prev = key
		if eflags&bucketLeafFlag == 0 {
			continue
		}
		val := buf[start+ksize : start+ksize+vsize]
		name := fmt.Sprintf("bucket %q", key)
		if inline {
			v.fail("page %d: %s holds a bucket, which bbolt never writes in an inline bucket", id, what)
			return nil
		}
		if len(val) < inBucketSize {
			v.fail("page %d: %s has a %d-byte header, want %d", id, name, len(val), inBucketSize)
			return nil
		}
		if root := le.Uint64(val[0:8]); root != 0 {
			v.tree(root, name, nil, nil, depth+1)
			continue
		}
		// An inline bucket: a leaf page inside the value.
		page := val[inBucketSize:]
		if len(page) < pageHeaderSize || le.Uint16(page[8:10]) != leafPageFlag {
			v.fail("page %d: inline %s is not a leaf page", id, name)
			return nil
		}
		v.elements(page, id, "inline "+name, nil, nil, depth+1)
	}
	return prev
}
