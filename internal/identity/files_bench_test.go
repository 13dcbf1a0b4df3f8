package identity_test

import (
	"os"
	"testing"

	"github.com/wardcluster/ward/internal/identity"
)

// BenchmarkWriteFilesAtomic writes what an agent writes when it joins: four
// files in one directory, each atomically, then one directory sync. It runs
// in /dev/shm when there is one, so the figure is system calls, not a disk.
func BenchmarkWriteFilesAtomic(b *testing.B) {
	base := ""
	if fi, err := os.Stat("/dev/shm"); err == nil && fi.IsDir() {
		base = "/dev/shm"
	}
	dir, err := os.MkdirTemp(base, "ward-bench-")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { os.RemoveAll(dir) })
	data := make([]byte, 1500)
	files := []identity.File{
		{Path: "agent.crt", Data: data, Perm: 0o644},
		{Path: "bundle.pem", Data: data, Perm: 0o644},
		{Path: "crls.pem", Data: data, Perm: 0o644},
		{Path: "state.json", Data: data[:300], Perm: 0o644},
	}
	b.ReportAllocs()
	for b.Loop() {
		if err := identity.WriteFilesAtomic(dir, files...); err != nil {
			b.Fatal(err)
		}
	}
}
