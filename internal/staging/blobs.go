package staging

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"
)

// Blobs keeps files by their SHA-256 in a directory: a file sent twice is
// stored once, and a stored file's name is its checksum. A file becomes
// visible only once it is complete, synced and verified.
type Blobs struct {
	dir string
}

// OpenBlobs uses dir (made 0700 if missing) for blobs.
func OpenBlobs(dir string) (*Blobs, error) {
	for _, d := range []string{dir, filepath.Join(dir, "sha256"), filepath.Join(dir, "tmp")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("staging directory: %w", err)
		}
	}
	// Pieces of uploads cut short by a crash are never completed.
	tmp, _ := os.ReadDir(filepath.Join(dir, "tmp"))
	for _, e := range tmp {
		os.Remove(filepath.Join(dir, "tmp", e.Name()))
	}
	return &Blobs{dir: dir}, nil
}

func (b *Blobs) path(sum Sum) string { return filepath.Join(b.dir, "sha256", sum.Hex()) }

// Put streams src into a blob, which must have checksum want and at most
// limit bytes (tooLarge says which limit). what names the file in errors.
// The blob is stored only when all of it arrived and matched.
func (b *Blobs) Put(src io.Reader, want Sum, what string, limit int64, tooLarge *TooLargeError) (int64, error) {
	f, err := os.CreateTemp(filepath.Join(b.dir, "tmp"), "put-*")
	if err != nil {
		return 0, fmt.Errorf("staging: %w", err)
	}
	done := false
	defer func() {
		if !done {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	n, got, err := Copy(f, src, limit, tooLarge)
	if err != nil {
		return n, err
	}
	if err := Verify(what, want, got, n); err != nil {
		return n, err
	}
	if err := f.Sync(); err != nil {
		return n, fmt.Errorf("staging: sync %s: %w", f.Name(), err)
	}
	if err := f.Close(); err != nil {
		return n, fmt.Errorf("staging: %w", err)
	}
	done = true
	if err := os.Rename(f.Name(), b.path(want)); err != nil {
		os.Remove(f.Name())
		return n, fmt.Errorf("staging: %w", err)
	}
	return n, nil
}

// Stat is a stored blob's size; ok is false when there is none.
func (b *Blobs) Stat(sum Sum) (size int64, ok bool) {
	fi, err := os.Stat(b.path(sum))
	if err != nil {
		return 0, false
	}
	return fi.Size(), true
}

// ErrNoBlob is a checksum the directory holds no file for.
var ErrNoBlob = errors.New("staging: no such file")

// Open opens a stored blob for reading.
func (b *Blobs) Open(sum Sum) (*os.File, int64, error) {
	f, err := os.Open(b.path(sum))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, 0, ErrNoBlob
	}
	if err != nil {
		return nil, 0, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, 0, err
	}
	return f, fi.Size(), nil
}

// BlobInfo is one stored blob: its checksum, size and when it was last
// stored or claimed (Touch).
type BlobInfo struct {
	Sum      Sum
	Size     int64
	Modified time.Time
}

// List returns every stored blob.
func (b *Blobs) List() ([]BlobInfo, error) {
	ents, err := os.ReadDir(filepath.Join(b.dir, "sha256"))
	if err != nil {
		return nil, fmt.Errorf("staging: list %s: %w", b.dir, err)
	}
	out := make([]BlobInfo, 0, len(ents))
	for _, e := range ents {
		sum, err := ParseSum("sha256:" + e.Name())
		if err != nil || !e.Type().IsRegular() {
			continue // not a blob: left alone
		}
		fi, err := e.Info()
		if err != nil {
			continue // removed meanwhile
		}
		out = append(out, BlobInfo{Sum: sum, Size: fi.Size(), Modified: fi.ModTime()})
	}
	return out, nil
}

// Touch marks a stored blob as claimed now (an upload found it already
// stored), so retention does not remove it before the job that claims it
// is submitted.
func (b *Blobs) Touch(sum Sum, now time.Time) {
	os.Chtimes(b.path(sum), now, now)
}

// RemoveIfOlder removes a blob unless it was stored or claimed after
// cutoff; it reports whether it removed it.
func (b *Blobs) RemoveIfOlder(sum Sum, cutoff time.Time) (bool, error) {
	fi, err := os.Stat(b.path(sum))
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if fi.ModTime().After(cutoff) {
		return false, nil
	}
	if err := os.Remove(b.path(sum)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return false, err
	}
	return true, nil
}
