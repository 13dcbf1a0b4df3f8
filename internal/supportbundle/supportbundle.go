// Package supportbundle writes a support bundle: a tar.gz of named files
// that an operator sends when something breaks. Every file is scrubbed as
// it is added: PEM private keys (plain or encrypted) and join-token
// secrets are replaced, so a bundle is safe to send even if a source it
// collected from held one by mistake.
package supportbundle

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"io"
	"regexp"
	"sort"
	"strings"
	"time"
)

// Bundle is the files of a support bundle, in the order added.
type Bundle struct {
	created time.Time
	files   []file
	// Scrubbed counts the secrets replaced, by kind.
	Scrubbed map[string]int
}

type file struct {
	name string
	data []byte
}

// New returns an empty bundle stamped with now.
func New(now time.Time) *Bundle {
	return &Bundle{created: now, Scrubbed: map[string]int{}}
}

// Add scrubs data and adds it as name.
func (b *Bundle) Add(name string, data []byte) {
	clean, counts := Scrub(data)
	for k, n := range counts {
		b.Scrubbed[k] += n
	}
	b.files = append(b.files, file{name: name, data: clean})
}

// AddJSON adds v as indented JSON.
func (b *Bundle) AddJSON(name string, v any) error {
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("encode %s: %w", name, err)
	}
	b.Add(name, append(data, '\n'))
	return nil
}

// Names lists the files added.
func (b *Bundle) Names() []string {
	out := make([]string, len(b.files))
	for i, f := range b.files {
		out[i] = f.name
	}
	return out
}

// Write writes the bundle as a gzipped tar under dir/, each file mode 0600.
func (b *Bundle) Write(w io.Writer, dir string) error {
	zw := gzip.NewWriter(w)
	tw := tar.NewWriter(zw)
	if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: dir + "/", Mode: 0o700, ModTime: b.created}); err != nil {
		return err
	}
	for _, f := range b.files {
		h := &tar.Header{Typeflag: tar.TypeReg, Name: dir + "/" + f.name, Mode: 0o600, Size: int64(len(f.data)), ModTime: b.created}
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		if _, err := tw.Write(f.data); err != nil {
			return err
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	return zw.Close()
}

var (
	// pemKey matches a PEM block whose type names a private key: "PRIVATE
	// KEY", "EC PRIVATE KEY", "ENCRYPTED PRIVATE KEY", Ward's encrypted CA
	// keys, and so on, also inside JSON strings (escaped newlines).
	pemKey = regexp.MustCompile(`-----BEGIN ([A-Z0-9 ]*(PRIVATE KEY|ENCRYPTED)[A-Z0-9 ]*)-----[\s\S]*?-----END [A-Z0-9 ]*-----`)
	// joinSecret matches the secret of a join token in a join string or a
	// token argument: token=ID.SECRET.
	joinSecret = regexp.MustCompile(`(token=[A-Za-z0-9_-]+)(\.|%2[Ee])[A-Za-z0-9_-]{8,}`)
)

// Scrub replaces private keys and join-token secrets in data and counts
// them by kind.
func Scrub(data []byte) ([]byte, map[string]int) {
	counts := map[string]int{}
	data = pemKey.ReplaceAllFunc(data, func(m []byte) []byte {
		counts["private key"]++
		kind := pemKey.FindSubmatch(m)[1]
		return []byte("[redacted by ward debug bundle: " + string(bytes.ToLower(kind)) + "]")
	})
	data = joinSecret.ReplaceAllFunc(data, func(m []byte) []byte {
		counts["join token secret"]++
		sub := joinSecret.FindSubmatch(m)
		return append(append([]byte{}, sub[1]...), ".REDACTED"...)
	})
	return data, counts
}

// Read returns the regular files of a bundle written by Write, by their
// name below its top directory.
func Read(r io.Reader) (map[string][]byte, error) {
	zr, err := gzip.NewReader(r)
	if err != nil {
		return nil, err
	}
	tr := tar.NewReader(zr)
	files := map[string][]byte{}
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return files, nil
		}
		if err != nil {
			return nil, err
		}
		if h.Typeflag != tar.TypeReg {
			continue
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			return nil, err
		}
		_, name, _ := strings.Cut(h.Name, "/")
		files[name] = b
	}
}

// Summary describes what was scrubbed, for the operator.
func (b *Bundle) Summary() string {
	if len(b.Scrubbed) == 0 {
		return "nothing needed scrubbing"
	}
	kinds := make([]string, 0, len(b.Scrubbed))
	for k := range b.Scrubbed {
		kinds = append(kinds, k)
	}
	sort.Strings(kinds)
	var s string
	for i, k := range kinds {
		if i > 0 {
			s += ", "
		}
		s += fmt.Sprintf("%d %s(s)", b.Scrubbed[k], k)
	}
	return "redacted " + s
}
