// Package buildinfo says which Ward this binary is: its version, commit,
// build date and Go version. Release builds set them with -ldflags (see
// packaging/build.sh); other builds fall back to what the Go toolchain
// stamped into the binary (debug.ReadBuildInfo).
package buildinfo

import (
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
)

// Set at link time by release builds, for example:
//
//	-X github.com/wardcluster/ward/internal/buildinfo.version=0.2.0
//	-X github.com/wardcluster/ward/internal/buildinfo.commit=<sha>
//	-X github.com/wardcluster/ward/internal/buildinfo.date=2025-01-02T15:04:05Z
var (
	version string
	commit  string
	date    string
)

// Devel is the version of a binary built without a version: a plain
// `go build` outside a module download.
const Devel = "devel"

// Info describes this binary.
type Info struct {
	Version   string `json:"version"`
	Commit    string `json:"commit,omitempty"`
	Date      string `json:"build_date,omitempty"`
	GoVersion string `json:"go_version"`
	// Modified is true when the binary was built from a work tree with
	// uncommitted changes.
	Modified bool   `json:"modified,omitempty"`
	Platform string `json:"platform"`
}

var (
	once sync.Once
	info Info
)

// Get returns this binary's build information.
func Get() Info {
	once.Do(func() { info = read(version, commit, date, readBuildInfo()) })
	return info
}

// Version is Get().Version: what status, Hello and logs report.
func Version() string { return Get().Version }

func readBuildInfo() *debug.BuildInfo {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return nil
	}
	return bi
}

// read combines the link-time values with the toolchain's stamp; the
// link-time values win.
func read(ver, rev, when string, bi *debug.BuildInfo) Info {
	in := Info{Version: ver, Commit: rev, Date: when, GoVersion: runtime.Version(), Platform: runtime.GOOS + "/" + runtime.GOARCH}
	if bi != nil {
		if in.Version == "" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			in.Version = bi.Main.Version
		}
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				if in.Commit == "" {
					in.Commit = s.Value
				}
			case "vcs.time":
				if in.Date == "" {
					in.Date = s.Value
				}
			case "vcs.modified":
				in.Modified = s.Value == "true"
			}
		}
		if bi.GoVersion != "" {
			in.GoVersion = bi.GoVersion
		}
	}
	if in.Version == "" {
		in.Version = Devel
	}
	// A pseudo-version with +dirty already says the tree was modified.
	in.Version = strings.TrimSuffix(in.Version, "+dirty")
	return in
}

// String is the one-line form `ward version` prints.
func (in Info) String() string {
	var b strings.Builder
	b.WriteString("ward " + in.Version)
	if in.Commit != "" {
		c := in.Commit
		if len(c) > 12 {
			c = c[:12]
		}
		b.WriteString(" (commit " + c)
		if in.Modified {
			b.WriteString(", modified")
		}
		b.WriteString(")")
	}
	if in.Date != "" {
		b.WriteString(", built " + in.Date)
	}
	b.WriteString(", " + in.GoVersion + " " + in.Platform)
	return b.String()
}

// Compare orders two Ward versions as semantic versions (an optional
// leading v, MAJOR.MINOR.PATCH, an optional -prerelease and +build). It
// returns -1, 0 or +1, and ok false when either is not a semantic
// version (such as "devel"), in which case they cannot be ordered.
func Compare(a, b string) (cmp int, ok bool) {
	pa, oka := parse(a)
	pb, okb := parse(b)
	if !oka || !okb {
		return 0, false
	}
	for i := range 3 {
		if c := compareInt(pa.num[i], pb.num[i]); c != 0 {
			return c, true
		}
	}
	return comparePre(pa.pre, pb.pre), true
}

type semver struct {
	num [3]int
	pre []string
}

func parse(s string) (semver, bool) {
	var v semver
	s = strings.TrimPrefix(s, "v")
	if i := strings.IndexByte(s, '+'); i >= 0 {
		s = s[:i]
	}
	core, pre, hasPre := strings.Cut(s, "-")
	parts := strings.Split(core, ".")
	if len(parts) != 3 {
		return v, false
	}
	for i, p := range parts {
		n, err := strconv.Atoi(p)
		if err != nil || n < 0 || p == "" || len(p) > 1 && p[0] == '0' {
			return v, false
		}
		v.num[i] = n
	}
	if hasPre {
		if pre == "" {
			return v, false
		}
		v.pre = strings.Split(pre, ".")
		for _, id := range v.pre {
			if id == "" {
				return v, false
			}
		}
	}
	return v, true
}

func compareInt(a, b int) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// comparePre orders prerelease identifiers as semver 2.0 does: a release
// is above any of its prereleases, numeric identifiers compare as numbers
// and below alphanumeric ones, and a longer list wins a tie.
func comparePre(a, b []string) int {
	switch {
	case len(a) == 0 && len(b) == 0:
		return 0
	case len(a) == 0:
		return 1
	case len(b) == 0:
		return -1
	}
	for i := 0; i < len(a) && i < len(b); i++ {
		na, ea := strconv.Atoi(a[i])
		nb, eb := strconv.Atoi(b[i])
		switch {
		case ea == nil && eb == nil:
			if c := compareInt(na, nb); c != 0 {
				return c
			}
		case ea == nil:
			return -1
		case eb == nil:
			return 1
		default:
			if c := strings.Compare(a[i], b[i]); c != 0 {
				return c
			}
		}
	}
	return compareInt(len(a), len(b))
}
