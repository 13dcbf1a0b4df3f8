package main

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// The machine is shared: other processes' CPU use during a scenario is
// measured and reported with it, so a noisy figure can be told apart.

// clockTicks is USER_HZ for /proc/*/stat and /proc/stat (100 on Linux).
const clockTicks = 100

var (
	childMu   sync.Mutex
	childPIDs = map[int]bool{}
)

var exitFuncs []func()

// atExit registers cleanup to run once every scenario has finished.
func atExit(f func()) {
	childMu.Lock()
	exitFuncs = append(exitFuncs, f)
	childMu.Unlock()
}

func runAtExit() {
	childMu.Lock()
	fs := exitFuncs
	exitFuncs = nil
	childMu.Unlock()
	for _, f := range fs {
		f()
	}
}

// trackChild counts a child process's CPU as this run's own.
func trackChild(pid int) {
	childMu.Lock()
	childPIDs[pid] = true
	childMu.Unlock()
}

// cpuSnapshot is the machine's busy CPU time and this run's own share.
type cpuSnapshot struct {
	at    time.Time
	busy  time.Duration // all CPUs, from /proc/stat
	own   time.Duration // this process
	child map[int]time.Duration
}

func takeCPUSnapshot() cpuSnapshot {
	// Own CPU: this process, its finished children (go build, the tasks'
	// processes, a stopped coordinator) and its live tracked children.
	s := cpuSnapshot{at: time.Now(), own: processCPU() + childrenCPU(), child: map[int]time.Duration{}}
	if b, err := os.ReadFile("/proc/stat"); err == nil {
		line, _, _ := strings.Cut(string(b), "\n")
		f := strings.Fields(line)
		// cpu user nice system idle iowait irq softirq steal ...: irq and
		// softirq time (loopback traffic this run causes) is not charged
		// to any process, so it is left out on both sides.
		for i, v := range f[1:] {
			if i >= 3 && i <= 6 { // idle, iowait, irq, softirq
				continue
			}
			if i >= 8 { // guest time is already in user
				break
			}
			n, _ := strconv.ParseInt(v, 10, 64)
			s.busy += time.Duration(n) * time.Second / clockTicks
		}
	}
	childMu.Lock()
	for pid := range childPIDs {
		s.child[pid] = procCPU(pid)
	}
	childMu.Unlock()
	return s
}

// procCPU reads a process's user+system time from /proc/PID/stat.
func procCPU(pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 13 {
		return 0
	}
	u, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(u+st) * time.Second / clockTicks
}

// foreignCores is the average number of cores that processes other than
// this run used between two snapshots.
func foreignCores(a, b cpuSnapshot) float64 {
	el := b.at.Sub(a.at)
	if el <= 0 {
		return 0
	}
	own := b.own - a.own
	for pid, c := range b.child {
		if c0, ok := a.child[pid]; ok {
			own += c - c0
		} else {
			own += c
		}
	}
	f := float64(b.busy-a.busy-own) / float64(el)
	return max(0, f)
}

func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

// childrenCPU is the CPU time of this process's children that have ended
// and been waited for.
func childrenCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_CHILDREN, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
