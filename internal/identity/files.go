// Package identity keeps a node's own credentials: its key and certificate on
// disk (written atomically, 0600, refused when looser), the live TLS
// credential served from callbacks so renewal never restarts a listener, and
// the pure policy that says when to renew.
package identity

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/wardcluster/ward/internal/api"
)

// WriteFileAtomic writes data to path so that a crash leaves either the old
// file or the new one, never a torn one: temp file in the same directory,
// fsync, rename, fsync of the directory.
func WriteFileAtomic(path string, data []byte, perm fs.FileMode) error {
	if err := writeFileAtomic(path, data, perm); err != nil {
		return err
	}
	return syncDir(filepath.Dir(path))
}

// File is one file for WriteFilesAtomic.
type File struct {
	Path string
	Data []byte
	Perm fs.FileMode
}

// WriteFilesAtomic writes several files in one directory, each atomically,
// with one directory fsync at the end instead of one per file.
func WriteFilesAtomic(dir string, files ...File) error {
	for _, f := range files {
		if err := writeFileAtomic(filepath.Join(dir, f.Path), f.Data, f.Perm); err != nil {
			return err
		}
	}
	return syncDir(dir)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return nil // the files are written; a directory we cannot open cannot be synced either
	}
	defer d.Close()
	d.Sync()
	return nil
}

// WriteStreamAtomic is WriteFileAtomic for content too large to hold in
// memory: fill writes it (a store backup, say).
func WriteStreamAtomic(path string, perm fs.FileMode, fill func(w io.Writer) error) error {
	if err := writeAtomic(path, perm, fill); err != nil {
		return err
	}
	return syncDir(filepath.Dir(path))
}

func writeFileAtomic(path string, data []byte, perm fs.FileMode) error {
	return writeAtomic(path, perm, func(w io.Writer) error {
		_, err := w.Write(data)
		return err
	})
}

func writeAtomic(path string, perm fs.FileMode, fill func(w io.Writer) error) (err error) {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	name := tmp.Name()
	// The temp file is removed only when something failed: after the
	// rename there is nothing left to remove, and a Remove that cannot
	// fail costs two system calls for every file written.
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(name)
		}
	}()
	// CreateTemp creates the file with mode 0600, so a secret needs no
	// chmod; anything else gets exactly perm.
	if perm != tempPerm {
		if err := tmp.Chmod(perm); err != nil {
			return fmt.Errorf("write %s: %w", path, err)
		}
	}
	if err := fill(tmp); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(name, path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// tempPerm is the mode os.CreateTemp gives a new file.
const tempPerm fs.FileMode = 0o600

// WriteSecret writes a key or other secret atomically with mode 0600.
func WriteSecret(path string, data []byte) error { return WriteFileAtomic(path, data, 0o600) }

// CheckSecretPerms refuses a secret file that group or others can access,
// naming the file and the chmod that fixes it.
func CheckSecretPerms(path string) error {
	fi, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("%s does not exist: %w", path, fs.ErrNotExist)
	}
	if err != nil {
		return fmt.Errorf("check permissions of %s: %w", path, err)
	}
	if mode := fi.Mode().Perm(); mode&0o077 != 0 {
		return api.Errorf(api.CodeKeyPermissions, fmt.Sprintf("run: chmod 600 %s", path),
			"key file %s has permissions %04o, which let other users read it; Ward refuses to start until only the owner can", path, mode)
	}
	return nil
}

// ReadSecret reads a secret file after checking its permissions.
func ReadSecret(path string) ([]byte, error) {
	if err := CheckSecretPerms(path); err != nil {
		return nil, err
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	return data, nil
}

// EnsureDir creates dir with mode 0700 if missing and refuses a data
// directory that others can write to.
func EnsureDir(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("create data directory %s: %w", dir, err)
	}
	fi, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("data directory %s: %w", dir, err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("data directory %s is not a directory", dir)
	}
	if mode := fi.Mode().Perm(); mode&0o022 != 0 {
		return api.Errorf(api.CodeKeyPermissions, fmt.Sprintf("run: chmod 700 %s", dir),
			"data directory %s has permissions %04o, which let other users replace its keys", dir, mode)
	}
	return nil
}
