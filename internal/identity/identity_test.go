package identity_test

import (
	"crypto/x509"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wardcluster/ward/internal/api"
	"github.com/wardcluster/ward/internal/identity"
)

func TestSecretFilesAre0600AndLooseOnesRefused(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "k.key")
	if err := identity.WriteSecret(p, []byte("secret")); err != nil {
		t.Fatal(err)
	}
	fi, _ := os.Stat(p)
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode %o", fi.Mode().Perm())
	}
	for _, mode := range []os.FileMode{0o640, 0o604, 0o644, 0o660} {
		os.Chmod(p, mode)
		_, err := identity.ReadSecret(p)
		if api.CodeOf(err) != api.CodeKeyPermissions || !strings.Contains(err.Error(), "chmod 600 "+p) {
			t.Fatalf("mode %o: %v", mode, err)
		}
	}
	os.Chmod(p, 0o400)
	if _, err := identity.ReadSecret(p); err != nil {
		t.Fatalf("0400 refused: %v", err)
	}
	// An atomic write leaves no temp files behind.
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Fatalf("leftover files: %v", entries)
	}
}

func TestRenewalPolicy(t *testing.T) {
	nb := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	cert := &x509.Certificate{NotBefore: nb, NotAfter: nb.Add(24 * time.Hour)}
	tests := []struct {
		name    string
		now     time.Time
		jitter  float64
		renew   bool
		expired bool
		wait    time.Duration
	}{
		{"fresh", nb.Add(time.Hour), 0, false, false, 15 * time.Hour},
		{"just before two thirds", nb.Add(16*time.Hour - time.Minute), 0, false, false, time.Minute},
		{"at two thirds", nb.Add(16 * time.Hour), 0, true, false, 0},
		{"jitter moves it earlier", nb.Add(14 * time.Hour), 0.99, true, false, 0},
		{"half jitter", nb.Add(14*time.Hour + 48*time.Minute), 0.5, true, false, 0},
		{"expired", nb.Add(25 * time.Hour), 0, true, true, 0},
		{"exactly at expiry", nb.Add(24 * time.Hour), 0, true, true, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := identity.ShouldRenew(tt.now, cert, tt.jitter)
			if d.Renew != tt.renew || d.Expired != tt.expired || d.Wait != tt.wait {
				t.Fatalf("got %+v", d)
			}
		})
	}
	// The jitter window is bounded: never before 56.7% of the lifetime.
	earliest := identity.RenewAt(cert, 0.999999)
	if earliest.Before(nb.Add(13*time.Hour + 35*time.Minute)) {
		t.Fatalf("earliest renewal %s is too early", earliest)
	}
}

func TestWriteFilesAtomic(t *testing.T) {
	tests := []struct {
		name    string
		files   []identity.File
		prepare func(t *testing.T, dir string) // state before the write
		wantErr string                         // empty: the write succeeds
		want    map[string]os.FileMode         // files present afterwards
	}{
		{
			name:  "modes are exact",
			files: []identity.File{{Path: "a.pem", Data: []byte("a"), Perm: 0o644}, {Path: "b.key", Data: []byte("b"), Perm: 0o600}, {Path: "c.json", Data: []byte("c"), Perm: 0o640}},
			want:  map[string]os.FileMode{"a.pem": 0o644, "b.key": 0o600, "c.json": 0o640},
		},
		{
			name:    "an existing file is replaced, mode included",
			prepare: func(t *testing.T, dir string) { writeFile(t, filepath.Join(dir, "a.pem"), "old", 0o600) },
			files:   []identity.File{{Path: "a.pem", Data: []byte("a"), Perm: 0o644}},
			want:    map[string]os.FileMode{"a.pem": 0o644},
		},
		{
			// The rename fails because a directory holds the name: the
			// error names the file and the temp file is removed.
			name: "a failed write leaves no temp file",
			prepare: func(t *testing.T, dir string) {
				if err := os.MkdirAll(filepath.Join(dir, "b.pem", "x"), 0o755); err != nil {
					t.Fatal(err)
				}
			},
			files:   []identity.File{{Path: "a.pem", Data: []byte("a"), Perm: 0o644}, {Path: "b.pem", Data: []byte("b"), Perm: 0o644}},
			wantErr: "b.pem",
			want:    map[string]os.FileMode{"a.pem": 0o644, "b.pem": os.ModeDir | 0o755},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			if tt.prepare != nil {
				tt.prepare(t, dir)
			}
			err := identity.WriteFilesAtomic(dir, tt.files...)
			if tt.wantErr == "" && err != nil {
				t.Fatal(err)
			}
			if tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Fatalf("error %v, want one naming %s", err, tt.wantErr)
			}
			entries, err := os.ReadDir(dir)
			if err != nil {
				t.Fatal(err)
			}
			got := map[string]os.FileMode{}
			for _, e := range entries {
				fi, err := e.Info()
				if err != nil {
					t.Fatal(err)
				}
				got[e.Name()] = fi.Mode().Type() | fi.Mode().Perm()
			}
			if len(got) != len(tt.want) {
				t.Fatalf("files %v, want %v", got, tt.want)
			}
			for name, mode := range tt.want {
				if got[name] != mode {
					t.Errorf("%s: mode %v, want %v", name, got[name], mode)
				}
			}
			for _, f := range tt.files {
				if _, ok := tt.want[f.Path]; !ok || got[f.Path].IsDir() {
					continue
				}
				if b, _ := os.ReadFile(filepath.Join(dir, f.Path)); string(b) != string(f.Data) {
					t.Errorf("%s holds %q, want %q", f.Path, b, f.Data)
				}
			}
		})
	}
}

func writeFile(t *testing.T, path, data string, perm os.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), perm); err != nil {
		t.Fatal(err)
	}
}
