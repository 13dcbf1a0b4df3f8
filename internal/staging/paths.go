package staging

import (
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
)

// ParseInput reads a --input argument, LOCAL[:REMOTE]: the file on the
// client, and its path in the task's working directory (by default the
// local file's base name).
func ParseInput(arg string) (local, remote string, err error) {
	local, remote, _ = strings.Cut(arg, ":")
	if local == "" {
		return "", "", fmt.Errorf("--input %q names no local file: use --input LOCAL[:REMOTE]", arg)
	}
	if remote == "" {
		remote = filepath.Base(local)
	}
	remote, err = CleanRemote(remote)
	if err != nil {
		return "", "", fmt.Errorf("--input %q: %w", arg, err)
	}
	return local, remote, nil
}

// CleanRemote checks a path inside a task's working directory: relative,
// slash-separated, and never leaving the directory.
func CleanRemote(p string) (string, error) {
	if p == "" {
		return "", fmt.Errorf("the path in the working directory is empty")
	}
	if strings.HasPrefix(p, "/") || strings.ContainsRune(p, 0) || strings.Contains(p, "\\") {
		return "", fmt.Errorf("%q must be a relative path inside the task's working directory", p)
	}
	c := path.Clean(p)
	if c == "." || c == ".." || strings.HasPrefix(c, "../") {
		return "", fmt.Errorf("%q leaves the task's working directory", p)
	}
	return c, nil
}

// CheckGlob checks an --output-file pattern: a relative glob that stays in
// the working directory and that path.Match accepts.
func CheckGlob(g string) error {
	if _, err := CleanRemote(g); err != nil {
		return fmt.Errorf("--output-file %w", err)
	}
	if _, err := path.Match(g, ""); err != nil {
		return fmt.Errorf("--output-file %q is not a valid pattern: %v", g, err)
	}
	return nil
}

// MatchOutputs lists the regular files in dir that the globs match, as
// slash-separated paths relative to dir, sorted and each once. A symbolic
// link is never followed out of the directory: only regular files count.
func MatchOutputs(dir string, globs []string) ([]string, error) {
	realDir, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	var out []string
	for _, g := range globs {
		if err := CheckGlob(g); err != nil {
			return nil, err
		}
		matches, err := filepath.Glob(filepath.Join(dir, filepath.FromSlash(g)))
		if err != nil {
			return nil, err
		}
		for _, m := range matches {
			rel, err := filepath.Rel(dir, m)
			if err != nil || rel == ".." || strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
				continue
			}
			fi, err := os.Lstat(m)
			if err != nil || fi.Mode()&fs.ModeType != 0 {
				continue
			}
			// A directory on the way may be a link out of the working
			// directory: what it leads to must still be inside.
			if real, err := filepath.EvalSymlinks(m); err != nil || !strings.HasPrefix(real, realDir+string(filepath.Separator)) {
				continue
			}
			rel = filepath.ToSlash(rel)
			if !seen[rel] {
				seen[rel] = true
				out = append(out, rel)
			}
		}
	}
	sort.Strings(out)
	return out, nil
}
