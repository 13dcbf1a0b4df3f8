// Package staging moves a job's files: the inputs a client sends with a
// job, to the task's working directory on an agent, and the outputs a task
// leaves, back to the coordinator. Every file is identified and verified
// by its SHA-256 at each end, streams through a fixed buffer (memory stays
// flat whatever its size), and is held to size limits. It knows nothing of
// the coordinator, the agent or the network: each side wires it to its own
// transport.
package staging

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash"
	"io"
	"strings"
	"sync"

	"github.com/wardcluster/ward/internal/api"
)

// Sum is a file's SHA-256.
type Sum [sha256.Size]byte

// String is the sum as Ward prints and sends it: sha256:<hex>.
func (s Sum) String() string { return "sha256:" + hex.EncodeToString(s[:]) }

// Hex is the sum's 64 hex digits, the name of a stored blob.
func (s Sum) Hex() string { return hex.EncodeToString(s[:]) }

// ParseSum reads sha256:<hex> (or the bare 64 hex digits).
func ParseSum(s string) (Sum, error) {
	var out Sum
	h := strings.TrimPrefix(strings.ToLower(strings.TrimSpace(s)), "sha256:")
	if len(h) != 2*sha256.Size {
		return out, fmt.Errorf("checksum %q: want sha256: and 64 hex digits", s)
	}
	if _, err := hex.Decode(out[:], []byte(h)); err != nil {
		return out, fmt.Errorf("checksum %q: %v", s, err)
	}
	return out, nil
}

// MismatchError is a file whose bytes do not have the checksum they were
// sent with: the copy is discarded. Its code is CHECKSUM_MISMATCH.
type MismatchError struct {
	What string // the file, as the user named it
	Want Sum
	Got  Sum
	Size int64 // the bytes received
}

func (e *MismatchError) Error() string {
	return fmt.Sprintf("%s %s: %s arrived with %s (%d bytes), but it was sent as %s", api.CodeChecksumMismatch, e.What, e.What, e.Got, e.Size, e.Want)
}

// TooLargeError is a file, or a job's files, over a size limit. Its code
// is FILE_TOO_LARGE.
type TooLargeError struct {
	What    string // the file, or "the job's files"
	Limit   int64
	Setting string // the coordinator setting that raises it
}

func (e *TooLargeError) Error() string {
	return fmt.Sprintf("%s %s is over %s (%d bytes)", api.CodeFileTooLarge, e.What, e.Setting, e.Limit)
}

// APIError turns a staging error into the API's form, with the fix.
func APIError(err error) *api.Error {
	switch e := err.(type) {
	case *MismatchError:
		return api.Errorf(api.CodeChecksumMismatch, "send the file again; if it keeps happening, check the disk and memory of the machines it passes through",
			"%s arrived with checksum %s (%d bytes) but was sent as %s; the copy was discarded", e.What, e.Got, e.Size, e.Want)
	case *TooLargeError:
		return api.Errorf(api.CodeFileTooLarge, "send less, or an admin raises "+e.Setting+" in the coordinator's config",
			"%s is over %s (%d bytes)", e.What, e.Setting, e.Limit)
	}
	return nil
}

// copyBufs are the buffers every copy streams through: 256 KiB each, so a
// gigabyte is four thousand reads and memory does not grow with the file.
var copyBufs = sync.Pool{New: func() any { b := make([]byte, 256<<10); return &b }}

// Copy streams src to dst, hashing what passes, and stops with a
// *TooLargeError once more than limit bytes came (limit < 0: none). It
// returns the bytes written and their SHA-256.
func Copy(dst io.Writer, src io.Reader, limit int64, tooLarge *TooLargeError) (int64, Sum, error) {
	h := sha256.New()
	bp := copyBufs.Get().(*[]byte)
	defer copyBufs.Put(bp)
	if limit >= 0 {
		// One byte more than allowed tells "exactly at the limit" from
		// "over it".
		src = io.LimitReader(src, limit+1)
	}
	n, err := io.CopyBuffer(hashWriter{dst, h}, onlyReader{src}, *bp)
	var sum Sum
	h.Sum(sum[:0])
	if err != nil {
		return n, sum, err
	}
	if limit >= 0 && n > limit {
		if tooLarge == nil {
			tooLarge = &TooLargeError{What: "the file", Limit: limit}
		}
		return n, sum, tooLarge
	}
	return n, sum, nil
}

// Verify checks a copy's sum against the one it was sent with.
func Verify(what string, want, got Sum, size int64) error {
	if want != got {
		return &MismatchError{What: what, Want: want, Got: got, Size: size}
	}
	return nil
}

// hashWriter writes to w and to the hash.
type hashWriter struct {
	w io.Writer
	h hash.Hash
}

func (hw hashWriter) Write(p []byte) (int, error) {
	n, err := hw.w.Write(p)
	hw.h.Write(p[:n])
	return n, err
}

// onlyReader hides a source's WriteTo, so io.CopyBuffer uses the pooled
// buffer instead of whatever the source would allocate.
type onlyReader struct{ io.Reader }

// SumFile is the SHA-256 and size of what r yields.
func SumFile(r io.Reader) (Sum, int64, error) {
	n, sum, err := Copy(io.Discard, r, -1, nil)
	return sum, n, err
}
