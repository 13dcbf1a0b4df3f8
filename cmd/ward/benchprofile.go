//go:build benchprofile

package main

import (
	"fmt"
	"os"
	"runtime/pprof"
	"time"
)

// Built only with -tags benchprofile (go run ./bench builds its ward
// binary so; a release build never has it): with WARD_BENCH_CPUPROFILE
// set, the process writes CPU profiles of 10 s each to
// $WARD_BENCH_CPUPROFILE.PID.NNN, so the bench can see where a
// coordinator's time went (`go tool pprof -top` merges several).
func init() {
	prefix := os.Getenv("WARD_BENCH_CPUPROFILE")
	if prefix == "" {
		return
	}
	go func() {
		for i := 0; ; i++ {
			f, err := os.Create(fmt.Sprintf("%s.%d.%03d", prefix, os.Getpid(), i))
			if err != nil {
				return
			}
			if err := pprof.StartCPUProfile(f); err != nil {
				f.Close()
				return
			}
			time.Sleep(10 * time.Second)
			pprof.StopCPUProfile()
			f.Close()
		}
	}()
}
